"""The outside world: Strava's HTTP API, its rate-limit headers and its errors (the public
API is re-exported here)."""

from service.strava.client import (
    AsyncRequestHooks,
    AsyncStravaClient,
    RequestHooks,
    RequestInfo,
    RequestKind,
    Result,
    StravaClient,
)
from service.strava.errors import (
    BadRequest,
    NotFound,
    RateLimited,
    StravaError,
    Transient,
    Unauthorized,
    UnexpectedResponse,
)
from service.strava.ratelimit import (
    RateLimitSnapshot,
    WindowPair,
    exhausted_window,
    parse_rate_limit_headers,
)
from service.strava.schemas import (
    DetailedActivity,
    DetailedAthlete,
    Fault,
    FaultError,
    Lap,
    MetaAthlete,
    PolylineMap,
    Stream,
    Subscription,
    SummaryActivity,
    SummaryAthlete,
    TokenResponse,
)

__all__ = [
    "AsyncRequestHooks",
    "AsyncStravaClient",
    "BadRequest",
    "DetailedActivity",
    "DetailedAthlete",
    "Fault",
    "FaultError",
    "Lap",
    "MetaAthlete",
    "NotFound",
    "PolylineMap",
    "RateLimitSnapshot",
    "RateLimited",
    "RequestHooks",
    "RequestInfo",
    "RequestKind",
    "Result",
    "StravaClient",
    "StravaError",
    "Stream",
    "Subscription",
    "SummaryActivity",
    "SummaryAthlete",
    "TokenResponse",
    "Transient",
    "Unauthorized",
    "UnexpectedResponse",
    "WindowPair",
    "exhausted_window",
    "parse_rate_limit_headers",
]
