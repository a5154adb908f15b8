"""`strava-ingest keys rotate`: every stored token re-encrypted under the first TOKEN_KEY, on
the real database, in committed batches, without racing the token refresh."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet, InvalidToken
from launch import wait_until
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from support import TOKEN_KEY, service_env

from service.cli import main
from service.ingest.crypto import TokenCipher
from service.ingest.reencrypt import ReencryptCounts, reencrypt_batches
from service.models import Athlete, AthleteStatus

OLD = TOKEN_KEY
NEW = Fernet.generate_key().decode()
UNKNOWN = Fernet.generate_key().decode()
ROTATED = f"{NEW},{OLD}"


def store_athlete(engine: Engine, athlete_id: int, key: str | None = OLD) -> None:
    """An athlete whose tokens are `access-<id>` and `refresh-<id>` under `key` (no tokens,
    as after a deauthorization, when `key` is None)."""
    cipher = TokenCipher(key) if key is not None else None
    with Session(engine) as session:
        session.add(
            Athlete(
                id=athlete_id,
                status=AthleteStatus.CONNECTED if cipher else AthleteStatus.DEAUTHORIZED,
                access_token_enc=cipher.encrypt(f"access-{athlete_id}") if cipher else None,
                refresh_token_enc=cipher.encrypt(f"refresh-{athlete_id}") if cipher else None,
                expires_at=datetime(2030, 1, 1, tzinfo=UTC),
            )
        )
        session.commit()


def stored(engine: Engine) -> dict[int, tuple[str | None, str | None]]:
    with Session(engine) as session:
        athletes = session.exec(select(Athlete).order_by(Athlete.id)).all()
        return {a.id: (a.access_token_enc, a.refresh_token_enc) for a in athletes}


def under_new_key_alone(engine: Engine, *athlete_ids: int) -> dict[int, tuple[str, str]]:
    """The tokens of the athletes (all that have tokens by default), decrypted with the
    first key alone."""
    first = Fernet(NEW)

    def plain(ciphertext: str) -> str:
        return first.decrypt(ciphertext.encode()).decode()

    return {
        athlete_id: (plain(access), plain(refresh))
        for athlete_id, (access, refresh) in stored(engine).items()
        if access is not None
        and refresh is not None
        and athlete_id in (athlete_ids or [athlete_id])
    }


def rotate(database_url: str, token_key: str = ROTATED, *args: str) -> Result:
    env = service_env(database_url, TOKEN_KEY=token_key)
    return CliRunner().invoke(main, ["keys", "rotate", *args], env=env)


def test_rotate_re_encrypts_every_token_under_the_first_key_and_reports_counts(
    engine: Engine, database_url: str
) -> None:
    for athlete_id in (1, 2, 3):
        store_athlete(engine, athlete_id)
    store_athlete(engine, 4, key=None)

    result = rotate(database_url, ROTATED, "--batch-size", "2")

    assert result.exit_code == 0, result.output
    assert "re-encrypted 6 tokens, 0 already under the first key, 0 undecryptable" in (
        result.output
    )
    assert under_new_key_alone(engine) == {n: (f"access-{n}", f"refresh-{n}") for n in (1, 2, 3)}
    assert stored(engine)[4] == (None, None)


def test_a_second_run_re_encrypts_nothing(engine: Engine, database_url: str) -> None:
    for athlete_id in (1, 2, 3):
        store_athlete(engine, athlete_id)
    rotate(database_url)
    after_first = stored(engine)

    result = rotate(database_url)

    assert result.exit_code == 0, result.output
    assert "re-encrypted 0 tokens, 6 already under the first key, 0 undecryptable" in (
        result.output
    )
    assert stored(engine) == after_first


def test_an_interrupted_run_kept_its_committed_batches_and_a_new_run_finishes(
    engine: Engine, database_url: str
) -> None:
    for athlete_id in (1, 2, 3, 4, 5):
        store_athlete(engine, athlete_id)
    before = stored(engine)
    batches = reencrypt_batches(engine, TokenCipher(ROTATED), batch_size=2)

    first = next(batches)
    batches.close()  # the run is stopped after its first batch

    assert (first.rotated, first.current) == (4, 0)
    now = stored(engine)
    assert [n for n in now if now[n] != before[n]] == [1, 2]
    result = rotate(database_url, ROTATED, "--batch-size", "2")
    assert "re-encrypted 6 tokens, 4 already under the first key, 0 undecryptable" in (
        result.output
    )
    assert set(under_new_key_alone(engine)) == {1, 2, 3, 4, 5}


def test_tokens_no_key_decrypts_are_named_by_athlete_and_fail_the_command(
    engine: Engine, database_url: str
) -> None:
    store_athlete(engine, 1)
    store_athlete(engine, 2, key=UNKNOWN)
    store_athlete(engine, 3)
    unreadable = stored(engine)[2]

    result = rotate(database_url)

    assert result.exit_code == 1
    assert "re-encrypted 4 tokens, 0 already under the first key, 2 undecryptable" in (
        result.output
    )
    assert "athletes 2 decrypt with no key" in result.output
    for ciphertext in unreadable:
        assert ciphertext is not None
        assert ciphertext not in result.output
        assert ciphertext[:20] not in result.output
    assert stored(engine)[2] == unreadable
    assert set(under_new_key_alone(engine, 1, 3)) == {1, 3}


def test_rotation_waits_for_a_refresh_holding_the_row_and_keeps_its_new_tokens(
    engine: Engine,
) -> None:
    store_athlete(engine, 1)
    outcome: list[ReencryptCounts] = []
    with Session(engine) as refresh:
        # As the token refresh does: lock the row, then write the tokens Strava returned,
        # encrypted by a process that still has the old TOKEN_KEY.
        [athlete] = refresh.exec(select(Athlete).where(Athlete.id == 1).with_for_update()).all()
        rotation = threading.Thread(
            target=lambda: outcome.extend(reencrypt_batches(engine, TokenCipher(ROTATED), 10))
        )
        rotation.start()
        wait_until(lambda: waiting_on_a_lock(engine), timeout=10, what="the rotation to wait")
        old = TokenCipher(OLD)
        athlete.access_token_enc = old.encrypt("access-refreshed")
        athlete.refresh_token_enc = old.encrypt("refresh-refreshed")
        refresh.add(athlete)
        refresh.commit()
    rotation.join(timeout=10)

    assert not rotation.is_alive()
    assert [(c.rotated, c.current) for c in outcome] == [(2, 0)]
    assert under_new_key_alone(engine) == {1: ("access-refreshed", "refresh-refreshed")}


def waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def test_the_first_key_alone_cannot_read_tokens_before_the_rotation(engine: Engine) -> None:
    # What makes the rotation needed at all: without it, dropping the old key loses them.
    store_athlete(engine, 1)
    access, _ = stored(engine)[1]
    assert access is not None

    with pytest.raises(InvalidToken):
        Fernet(NEW).decrypt(access.encode())
