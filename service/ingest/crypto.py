"""Encryption of Strava tokens at rest (Fernet; several keys allow rotation)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class TokenDecryptError(Exception):
    """A stored token cannot be decrypted with any configured TOKEN_KEY."""


class TokenCipher:
    """Encrypts with the first key of TOKEN_KEY and decrypts with any of them.

    Parameters:
      keys: comma-separated Fernet keys, as in the TOKEN_KEY setting.
    """

    def __init__(self, keys: str) -> None:
        fernets = [Fernet(k.strip()) for k in keys.split(",") if k.strip()]
        self._first = fernets[0]
        self._fernet = MultiFernet(fernets)

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise TokenDecryptError("stored token does not decrypt with any TOKEN_KEY") from None

    def reencrypt(self, ciphertext: str) -> str | None:
        """`ciphertext` encrypted under the first key, or None when it already is (so a
        second pass changes nothing); TokenDecryptError when no key decrypts it."""
        try:
            self._first.decrypt(ciphertext.encode())
        except InvalidToken:
            pass
        else:
            return None
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise TokenDecryptError("stored token does not decrypt with any TOKEN_KEY") from None
