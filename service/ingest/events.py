"""What a Strava webhook event is, and what it requires of us (a pure decision)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

# Strava's ids are int64 (strava-api.md §1.4); anything larger cannot be stored.
_INT64_MAX = 2**63 - 1
StravaId = Annotated[StrictInt, Field(ge=0, le=_INT64_MAX)]
Word = Annotated[str, Field(min_length=1, max_length=32)]


class WebhookEvent(BaseModel):
    """The body Strava POSTs to the callback (strava-api.md §1.4). Unknown extra fields are
    ignored; unknown object and aspect types are accepted and stored, then ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    object_type: Word
    object_id: StravaId
    aspect_type: Word
    owner_id: StravaId
    subscription_id: StravaId
    event_time: StravaId
    updates: dict[str, Any] = Field(default_factory=dict)

    @field_validator("updates", mode="before")
    @classmethod
    def _null_updates_are_empty(cls, value: Any) -> Any:
        return {} if value is None else value


@dataclass(frozen=True)
class Hydrate:
    activity_id: int


@dataclass(frozen=True)
class DeleteActivity:
    activity_id: int


@dataclass(frozen=True)
class Deauthorize:
    athlete_id: int


@dataclass(frozen=True)
class Ignore:
    reason: str


Action = Hydrate | DeleteActivity | Deauthorize | Ignore


def is_deauthorization(object_type: str, aspect_type: str, updates: dict[str, Any]) -> bool:
    # Strava sends the string "false"; some integrators report a bare boolean (§1.4).
    return (
        object_type == "athlete"
        and aspect_type in ("update", "delete")
        and updates.get("authorized") in ("false", False)
    )


def plan_event(
    object_type: str,
    aspect_type: str,
    object_id: int,
    owner_id: int,
    updates: dict[str, Any],
    *,
    owner_connected: bool,
) -> Action:
    """Decide what an event requires. Events only point at data; we always refetch (§1.8)."""
    if is_deauthorization(object_type, aspect_type, updates):
        return Deauthorize(owner_id)
    if not owner_connected:
        return Ignore("unknown or disconnected owner")
    if object_type == "activity":
        if aspect_type in ("create", "update"):
            return Hydrate(object_id)
        if aspect_type == "delete":
            return DeleteActivity(object_id)
    return Ignore(f"unsupported event {object_type}/{aspect_type}")
