from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.ingest.athletes import TokenWithoutAthlete, connect_athlete
from service.ingest.crypto import TokenCipher
from service.models import Athlete, AthleteStatus
from service.strava.schemas import SummaryAthlete, TokenResponse

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# The shape of a first exchange of an authorization code (docs/strava.md §3.2, recorded
# in tests/cassettes/oauth/token_authorization_code.yaml); the tokens are made up.
TOKEN = TokenResponse(
    token_type="Bearer",
    access_token="access-1",
    refresh_token="refresh-1",
    expires_at=1542940199,
    expires_in=21600,
    athlete=SummaryAthlete(
        id=12342176, username="dblockdotorg", firstname="Daniel", lastname="Block"
    ),
)


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher(Fernet.generate_key().decode())


def stored_athletes(engine: Engine) -> list[Athlete]:
    with Session(engine) as session:
        return list(session.exec(select(Athlete)).all())


def test_connecting_stores_the_athlete_with_names_scopes_and_status(
    engine: Engine, cipher: TokenCipher
) -> None:
    connect_athlete(engine, cipher, TOKEN, "read,activity:read_all", NOW)

    [athlete] = stored_athletes(engine)
    assert athlete.id == 12342176
    assert (athlete.username, athlete.firstname, athlete.lastname) == (
        "dblockdotorg",
        "Daniel",
        "Block",
    )
    assert athlete.scopes == "read,activity:read_all"
    assert athlete.status == AthleteStatus.CONNECTED
    assert athlete.connected_at == NOW
    assert athlete.expires_at == datetime.fromtimestamp(1542940199, UTC)


def test_tokens_are_stored_encrypted_and_decrypt_back(engine: Engine, cipher: TokenCipher) -> None:
    connect_athlete(engine, cipher, TOKEN, "read", NOW)

    [athlete] = stored_athletes(engine)
    assert athlete.access_token_enc is not None
    assert athlete.refresh_token_enc is not None
    assert "access-1" not in athlete.access_token_enc
    assert cipher.decrypt(athlete.access_token_enc) == "access-1"
    assert cipher.decrypt(athlete.refresh_token_enc) == "refresh-1"


def test_reconnecting_updates_tokens_and_scopes_of_the_same_row(
    engine: Engine, cipher: TokenCipher
) -> None:
    connect_athlete(engine, cipher, TOKEN, "read", NOW)
    renewed = TOKEN.model_copy(update={"access_token": "access-2", "refresh_token": "refresh-2"})

    later = NOW + timedelta(days=1)
    connect_athlete(engine, cipher, renewed, "read,activity:read_all", later)

    [athlete] = stored_athletes(engine)
    assert athlete.access_token_enc is not None
    assert cipher.decrypt(athlete.access_token_enc) == "access-2"
    assert athlete.scopes == "read,activity:read_all"
    assert athlete.connected_at == later
    assert athlete.created_at == NOW


def test_reconnecting_a_deauthorized_athlete_makes_them_connected_again(
    engine: Engine, cipher: TokenCipher
) -> None:
    connect_athlete(engine, cipher, TOKEN, "read", NOW)
    with Session(engine) as session:
        tombstone = session.get_one(Athlete, 12342176)
        tombstone.status = AthleteStatus.DEAUTHORIZED.value
        tombstone.deauthorized_at = NOW
        tombstone.access_token_enc = tombstone.refresh_token_enc = None
        session.add(tombstone)
        session.commit()

    athlete = connect_athlete(engine, cipher, TOKEN, "read", NOW + timedelta(hours=1))

    assert athlete.status == AthleteStatus.CONNECTED
    assert athlete.deauthorized_at is None
    assert athlete.access_token_enc is not None


def test_connect_returns_the_stored_athlete(engine: Engine, cipher: TokenCipher) -> None:
    athlete = connect_athlete(engine, cipher, TOKEN, "read", NOW)

    assert athlete.id == 12342176
    assert athlete.status == AthleteStatus.CONNECTED


def test_connecting_works_on_sqlite_too(sqlite_engine: Engine, cipher: TokenCipher) -> None:
    connect_athlete(sqlite_engine, cipher, TOKEN, "read", NOW)
    connect_athlete(sqlite_engine, cipher, TOKEN, "read,activity:read", NOW)

    [athlete] = stored_athletes(sqlite_engine)
    assert athlete.scopes == "read,activity:read"


def test_a_token_without_athlete_is_refused_and_nothing_stored(
    engine: Engine, cipher: TokenCipher
) -> None:
    refresh_shaped = TOKEN.model_copy(update={"athlete": None})

    with pytest.raises(TokenWithoutAthlete):
        connect_athlete(engine, cipher, refresh_shaped, "read", NOW)

    assert stored_athletes(engine) == []
