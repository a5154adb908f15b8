"""Re-encrypting stored tokens under the first TOKEN_KEY, after a new key was prepended.

Batches of athletes in id order, each its own transaction: an interrupted run loses at most
the batch it was in, and a new run skips what is already under the first key. Each batch
locks its rows as the token refresh does (SELECT … FOR UPDATE, service/ingest/tokens.py), so
a refresh that is writing new tokens finishes first and its tokens are the ones re-encrypted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import col, or_, select

from service.db import session_scope
from service.ingest.crypto import TokenCipher, TokenDecryptError
from service.models import Athlete

log = logging.getLogger(__name__)

# Every encrypted column (service/models.py).
ENCRYPTED_COLUMNS = ("access_token_enc", "refresh_token_enc")


@dataclass
class ReencryptCounts:
    """Tokens re-encrypted, tokens already under the first key, and the athletes with a
    token no configured key decrypts (left as they are)."""

    rotated: int = 0
    current: int = 0
    undecryptable: int = 0
    undecryptable_athletes: list[int] = field(default_factory=list)

    def add(self, other: ReencryptCounts) -> None:
        self.rotated += other.rotated
        self.current += other.current
        self.undecryptable += other.undecryptable
        self.undecryptable_athletes.extend(other.undecryptable_athletes)


def reencrypt_batches(
    engine: Engine, cipher: TokenCipher, batch_size: int
) -> Iterator[ReencryptCounts]:
    """Re-encrypt every stored token under the cipher's first key, yielding the counts of
    each batch once it is committed."""
    encrypted = or_(*(col(getattr(Athlete, name)).is_not(None) for name in ENCRYPTED_COLUMNS))
    after: int | None = None
    while True:
        with session_scope(engine) as session:
            statement = (
                select(Athlete)
                .where(encrypted)
                .order_by(col(Athlete.id))
                .limit(batch_size)
                .with_for_update()
            )
            if after is not None:
                statement = statement.where(col(Athlete.id) > after)
            athletes = session.exec(statement).all()
            if not athletes:
                return
            counts = ReencryptCounts()
            for athlete in athletes:
                _reencrypt(athlete, cipher, counts)
                session.add(athlete)
            after = athletes[-1].id
        log.info(
            "tokens re-encrypted through athlete_id=%s rotated=%d current=%d undecryptable=%d",
            after,
            counts.rotated,
            counts.current,
            counts.undecryptable,
        )
        yield counts


def _reencrypt(athlete: Athlete, cipher: TokenCipher, counts: ReencryptCounts) -> None:
    failed = False
    for name in ENCRYPTED_COLUMNS:
        ciphertext: str | None = getattr(athlete, name)
        if ciphertext is None:
            continue
        try:
            renewed = cipher.reencrypt(ciphertext)
        except TokenDecryptError:
            counts.undecryptable += 1
            failed = True
            continue
        if renewed is None:
            counts.current += 1
        else:
            setattr(athlete, name, renewed)
            counts.rotated += 1
    if failed:
        counts.undecryptable_athletes.append(athlete.id)
