"""The emulator's knobs, in one frozen dataclass so a test states everything it depends on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service.clock import Clock


@dataclass(frozen=True)
class RateLimits:
    """The four limits Strava reports in its headers (docs/strava.md §2.1, §2.2).

    Defaults are the values on the wire in Oct-2025: ``X-Ratelimit-Limit: 200,2000`` and
    ``X-Readratelimit-Limit: 100,1000``.
    """

    overall_short: int = 200
    overall_daily: int = 2000
    read_short: int = 100
    read_daily: int = 1000


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's data and behaviour.

    Data: ``seed`` drives every generated value, so the same seed, ``athletes``,
    ``activities_per_athlete`` and ``data_end`` give identical athletes and activities.
    ``data_end`` (epoch seconds) is when the newest seeded activity ends; ``None`` means the
    start of the current UTC day by ``clock``, which is stable within a day.
    """

    client_id: int = 12345
    client_secret: str = "emulator-client-secret"  # noqa: S105 - a fake for tests
    seed: int = 1
    athletes: int = 2
    activities_per_athlete: int = 40
    data_end: int | None = None
    # Streams hold one point per recorded second on Strava; capped to keep responses small.
    max_stream_points: int = 2000

    clock: Clock = field(default=time.time)
    # Strava access tokens live six hours (docs/strava.md §3.3); shorten to force refreshes.
    token_lifetime: int = 21600
    # A refresh returns the existing access token while it has more than this left (§3.3).
    token_reuse_threshold: int = 3600
    authorization_code_lifetime: int = 600

    limits: RateLimits = field(default_factory=RateLimits)
    # The short window; the daily window is 96 of them (86400 s by default), so a sped-up
    # simulation keeps Strava's ratio between the two.
    window_seconds: int = 900

    latency: float = 0.0
    # Injected random faults: the probability that an API request fails with one of
    # ``fault_statuses`` (drawn from a generator seeded with ``seed``).
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (500, 502, 503)
    # How long a request held by ``timeout_next`` waits before answering 504; must exceed
    # the client's timeout.
    timeout_delay: float = 10.0

    # Webhooks (docs/strava.md §1.2, §1.3): 2 s to answer, at most 3 attempts in total.
    callback_timeout: float = 2.0
    delivery_attempts: int = 3
    # Strava's retry spacing is undocumented (anecdotally minutes); small for tests.
    delivery_retry_delay: float = 1.0
    # Strava only pushes events for athletes who have authorized the app (§1.1).
    events_require_authorization: bool = True
    # Whether POST /oauth/deauthorize (app-initiated) also pushes the deauth event;
    # UNCONFIRMED on Strava (§3.4, §7 question 4), so off by default.
    app_deauthorize_sends_event: bool = False

    @property
    def day_seconds(self) -> int:
        return self.window_seconds * 96
