"""Settings: the one place where environment variables (and an optional .env) are read.

The defaults give the embedded mode (SQLite and an in-process broker, one process);
a `postgresql+psycopg://` DATABASE_URL and a `redis://` BROKER_URL give production mode.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal, TypeVar

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or malformed; the message names every offending variable."""


class Mode(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


_DATABASE_SCHEMES = ("sqlite://", "postgresql+psycopg://")
_BROKER_SCHEMES = ("memory://", "redis://", "rediss://")
# The stream types `GET /activities/{id}/streams` takes (strava-api.md §4.3).
STREAM_TYPES = (
    "time", "distance", "latlng", "altitude", "velocity_smooth", "heartrate", "cadence",
    "watts", "temp", "moving", "grade_smooth",
)  # fmt: skip


class DatabaseSettings(BaseSettings):
    """What commands that only touch the database (migrations) need."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./strava_ingest.db"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_DATABASE_SCHEMES)}")
        return value


class Settings(DatabaseSettings):
    """Everything the web app, the workers and the CLI need."""

    broker_url: str = "memory://"
    strava_client_id: Annotated[int, Field(gt=0)]
    strava_client_secret: SecretStr
    strava_verify_token: SecretStr
    strava_api_url: str = "https://www.strava.com/api/v3"
    strava_oauth_url: str = "https://www.strava.com/oauth"
    webhook_path: str = "/webhooks/strava"
    # Webhook trust (issue 5; service/web/trust.py). A secret last path segment: Strava then
    # calls `{WEBHOOK_PATH}/{WEBHOOK_SECRET}`, so give that as `--callback-url`.
    webhook_secret: SecretStr | None = None
    # Verify `X-Strava-Signature` only when set: Strava documents no signature (§1.8).
    webhook_signing_secret: SecretStr | None = None
    # Our push subscription's id; wins over the one `subscription create` stored.
    strava_subscription_id: Annotated[int, Field(gt=0)] | None = None
    # How long the web app trusts its cached copy of the stored subscription id.
    subscription_cache_seconds: Annotated[float, Field(ge=0)] = 30.0
    # Group commit of webhook events: at most this many per INSERT.
    ingest_batch_max: Annotated[int, Field(gt=0, le=1000)] = 256
    # Batches committing at once, each on a PostgreSQL connection of its own.
    ingest_commit_lanes: Annotated[int, Field(gt=0, le=16)] = 2
    # A webhook request waits at most this long for its commit, then gets 503: Strava wants an
    # answer within 2 s, and a hung database must not make us miss it (service/web/batching.py).
    ingest_deadline_seconds: Annotated[float, Field(gt=0, le=1.8)] = 1.5
    # One or more Fernet keys, comma-separated; the first encrypts, all decrypt (rotation).
    token_key: SecretStr

    oauth_scopes: str = "read,activity:read_all"
    # Where Strava sends the athlete back after authorizing; derived from the request if unset.
    public_url: str | None = None
    # Refresh an access token that expires sooner than this (strava-api.md §3.3).
    token_refresh_margin_seconds: Annotated[int, Field(ge=0)] = 300
    strava_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # The relay re-sends inbox rows that stayed `received` longer than this.
    relay_after_seconds: Annotated[float, Field(ge=0)] = 10.0
    relay_interval_seconds: Annotated[float, Field(gt=0)] = 15.0
    # Webhook events (issue 5; docs/events.md). Events for one activity within this window
    # share one fetch: Strava may send several events for one save (strava-api.md §1.4).
    event_coalesce_seconds: Annotated[float, Field(ge=0)] = 3.0
    # Attempts in all for an event or a hydration that keeps failing before it is `failed`.
    retry_max_attempts: Annotated[int, Field(gt=0)] = 8
    # Processed and ignored inbox rows (and activity tombstones) are pruned after this.
    inbox_retention_days: Annotated[float, Field(gt=0)] = 14.0
    # Events for owners we never knew cost no call, but anyone can post them: they are
    # pruned after this, much sooner than the others (docs/events.md).
    unknown_owner_retention_hours: Annotated[float, Field(gt=0)] = 24.0
    # Webhook fetches of activities we have never seen (and checks of the grant for
    # deauthorizations), per athlete and quota window; the rest wait at the `recent` tier.
    # Strava signs nothing, so a forged burst for one athlete must not spend the real-time
    # budget everyone shares. 10 covers what one athlete uploads in a quarter hour except a
    # bulk import (whose rest is still fetched, at `recent`), and 10 forged fetches are 10%
    # of Strava's default read window (docs/strava.md §2.1).
    webhook_new_activity_fetches_per_window: Annotated[int, Field(ge=0)] = 10
    # Creates Strava answers 404 for (forged, or deleted at once) before the athlete is
    # flagged for an operator (`strava-ingest events counts`).
    forged_creates_to_flag: Annotated[int, Field(gt=0)] = 5
    inbox_prune_interval_seconds: Annotated[float, Field(gt=0)] = 3600.0
    worker_threads: Annotated[int, Field(gt=0)] = 4
    log_level: str = "INFO"

    # OAuth connect (issue 4, service/web/oauth.py): how long a signed `state` is valid, and
    # the return URLs (comma-separated prefixes) `/auth/strava/connect?return_to=` accepts.
    oauth_state_seconds: Annotated[int, Field(gt=0)] = 600
    oauth_return_urls: str = ""
    # Sync jobs (issue 4, service/ingest/sync.py). Strava's largest page is 200 (§4.1).
    sync_page_size: Annotated[int, Field(ge=2, le=200)] = 200
    sync_lease_seconds: Annotated[float, Field(gt=0)] = 60.0
    sync_sweep_interval_seconds: Annotated[float, Field(gt=0)] = 30.0
    # Hydration policy for listed activities (service/ingest/policy.py): the recent window,
    # the sport types hydrated eagerly (comma-separated; empty means all), and whether older
    # ones hydrate at backfill priority ("backfill") or only when asked for ("on_demand").
    hydrate_recent_weeks: Annotated[int, Field(ge=0)] = 12
    hydrate_sport_types: str = ""
    hydrate_older: Literal["backfill", "on_demand"] = "backfill"
    # Streams (strava-api.md §4.3) after a listed activity's detail: one more read call
    # each, so by default only above backfill priority (the recent window, on demand);
    # "all" adds older ones, "none" never. Keys: comma-separated stream types.
    hydrate_streams: Literal["all", "recent", "none"] = "recent"
    hydrate_stream_keys: str = (
        "time,distance,latlng,altitude,heartrate,cadence,watts,velocity_smooth"
    )
    # Reconciliation (service/ingest/reconcile.py): list after (newest known start - overlap);
    # each athlete once per period, at a slot spread over it. Its share of the daily quota
    # is the `reconcile` tier's daily share in QUOTA_SHARES.
    reconcile_overlap_days: Annotated[int, Field(ge=0)] = 7
    reconcile_period_seconds: Annotated[int, Field(gt=0)] = 86400
    reconcile_check_seconds: Annotated[float, Field(gt=0)] = 300.0

    # The quota scheduler (strava-api.md §2). Window lengths are settings so that simulations
    # can run sped up; Strava's are 900 s (aligned to :00/:15/:30/:45) and the UTC day.
    quota_window_seconds: Annotated[int, Field(gt=0)] = 900
    quota_day_seconds: Annotated[int, Field(gt=0)] = 86400
    # Strava's default limits until a response's headers say otherwise (per app, §2.1).
    quota_limit_short: Annotated[int, Field(gt=0)] = 200
    quota_limit_daily: Annotated[int, Field(gt=0)] = 2000
    quota_read_limit_short: Annotated[int, Field(gt=0)] = 100
    quota_read_limit_daily: Annotated[int, Field(gt=0)] = 1000
    # Never spent, whatever the tier: room for other clients of the app and for clock skew.
    quota_safety_margin: Annotated[float, Field(ge=0, lt=1)] = 0.05
    # Share of each window (short, daily) a tier may fill, highest tier first; a tier stops
    # once the window's usage, all tiers together, reaches its share.
    quota_shares: dict[str, tuple[float, float]] = {
        "on_demand": (1.0, 1.0),
        "webhook": (1.0, 1.0),
        "recent": (0.85, 0.8),
        "backfill": (0.7, 0.6),
        "reconcile": (0.5, 0.4),
    }

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(_BROKER_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_BROKER_SCHEMES)}")
        return value

    @field_validator("webhook_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value.rstrip("/") or "/"

    @field_validator("webhook_secret")
    @classmethod
    def _one_path_segment(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if len(secret) < 16 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in secret):
            # Never echo the value: it is a credential.
            raise ValueError("must be at least 16 characters of A-Z, a-z, 0-9, '-' and '_'")
        return value

    @field_validator("hydrate_stream_keys")
    @classmethod
    def _stream_types(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",") if k.strip()]
        unknown = sorted(set(keys) - set(STREAM_TYPES))
        if not keys or unknown:
            raise ValueError(f"must be one or more of {', '.join(STREAM_TYPES)}")
        return ",".join(keys)

    @field_validator("token_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        if not keys:
            raise ValueError("must hold at least one Fernet key")
        for key in keys:
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    "each key must be 32 url-safe base64-encoded bytes "
                    "(generate one with `strava-ingest keygen`)"
                ) from None
        return value

    @field_validator("strava_api_url", "strava_oauth_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("quota_shares")
    @classmethod
    def _shares_per_tier(
        cls, value: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        from service.strava.quota.tiers import TIERS_BY_PRIORITY

        names = [tier.value for tier in TIERS_BY_PRIORITY]
        if sorted(value) != sorted(names):
            raise ValueError(f"must give (short, daily) shares for exactly {', '.join(names)}")
        previous = (1.0, 1.0)
        for name in names:
            short, daily = value[name]
            if not (0 < short <= 1 and 0 < daily <= 1):
                raise ValueError(f"{name}: shares must be in (0, 1]")
            if short > previous[0] or daily > previous[1]:
                raise ValueError(f"{name}: a lower tier cannot have a larger share")
            previous = (short, daily)
        return value

    @cached_property
    def mode(self) -> Mode:
        embedded = self.database_url.startswith("sqlite") and self.broker_url == "memory://"
        return Mode.EMBEDDED if embedded else Mode.PRODUCTION

    @property
    def scopes(self) -> list[str]:
        return [s.strip() for s in self.oauth_scopes.split(",") if s.strip()]


S = TypeVar("S", bound=DatabaseSettings)


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's error into one line per variable, named as the user sets it."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        reason = "is required" if item["type"] == "missing" else item["msg"]
        lines.append(f"{name}: {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment, raising ConfigError that names what is wrong."""
    try:
        return cls()
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None
