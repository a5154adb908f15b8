"""What a Strava webhook event is, and what it requires of us (a pure decision).

`plan_event` looks at one event, its owner and what we hold about the activity, and returns
an action; `service/ingest/process.py` carries it out. docs/events.md describes the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from service.models import AthleteStatus, RemovalReason

# Strava's ids are int64 (docs/strava.md §1.4); anything larger cannot be stored.
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
UNSTORABLE = "unstorable_value"


def unstorable_part(value: Any) -> str | None:
    """Where in ``value`` (a JSON value) something sits that PostgreSQL or SQLite cannot store,
    as a dotted path (``""`` for ``value`` itself) with the reason; None when all of it can.

    PostgreSQL's text and jsonb refuse NUL characters and lone surrogates (neither is valid
    UTF-8), jsonb refuses NaN and ±Infinity, and a bigint column or SQLite integer holds only
    signed 64 bits. One such value in a group commit would fail the whole batch."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        problem = _unstorable_scalar(item)
        if problem is not None:
            return f"{path or 'value'}: {problem}"
        if isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (problem := _unstorable_scalar(key)) is not None:
                    return f"{_printable(where)} (key): {problem}"
                stack.append((_printable(where), child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def _unstorable_scalar(value: Any) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate"
    elif isinstance(value, float) and not math.isfinite(value):
        return "NaN or Infinity"
    elif isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        return "an integer outside signed 64 bits"
    return None


def _printable(path: str) -> str:
    # A path built from an untrusted key goes into error bodies and logs: escaped, bounded.
    return path.encode("unicode_escape", "backslashreplace").decode("ascii")[:80]


def _storable(value: Any) -> Any:
    problem = unstorable_part(value)
    if problem is not None:
        raise PydanticCustomError(
            UNSTORABLE, "holds what the database cannot store: {problem}", {"problem": problem}
        )
    return value


StravaId = Annotated[StrictInt, Field(ge=0, le=_INT64_MAX)]
Word = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_storable)]


class WebhookEvent(BaseModel):
    """The body Strava POSTs to the callback (docs/strava.md §1.4). Unknown extra fields are
    ignored; unknown object and aspect types are accepted and stored, then ignored. Every value
    must be storable (`unstorable_part`), so that no event can fail a group commit."""

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

    @field_validator("updates")
    @classmethod
    def _storable_updates(cls, value: dict[str, Any]) -> dict[str, Any]:
        storable: dict[str, Any] = _storable(value)
        return storable


class LocalKey(StrEnum):
    """The keys of an activity update that we can apply without asking Strava (§1.3)."""

    TITLE = "title"
    TYPE = "type"
    PRIVATE = "private"


LOCAL_KEYS = frozenset(f.value for f in LocalKey)


@dataclass(frozen=True)
class Owner:
    """The event's owner as we know them: `status` is None for an athlete we never saw;
    `read_all` tells whether they granted activity:read_all (docs/strava.md §3.1)."""

    status: AthleteStatus | None
    read_all: bool = True


@dataclass(frozen=True)
class ActivityState:
    """What we hold about the event's activity, in Strava's event_time (unix seconds).

    Parameters:
      stored: an activity row exists.
      event_time: the newest event seen for it.
      synced_event_time: its last fetch reflects every change up to this event time.
      update_times: per locally applied key (`LocalKey`), the event that last set it.
      visibility: the stored visibility (everyone | followers_only | only_me).
      removed_event_time: the event time of a delete that removed it (a tombstone).
    """

    stored: bool = False
    event_time: int | None = None
    synced_event_time: int | None = None
    update_times: Mapping[str, int] = field(default_factory=dict)
    visibility: str | None = None
    removed_event_time: int | None = None


NOTHING_STORED = ActivityState()


@dataclass(frozen=True)
class Hydrate:
    """Fetch the activity, once for all events of a burst (service/ingest/coalesce.py)."""

    activity_id: int


@dataclass(frozen=True)
class ApplyUpdates:
    """Write `values` (column → value) with no API call; stamp `keys` with `event_time`."""

    activity_id: int
    event_time: int
    values: Mapping[str, Any]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class DeleteActivity:
    """Remove the activity once Strava confirms it is gone: the confirming fetch is the
    burst's one fetch (coalesce.py), and a 404 then removes it with a `reason` tombstone."""

    activity_id: int
    event_time: int
    reason: RemovalReason


@dataclass(frozen=True)
class Deauthorize:
    """Purge the athlete once Strava confirms the grant is gone (tokens.grant_revoked)."""

    athlete_id: int


@dataclass(frozen=True)
class Ignore:
    reason: str


@dataclass(frozen=True)
class Unconfirmed:
    """A destructive event that cannot be confirmed with Strava now: nothing is removed."""

    reason: str


Action = Hydrate | ApplyUpdates | DeleteActivity | Deauthorize | Ignore | Unconfirmed

UNKNOWN_OWNER = "unknown owner"


def is_deauthorization(object_type: str, aspect_type: str, updates: Mapping[str, Any]) -> bool:
    # Strava sends the string "false"; some integrators report a bare boolean (§1.4).
    return (
        object_type == "athlete"
        and aspect_type in ("update", "delete")
        and updates.get("authorized") in ("false", False)
    )


def _private_flag(value: Any) -> bool | None:
    # "private" is the string "true" (Only You) or "false" (Followers/Everyone) (§1.4);
    # a boolean is accepted as leniently as `authorized` is.
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    return None


def _column_values(key: str, value: Any, stored_visibility: str | None) -> dict[str, Any] | None:
    """The columns one update key sets, or None when its value is not what Strava sends."""
    if key == LocalKey.TITLE and isinstance(value, str):
        return {"name": value}
    if key == LocalKey.TYPE and isinstance(value, str) and value:
        # Whether `type` carries the deprecated coarse type or the sport_type is not
        # documented (§1.4, §4.4). Every coarse type is also a sport_type, and the old
        # sport_type is certainly stale after a change, so both columns take the value;
        # the next fetch (reconcile, or any hydrating event) restores the finer one.
        return {"type": value, "sport_type": value}
    if key == LocalKey.PRIVATE and (private := _private_flag(value)) is not None:
        if private:
            return {"private": True, "visibility": "only_me"}
        # "false" means Followers or Everyone, and does not say which. An activity that
        # was already visible keeps its visibility; one leaving Only You is assumed
        # followers_only, the narrower of the two, until the next fetch says otherwise.
        visible = stored_visibility not in (None, "only_me")
        return {"private": False, "visibility": stored_visibility if visible else "followers_only"}
    return None


def _older(event_time: int, than: int | None) -> bool:
    # Event times are whole seconds; on a tie the event processed later wins, which is
    # right for the usual in-order delivery of one burst.
    return than is not None and event_time < than


def _plan_local_update(event: WebhookEvent, activity: ActivityState) -> Action | None:
    """An update of title/type/private only, for a stored activity: apply it locally, or
    None when some value is not what Strava sends (then we fetch instead)."""
    values: dict[str, Any] = {}
    keys: list[str] = []
    for key, value in event.updates.items():
        columns = _column_values(key, value, activity.visibility)
        if columns is None:
            return None
        if _older(event.event_time, activity.update_times.get(key)):
            continue  # a newer event already set this key
        values |= columns
        keys.append(key)
    if not keys:
        return Ignore("older than the stored values")
    return ApplyUpdates(event.object_id, event.event_time, values, tuple(keys))


def plan_event(event: WebhookEvent, owner: Owner, activity: ActivityState) -> Action:
    """Decide what an event requires. Events only point at data: what they do not carry
    themselves (title/type/private) is always fetched (§1.8)."""
    if is_deauthorization(event.object_type, event.aspect_type, event.updates):
        return Deauthorize(event.owner_id)
    if owner.status is None:
        return Ignore(UNKNOWN_OWNER)
    if owner.status is AthleteStatus.DEAUTHORIZED:
        return Ignore("deauthorized owner")
    if event.object_type != "activity" or event.aspect_type not in ("create", "update", "delete"):
        return Ignore(f"unsupported event {event.object_type}/{event.aspect_type}")

    if event.aspect_type == "delete":
        if _older(event.event_time, activity.event_time):
            # E.g. made Only You, then visible again: the later create already won (§1.4).
            return Ignore("delete older than the stored activity")
        if owner.status is not AthleteStatus.CONNECTED:
            return Unconfirmed("the owner must reconnect before Strava can confirm the delete")
        # With activity:read only, a delete may mean "made Only You" (§1.4).
        reason = RemovalReason.DELETED if owner.read_all else RemovalReason.HIDDEN
        return DeleteActivity(event.object_id, event.event_time, reason)

    if activity.removed_event_time is not None and event.event_time <= activity.removed_event_time:
        # A delete wins over earlier events, also when it arrived first.
        return Ignore("older than the activity's removal")
    if _older(event.event_time, activity.synced_event_time):
        return Ignore("older than the last fetch")
    updates = set(event.updates)
    if event.aspect_type == "update" and activity.stored and updates and updates <= LOCAL_KEYS:
        local = _plan_local_update(event, activity)
        if local is not None:
            return local
    if owner.status is not AthleteStatus.CONNECTED:
        # needs_reauth: no usable token; the reconcile after reconnecting catches up.
        return Ignore("owner must reconnect before we can fetch")
    return Hydrate(event.object_id)
