"""OAuth codes and tokens, and the push subscription (docs/strava.md §1.1, §3).

Not locked itself: the emulator calls it with its own lock held.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from service.emulator.config import EmulatorConfig

SCOPES = frozenset(
    {
        "read",
        "read_all",
        "profile:read_all",
        "profile:write",
        "activity:read",
        "activity:read_all",
        "activity:write",
    }
)


@dataclass(frozen=True)
class AccessToken:
    token: str
    athlete_id: int
    scope: frozenset[str]
    expires_at: int

    def allows(self, scope: str) -> bool:
        # activity:read_all includes everything activity:read grants (§3.1).
        if scope == "activity:read":
            return bool({"activity:read", "activity:read_all"} & self.scope)
        return scope in self.scope


@dataclass(frozen=True)
class Subscription:
    id: int
    callback_url: str
    verify_token: str
    created_at: float


class TokenError(Exception):
    """A token-endpoint failure; ``errors`` is the Fault's error triple (§3.3)."""

    def __init__(self, resource: str, field: str, code: str = "invalid") -> None:
        super().__init__(f"{resource}.{field} {code}")
        self.error = {"resource": resource, "field": field, "code": code}


def grant_scope(requested: str) -> str:
    """Strava grants ``read`` even when not asked for (§3.1), and echoes the rest in order."""
    asked = [s.strip() for s in requested.split(",") if s.strip()]
    unknown = [s for s in asked if s not in SCOPES]
    if unknown:
        raise TokenError("Authorize", "scope")
    granted = ["read"] + [s for s in asked if s != "read"]
    return ",".join(dict.fromkeys(granted))


class TokenStore:
    """Authorization codes, access tokens and the one live refresh token per athlete."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._codes: dict[str, tuple[int, str, float]] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, tuple[int, frozenset[str]]] = {}
        self.authorized: set[int] = set()

    def _now(self) -> float:
        return self._config.clock()

    def new_code(self, athlete_id: int, scope: str) -> str:
        code = secrets.token_hex(20)
        self._codes[code] = (
            athlete_id,
            scope,
            self._now() + self._config.authorization_code_lifetime,
        )
        return code

    def _issue_access(self, athlete_id: int, scope: frozenset[str]) -> AccessToken:
        expires_at = int(self._now()) + self._config.token_lifetime
        token = AccessToken(secrets.token_hex(20), athlete_id, scope, expires_at)
        self._access[token.token] = token
        return token

    def _issue_refresh(self, athlete_id: int, scope: frozenset[str]) -> str:
        # One live refresh token per athlete: issuing a new one kills the old at once (§3.3).
        for old in [t for t, (a, _) in self._refresh.items() if a == athlete_id]:
            del self._refresh[old]
        token = secrets.token_hex(20)
        self._refresh[token] = (athlete_id, scope)
        return token

    def exchange(self, code: str) -> tuple[int, AccessToken, str]:
        """A code for tokens; codes are single-use and short-lived (§3.1)."""
        entry = self._codes.pop(code, None)
        if entry is None or entry[2] < self._now():
            raise TokenError("RequestToken", "code")
        athlete_id, scope_text, _ = entry
        scope = frozenset(scope_text.split(","))
        self.authorized.add(athlete_id)
        return (
            athlete_id,
            self._issue_access(athlete_id, scope),
            self._issue_refresh(athlete_id, scope),
        )

    def grant(self, athlete_id: int, scope_text: str) -> tuple[AccessToken, str]:
        """Tokens without the browser round trip (a test shortcut)."""
        scope = frozenset(grant_scope(scope_text).split(","))
        self.authorized.add(athlete_id)
        return self._issue_access(athlete_id, scope), self._issue_refresh(athlete_id, scope)

    def refresh(self, refresh_token: str) -> tuple[AccessToken, str]:
        """Rotate the refresh token; reuse the access token while it has over an hour left."""
        entry = self._refresh.get(refresh_token)
        if entry is None:
            raise TokenError("RefreshToken", "refresh_token")
        athlete_id, scope = entry
        now = self._now()
        current = [
            t
            for t in self._access.values()
            if t.athlete_id == athlete_id
            and t.expires_at - now > self._config.token_reuse_threshold
        ]
        access = (
            max(current, key=lambda t: t.expires_at)
            if current
            else self._issue_access(athlete_id, scope)
        )
        return access, self._issue_refresh(athlete_id, scope)

    def authenticate(self, token: str) -> AccessToken | None:
        found = self._access.get(token)
        if found is None or found.expires_at <= self._now():
            return None
        return found

    def revoke(self, athlete_id: int) -> bool:
        """Invalidate every token of the athlete (§3.4); True if they had authorized."""
        for token in [t for t, a in self._access.items() if a.athlete_id == athlete_id]:
            del self._access[token]
        for token in [t for t, (a, _) in self._refresh.items() if a == athlete_id]:
            del self._refresh[token]
        was = athlete_id in self.authorized
        self.authorized.discard(athlete_id)
        return was

    def token_response(
        self, access: AccessToken, refresh_token: str, athlete: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Key order as oauth/token_authorization_code.yaml and token_refresh_token.yaml."""
        expires_in = max(0, access.expires_at - int(self._now()))
        if athlete is None:
            return {
                "token_type": "Bearer",
                "access_token": access.token,
                "expires_at": access.expires_at,
                "expires_in": expires_in,
                "refresh_token": refresh_token,
            }
        return {
            "token_type": "Bearer",
            "expires_at": access.expires_at,
            "expires_in": expires_in,
            "refresh_token": refresh_token,
            "access_token": access.token,
            "athlete": athlete,
        }
