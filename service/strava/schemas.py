"""Typed views of Strava's JSON, lenient by design.

Strava's real responses carry many fields the swagger does not list, and its enums
(``sport_type``, zone types, …) keep growing (docs/strava.md §4.4). So every model keeps unknown
fields (``extra="allow"``, reachable through ``model_extra``) and every enum is a plain ``str``:
a new value from Strava must never make ingestion fail. Only identifying fields (ids, and
the token fields of a token response) are required.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    # Strava writes UTC instants with a "Z" (docs/strava.md §4.4); a naive value is read as UTC
    # rather than rejected.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _as_wall_clock(value: datetime) -> datetime:
    # start_date_local is the athlete's local wall clock written with a "Z" (docs/strava.md §4.4).
    # The "Z" is a lie, so the zone is dropped: the result is a naive local time.
    return value.replace(tzinfo=None)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
LocalDateTime = Annotated[datetime, AfterValidator(_as_wall_clock)]


class StravaModel(BaseModel):
    """Base of every Strava model: unknown fields are kept, nothing is frozen."""

    model_config = ConfigDict(extra="allow")


class FaultError(StravaModel):
    """One entry of a fault's ``errors`` list (docs/strava.md §4.5)."""

    resource: str | None = None
    field: str | None = None
    code: str | None = None


class Fault(StravaModel):
    """Strava's error envelope: ``{"message": …, "errors": [{resource, field, code}]}``."""

    message: str | None = None
    errors: list[FaultError] = []


class MetaAthlete(StravaModel):
    """An athlete reference, ``{"id": …, "resource_state": 1}``."""

    id: int
    resource_state: int | None = None


class MetaActivity(StravaModel):
    """An activity reference, as nested in laps."""

    id: int
    resource_state: int | None = None
    visibility: str | None = None


class SummaryGear(StravaModel):
    id: str | None = None
    name: str | None = None
    nickname: str | None = None
    primary: bool | None = None
    retired: bool | None = None
    resource_state: int | None = None
    distance: float | None = None
    converted_distance: float | None = None


class SummaryAthlete(StravaModel):
    id: int
    resource_state: int | None = None
    username: str | None = None
    firstname: str | None = None
    lastname: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    sex: str | None = None
    premium: bool | None = None
    summit: bool | None = None
    badge_type_id: int | None = None
    profile: str | None = None
    profile_medium: str | None = None
    created_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = None


class DetailedAthlete(SummaryAthlete):
    bio: str | None = None
    weight: float | None = None
    ftp: int | None = None
    measurement_preference: str | None = None
    date_preference: str | None = None
    athlete_type: int | None = None
    follower_count: int | None = None
    friend_count: int | None = None
    bikes: list[SummaryGear] = []
    shoes: list[SummaryGear] = []
    clubs: list[dict[str, Any]] = []


class PolylineMap(StravaModel):
    id: str | None = None
    summary_polyline: str | None = None
    polyline: str | None = None
    resource_state: int | None = None


class SummaryActivity(StravaModel):
    """One entry of ``GET /athlete/activities`` (resource_state 2), docs/strava.md §4.4.

    Counts and durations are ``int``; every measured quantity is ``float`` because Strava sends
    both ``0`` and ``0.0`` for them.
    """

    id: int
    athlete: MetaAthlete
    resource_state: int | None = None
    external_id: str | None = None
    upload_id: int | None = None
    upload_id_str: str | None = None
    name: str | None = None
    sport_type: str | None = None
    type: str | None = None
    workout_type: int | None = None
    start_date: UtcDateTime | None = None
    start_date_local: LocalDateTime | None = None
    timezone: str | None = None
    utc_offset: float | None = None
    location_city: str | None = None
    location_state: str | None = None
    location_country: str | None = None
    distance: float | None = None
    moving_time: int | None = None
    elapsed_time: int | None = None
    total_elevation_gain: float | None = None
    elev_high: float | None = None
    elev_low: float | None = None
    average_speed: float | None = None
    max_speed: float | None = None
    average_cadence: float | None = None
    average_temp: float | None = None
    average_watts: float | None = None
    max_watts: float | None = None
    weighted_average_watts: float | None = None
    kilojoules: float | None = None
    device_watts: bool | None = None
    has_heartrate: bool | None = None
    average_heartrate: float | None = None
    max_heartrate: float | None = None
    suffer_score: float | None = None
    start_latlng: list[float] | None = None
    end_latlng: list[float] | None = None
    map: PolylineMap | None = None
    visibility: str | None = None
    private: bool | None = None
    trainer: bool | None = None
    commute: bool | None = None
    manual: bool | None = None
    flagged: bool | None = None
    hide_from_home: bool | None = None
    gear_id: str | None = None
    achievement_count: int | None = None
    kudos_count: int | None = None
    comment_count: int | None = None
    athlete_count: int | None = None
    photo_count: int | None = None
    total_photo_count: int | None = None
    pr_count: int | None = None


class Lap(StravaModel):
    """One lap (``GET /activities/{id}/laps`` or ``laps`` of a detailed activity), §4.3."""

    id: int | None = None
    resource_state: int | None = None
    name: str | None = None
    activity: MetaActivity | None = None
    athlete: MetaAthlete | None = None
    elapsed_time: int | None = None
    moving_time: int | None = None
    start_date: UtcDateTime | None = None
    start_date_local: LocalDateTime | None = None
    distance: float | None = None
    average_speed: float | None = None
    max_speed: float | None = None
    lap_index: int | None = None
    split: int | None = None
    start_index: int | None = None
    end_index: int | None = None
    total_elevation_gain: float | None = None
    average_cadence: float | None = None
    average_watts: float | None = None
    device_watts: bool | None = None
    average_heartrate: float | None = None
    max_heartrate: float | None = None
    pace_zone: int | None = None


class Split(StravaModel):
    """One entry of ``splits_metric`` / ``splits_standard``."""

    split: int | None = None
    distance: float | None = None
    elapsed_time: int | None = None
    moving_time: int | None = None
    elevation_difference: float | None = None
    average_speed: float | None = None
    average_grade_adjusted_speed: float | None = None
    average_heartrate: float | None = None
    pace_zone: int | None = None


class DetailedActivity(SummaryActivity):
    """``GET /activities/{id}`` (resource_state 3), docs/strava.md §4.4.

    Segment efforts, best efforts and photos are left untyped: ingestion stores them as JSON.
    """

    description: str | None = None
    calories: float | None = None
    device_name: str | None = None
    embed_token: str | None = None
    gear: SummaryGear | None = None
    laps: list[Lap] = []
    splits_metric: list[Split] = []
    splits_standard: list[Split] = []
    best_efforts: list[dict[str, Any]] = []
    segment_efforts: list[dict[str, Any]] = []
    available_zones: list[str] = []
    perceived_exertion: float | None = None
    prefer_perceived_exertion: bool | None = None
    private_note: str | None = None


class Stream(StravaModel):
    """One stream of ``GET /activities/{id}/streams?key_by_type=true`` (docs/strava.md §4.3)."""

    data: list[Any]
    series_type: str | None = None
    original_size: int | None = None
    resolution: str | None = None


class TokenResponse(StravaModel):
    """``POST /oauth/token``; ``athlete`` comes only with the first exchange (§3.2, §3.3)."""

    token_type: str
    # Kept out of repr so that logging a result never prints a credential.
    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_at: int
    expires_in: int
    athlete: SummaryAthlete | None = None


class Subscription(StravaModel):
    """The application's push subscription (docs/strava.md §1.1)."""

    id: int
    application_id: int | None = None
    callback_url: str | None = None
    resource_state: int | None = None
    created_at: UtcDateTime | None = None
    updated_at: UtcDateTime | None = None
