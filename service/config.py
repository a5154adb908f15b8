"""Settings: the one place where environment variables (and an optional .env) are read.

The defaults give the embedded mode (SQLite and an in-process broker, one process);
a `postgresql+psycopg://` DATABASE_URL and a `redis://` BROKER_URL give production mode.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or malformed; the message names every offending variable."""


class Mode(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


_DATABASE_SCHEMES = ("sqlite://", "postgresql+psycopg://")
_BROKER_SCHEMES = ("memory://", "redis://", "rediss://")
# The stream types `GET /activities/{id}/streams` takes (docs/strava.md §4.3).
STREAM_TYPES = (
    "time", "distance", "latlng", "altitude", "velocity_smooth", "heartrate", "cadence",
    "watts", "temp", "moving", "grade_smooth",
)  # fmt: skip


def comma_separated(value: str) -> list[str]:
    """The non-empty items of a comma-separated setting, stripped."""
    return [item.strip() for item in value.split(",") if item.strip()]


class DatabaseSettings(BaseSettings):
    """What commands that only touch the database (migrations) need."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./strava_ingest.db"
    # Python logging level of every process.
    log_level: str = "INFO"
    # `json`: one JSON object per line, for a log collector; `text`: key=value lines for a
    # person reading a terminal. Unset: json in production mode, text in embedded mode.
    log_format: Literal["json", "text"] | None = None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_DATABASE_SCHEMES)}")
        return value

    def _production(self) -> bool:
        # Without a broker URL to go by, a server database means production.
        return not self.database_url.startswith("sqlite")

    @property
    def log_format_in_effect(self) -> Literal["json", "text"]:
        """LOG_FORMAT, or the mode's default when it is unset."""
        if self.log_format is not None:
            return self.log_format
        return "json" if self._production() else "text"


class Settings(DatabaseSettings):
    """Everything the web app, the workers and the CLI need."""

    broker_url: str = "memory://"
    strava_client_id: Annotated[int, Field(gt=0)]
    strava_client_secret: SecretStr
    strava_verify_token: SecretStr
    strava_api_url: str = "https://www.strava.com/api/v3"
    strava_oauth_url: str = "https://www.strava.com/oauth"
    webhook_path: str = "/webhooks/strava"
    # Webhook trust (service/web/trust.py). A secret last path segment, required in production
    # mode: Strava then calls `{WEBHOOK_PATH}/{WEBHOOK_SECRET}` (`subscription create` appends it).
    webhook_secret: SecretStr | None = None
    # Production mode refuses to start without WEBHOOK_SECRET, unless this says that something
    # in front of the service (an authenticating proxy) already keeps forgers out.
    webhook_secret_optout: bool = False
    # An event_time further ahead of our clock than this is refused: event times order the
    # events of an activity, so one from the future would outrank every genuine later one.
    webhook_clock_skew_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    # Verify `X-Strava-Signature` only when set: Strava documents no signature (§1.8).
    webhook_signing_secret: SecretStr | None = None
    # Our push subscription's id; wins over the one `subscription create` stored.
    strava_subscription_id: Annotated[int, Field(gt=0)] | None = None
    # The scheduler's watch of the subscription (service/ingest/subscription_health.py):
    # Strava gives no notice when it stops pushing (docs/strava.md §1.5). No event for this
    # long while athletes are connected logs a warning (seconds, or ISO 8601 like PT6H: six
    # hours without one upload among the connected athletes is unusual by day); every
    # interval the scheduler also asks Strava whether it still lists our subscription (an
    # error when not), one call of the app's quota each time.
    subscription_silence_alert: Annotated[timedelta, Field(gt=timedelta(0))] = timedelta(hours=6)
    subscription_check_interval_seconds: Annotated[float, Field(ge=60)] = 3600.0
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

    # Bearer keys (comma-separated) for the operator's routes (/quota, /stats/webhooks, the
    # product API's admin routes); unset, those routes refuse everyone. An admin key may also
    # do what a read key may.
    admin_api_keys: SecretStr | None = None
    # Bearer keys (comma-separated) for the product backend: the product API's read routes
    # (activities, an athlete's status and syncs). Unset, only admin keys reach them.
    read_api_keys: SecretStr | None = None
    # Origins (comma-separated, e.g. https://app.example.com) whose browser pages may call the
    # product API directly. Unset, no CORS headers are sent: browsers keep other origins out,
    # and a product backend calling server-side needs none.
    cors_origins: str | None = None

    # uvicorn's limits for a public endpoint (`strava-ingest serve`; docs/deployment.md): an
    # idle keep-alive connection is closed after this many seconds; beyond this many open
    # connections or running requests new requests get 503; a request that takes longer than
    # this to arrive in full (line, headers and body) is dropped, and one whose line and
    # headers are larger than this is refused with 431 (service/web/http_protocol.py).
    http_keepalive_seconds: Annotated[int, Field(ge=1, le=300)] = 5
    http_concurrency_limit: Annotated[int, Field(ge=1)] = 1000
    http_request_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    http_max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024

    # Asked for on connect; must include activity:read or activity:read_all, without which
    # the callback refuses the grant (service/web/oauth.py).
    oauth_scopes: str = "read,activity:read_all"
    # This service's public base URL: Strava sends the athlete back to
    # `{PUBLIC_URL}/auth/strava/callback`. Required in production mode; in embedded mode
    # `serve` defaults it to its own address (oauth_base_url). Never taken from a request.
    public_url: str | None = None
    # Refresh an access token that expires sooner than this (docs/strava.md §3.3).
    token_refresh_margin_seconds: Annotated[int, Field(ge=0)] = 300
    strava_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # The relay re-sends inbox rows that stayed `received` longer than this.
    relay_after_seconds: Annotated[float, Field(ge=0)] = 10.0
    relay_interval_seconds: Annotated[float, Field(gt=0)] = 15.0
    # Webhook events (docs/events.md). Events for one activity within this window
    # share one fetch: Strava may send several events for one save (docs/strava.md §1.4).
    event_coalesce_seconds: Annotated[float, Field(ge=0)] = 3.0
    # Attempts in all for an event or a hydration that keeps failing before it is `failed`.
    retry_max_attempts: Annotated[int, Field(gt=0)] = 8
    # Processed and ignored inbox rows (and activity tombstones) are pruned after this.
    inbox_retention_days: Annotated[float, Field(gt=0)] = 14.0
    # Events for owners we never knew cost no call, but anyone can post them: they are
    # pruned after this, much sooner than the others (docs/events.md).
    unknown_owner_retention_hours: Annotated[float, Field(gt=0)] = 24.0
    # Webhook-priority calls that one athlete's events cause (fetches for creates, for
    # updates that need one and for delete confirmations, and checks of the grant for
    # deauthorizations), per quota window; the rest wait at the `recent` tier. Strava signs
    # nothing, so a forged burst for one athlete must not spend the real-time budget everyone
    # shares. 10 covers what one athlete uploads, deletes or edits in a quarter hour except a
    # bulk import or clean-up (whose rest is still fetched, at `recent`: late, not lost), and
    # 10 forged calls are 10% of Strava's default read window (docs/strava.md §2.1).
    webhook_fetches_per_athlete_per_window: Annotated[int, Field(ge=0)] = 10
    # Creates Strava answers 404 for (forged, or deleted at once) before the athlete is
    # flagged for an operator (`strava-ingest events counts`).
    forged_creates_to_flag: Annotated[int, Field(gt=0)] = 5
    inbox_prune_interval_seconds: Annotated[float, Field(gt=0)] = 3600.0
    worker_threads: Annotated[int, Field(gt=0)] = 4
    # Liveness (service/heartbeats.py): every web, worker and scheduler process renews its
    # heartbeat this often, and a heartbeat not renewed within the TTL counts the process as
    # gone. The TTL spans a few beats, so one slow beat is not an outage.
    heartbeat_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    heartbeat_ttl_seconds: Annotated[float, Field(gt=0, le=86400)] = 30.0
    log_level: str = "INFO"
    # Prometheus scrapers rarely send bearer keys: when set, `serve`, `worker` and
    # `scheduler` also serve GET /metrics on this port, without a key, on every interface
    # (firewall it; GET /metrics on the web app always needs an admin key). Every process
    # answers for the whole deployment (service/metrics/), so the first process of a host to
    # bind the port serves it and the others log that it is taken.
    metrics_port: Annotated[int, Field(gt=0, le=65535)] | None = None

    # OAuth connect (service/web/oauth.py): how long a signed `state` is valid, and
    # the return URLs `/auth/strava/connect?return_to=` accepts (comma-separated; a URL is
    # accepted on the same scheme, host and port, at or below the path).
    oauth_state_seconds: Annotated[int, Field(gt=0)] = 600
    oauth_return_urls: str = ""
    # Sync jobs (service/ingest/sync.py). Strava's largest page is 200 (§4.1).
    sync_page_size: Annotated[int, Field(ge=2, le=200)] = 200
    sync_lease_seconds: Annotated[float, Field(gt=0)] = 60.0
    sync_sweep_interval_seconds: Annotated[float, Field(gt=0)] = 30.0
    # A job's log (service/ingest/job_log.py) is for watching and diagnosing recent syncs,
    # not an archive: its entries are pruned by the scheduler once older than this.
    sync_log_retention_days: Annotated[float, Field(gt=0)] = 7.0
    # Sync progress streams (service/ingest/progress.py, service/web/progress_fanout.py): how
    # many progress events Redis keeps (a reconnect further behind than that gets the latest
    # state instead of every event), how many events one subscriber may have waiting before
    # it is dropped to the latest state per athlete (a slow client never holds up the
    # others), and how often an idle stream sends a heartbeat comment (proxies close quiet
    # connections).
    sync_events_retained: Annotated[int, Field(ge=100)] = 10_000
    sync_events_subscriber_queue: Annotated[int, Field(ge=1)] = 256
    sync_events_heartbeat_seconds: Annotated[float, Field(gt=0)] = 15.0
    # Retention of Strava's data (service/ingest/retention.py), for operators bound by
    # Strava's caching rules (docs/strava.md §5.2); unset keeps everything. Raw JSON goes by
    # when we got it, streams by when they were fetched, activities by their start date
    # (which no listing then asks Strava for again).
    raw_json_retention_days: Annotated[float, Field(gt=0)] | None = None
    streams_retention_days: Annotated[float, Field(gt=0)] | None = None
    activity_retention_days: Annotated[float, Field(gt=0)] | None = None
    # Retention works in bounded transactions, so a first run on a large table never holds
    # locks for long: this many rows each, at most this many per limit and run, every
    # RETENTION_INTERVAL_SECONDS (10,000 rows per limit a run, 1.4 million a day).
    retention_batch_size: Annotated[int, Field(gt=0, le=100_000)] = 500
    retention_batches_per_run: Annotated[int, Field(gt=0)] = 20
    retention_interval_seconds: Annotated[float, Field(gt=0)] = 600.0
    # Hydration policy for listed activities (service/ingest/policy.py): the recent window,
    # the sport types hydrated eagerly (comma-separated; empty means all), and whether older
    # ones hydrate at backfill priority ("backfill") or only when asked for ("on_demand").
    hydrate_recent_weeks: Annotated[int, Field(ge=0)] = 12
    hydrate_sport_types: str = ""
    hydrate_older: Literal["backfill", "on_demand"] = "backfill"
    # Streams (docs/strava.md §4.3) after a listed activity's detail: one more read call
    # each, so by default only above backfill priority (the recent window, on demand);
    # "all" adds older ones, "none" never. Keys: comma-separated stream types.
    hydrate_streams: Literal["all", "recent", "none"] = "recent"
    # What an analysis needs of a track: the axes (time, distance), position and elevation,
    # and the sensors (heart rate, cadence, power, speed). Left out: temp (rarely recorded),
    # moving and grade_smooth (derivable from velocity_smooth and altitude/distance). The
    # number of keys does not change the cost: one call brings them all (§4.3).
    hydrate_stream_keys: str = (
        "time,distance,latlng,altitude,heartrate,cadence,watts,velocity_smooth"
    )
    # Reconciliation (service/ingest/reconcile.py): list after (newest known start - overlap);
    # each athlete once per period, at a slot spread over it. Its share of the daily quota
    # is the `reconcile` tier's daily share in QUOTA_SHARES.
    reconcile_overlap_days: Annotated[int, Field(ge=0)] = 7
    reconcile_period_seconds: Annotated[int, Field(gt=0)] = 86400
    reconcile_check_seconds: Annotated[float, Field(gt=0)] = 300.0

    # The quota scheduler (docs/strava.md §2). Window lengths are settings so that simulations
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
    # An optional hard cap per tier: the share of each window (short, daily) it may fill,
    # highest tier first; a tier stops once the window's usage, all tiers together, reaches its
    # share. By default none: the lower tiers use whatever the forecast of real-time work and
    # other clients leaves (service/strava/quota/scheduler.py), so no budget goes unused while
    # work waits. Lower one (e.g. backfill [1.0, 0.5]) to keep part of every window or day free.
    quota_shares: dict[str, tuple[float, float]] = {
        "on_demand": (1.0, 1.0),
        "webhook": (1.0, 1.0),
        "recent": (1.0, 1.0),
        "backfill": (1.0, 1.0),
        "reconcile": (1.0, 1.0),
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

    @field_validator("admin_api_keys", "read_api_keys")
    @classmethod
    def _strong_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        keys = comma_separated(value.get_secret_value())
        weak = [k for k in keys if len(k) < 16 or not k.isascii() or not k.isprintable()]
        if not keys or weak:
            # Never echo the value: it is a credential.
            raise ValueError("must be one or more keys of at least 16 printable ASCII characters")
        return value

    @field_validator("hydrate_stream_keys")
    @classmethod
    def _stream_types(cls, value: str) -> str:
        keys = comma_separated(value)
        unknown = sorted(set(keys) - set(STREAM_TYPES))
        if not keys or unknown:
            raise ValueError(f"must be one or more of {', '.join(STREAM_TYPES)}")
        return ",".join(keys)

    @field_validator("token_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        keys = comma_separated(value.get_secret_value())
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

    @field_validator("oauth_scopes")
    @classmethod
    def _reads_activities(cls, value: str) -> str:
        if not {"activity:read", "activity:read_all"} & set(comma_separated(value)):
            raise ValueError("must include activity:read or activity:read_all")
        return value

    @field_validator("oauth_return_urls")
    @classmethod
    def _return_urls(cls, value: str) -> str:
        for url in comma_separated(value):
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                raise ValueError(f"{url!r} is not a URL") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} must be an http:// or https:// URL with a host")
            if not all("!" <= c <= "~" for c in url):
                raise ValueError("must hold only printable ASCII (percent-encode the rest)")
            if "@" in parts.netloc or "\\" in url or parts.query or parts.fragment:
                raise ValueError(f"{url!r} must hold no user info, backslash, query or fragment")
        return value

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

    @field_validator("heartbeat_ttl_seconds")
    @classmethod
    def _heartbeat_outlives_its_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("heartbeat_interval_seconds")
        if interval is not None and value <= interval:
            raise ValueError("must be longer than HEARTBEAT_INTERVAL_SECONDS")
        return value

    @cached_property
    def mode(self) -> Mode:
        embedded = self.database_url.startswith("sqlite") and self.broker_url == "memory://"
        return Mode.EMBEDDED if embedded else Mode.PRODUCTION

    def _production(self) -> bool:
        return self.mode is Mode.PRODUCTION

    @property
    def admin_keys(self) -> list[str]:
        """ADMIN_API_KEYS, one key per item (empty when unset)."""
        if self.admin_api_keys is None:
            return []
        return comma_separated(self.admin_api_keys.get_secret_value())

    @property
    def read_keys(self) -> list[str]:
        """The keys the product API's read routes accept: READ_API_KEYS, then ADMIN_API_KEYS."""
        if self.read_api_keys is None:
            return self.admin_keys
        return comma_separated(self.read_api_keys.get_secret_value()) + self.admin_keys

    @property
    def cors_origin_list(self) -> list[str]:
        """CORS_ORIGINS, one origin per item (empty when unset: CORS is off)."""
        return comma_separated(self.cors_origins or "")

    @property
    def scopes(self) -> list[str]:
        return comma_separated(self.oauth_scopes)

    @property
    def return_urls(self) -> list[str]:
        return comma_separated(self.oauth_return_urls)


# Embedded mode's OAuth base URL without PUBLIC_URL: `serve`'s default address.
EMBEDDED_BASE_URL = "http://127.0.0.1:8000"


def oauth_base_url(settings: Settings) -> str:
    """Where Strava sends the athlete back to (the callback is below it).

    PUBLIC_URL when set. Production mode requires it (ConfigError otherwise): there the
    service runs behind a proxy, and only the operator knows its public address; a request's
    Host header is chosen by the caller and never builds a redirect. Embedded mode without it
    falls back to the address `serve` binds (EMBEDDED_BASE_URL unless `serve` passed its own).
    """
    if settings.public_url is not None:
        return settings.public_url
    if settings.mode is Mode.PRODUCTION:
        raise ConfigError(f"invalid configuration:\n  {_PUBLIC_URL_REQUIRED}")
    return EMBEDDED_BASE_URL


def bind_url(host: str, port: int) -> str:
    """The base URL of a server bound to `host`:`port`, as a browser on this machine reaches
    it (a wildcard bind is reached on the loopback address)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - recognising a wildcard bind, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


S = TypeVar("S", bound=DatabaseSettings)


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's error into one line per variable, named as the user sets it."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        reason = "is required" if item["type"] == "missing" else item["msg"]
        lines.append(f"{name}: {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


_PUBLIC_URL_REQUIRED = (
    "PUBLIC_URL: is required in production mode "
    "(this service's public base URL, e.g. https://ingest.example.com)"
)


def check_web_settings(settings: Settings) -> None:
    """Raise ConfigError (in the format of `describe_validation_error`, one line per
    variable) for settings the web app must not start with in production mode: no
    WEBHOOK_SECRET (unless opted out), no PUBLIC_URL."""
    if settings.mode is not Mode.PRODUCTION:
        return
    lines = []
    if settings.webhook_secret is None and not settings.webhook_secret_optout:
        lines.append(
            "WEBHOOK_SECRET: is required in production mode (or set WEBHOOK_SECRET_OPTOUT=true "
            "when a proxy in front authenticates Strava's requests)"
        )
    if settings.public_url is None:
        lines.append(_PUBLIC_URL_REQUIRED)
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment, raising ConfigError that names what is wrong."""
    try:
        return cls()
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


def default(name: str) -> Any:
    """A setting's default. The domain's parameter objects (sync options, hydration policy,
    quota config, ingest context) take theirs from here, so each default is stated once and
    an object built without settings (tests, benchmarks) agrees with one built from them."""
    return Settings.model_fields[name].default
