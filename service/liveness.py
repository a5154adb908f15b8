"""What the heartbeats say (service/heartbeats.py): for each role, the processes seen alive,
and which roles have none. `strava-ingest health` prints it; `GET /readyz` includes it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from service.heartbeats import Beat


@dataclass(frozen=True)
class RoleState:
    """The live processes of one role (none: the role is missing)."""

    role: str
    beats: tuple[Beat, ...]

    @property
    def alive(self) -> bool:
        return bool(self.beats)

    def summary(self, now: float) -> dict[str, Any]:
        """Counts and ages only: fit for an unauthenticated probe (no host names or pids)."""
        latest = max((b.last_beat for b in self.beats), default=None)
        return {
            "status": "ok" if self.alive else "missing",
            "processes": len(self.beats),
            "last_beat_seconds_ago": None if latest is None else round(max(0.0, now - latest), 1),
        }


def role_states(beats: Iterable[Beat], roles: Sequence[str]) -> dict[str, RoleState]:
    """`roles`, in order, each with its live processes (oldest first)."""
    listed = sorted(beats, key=lambda b: (b.started_at, b.instance))
    return {role: RoleState(role, tuple(b for b in listed if b.role == role)) for role in roles}


def missing(states: dict[str, RoleState]) -> list[str]:
    return [role for role, state in states.items() if not state.alive]
