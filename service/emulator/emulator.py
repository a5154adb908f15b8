"""The emulator's Python API: its data, tokens, subscription, faults, counters and events.

One re-entrant lock guards everything: tests drive this API from their own thread while the
HTTP app answers on the server's thread.
"""

from __future__ import annotations

import copy
import random
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from service.emulator.app import build_app
from service.emulator.config import EmulatorConfig
from service.emulator.data import Activity, Athlete, Generator, default_data_end
from service.emulator.delivery import Deliverer, DeliveryAttempt
from service.emulator.ratelimits import RateLimiter, Usage
from service.emulator.render import (
    Derived,
    derive,
    detailed_activity,
    detailed_athlete,
    subscription_json,
    summary_activity,
    summary_athlete,
)
from service.emulator.sports import SPORTS
from service.emulator.state import Subscription, TokenStore
from service.emulator.tracks import Track, build_track


@dataclass(frozen=True)
class Fault:
    """What to do instead of answering: fail with ``status`` or hang (``timeout``)."""

    status: int | None = None
    timeout: bool = False


class Emulator:
    """A seeded, in-memory Strava (API v3, OAuth, push subscriptions) with test controls."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.lock = threading.RLock()
        self.clock = self.config.clock
        self.tokens = TokenStore(self.config)
        self.limiter = RateLimiter(self.config.limits, self.clock, self.config.window_seconds)
        self.deliverer = Deliverer(
            timeout=self.config.callback_timeout,
            attempts=self.config.delivery_attempts,
            retry_delay=self.config.delivery_retry_delay,
            clock=self.clock,
        )
        self._generator = Generator(self.config.seed)
        self._fault_rng = random.Random(self.config.seed ^ 0x5EED)
        self._faults: list[Fault] = []
        self._fault_rate = self.config.fault_rate
        self._public_to_others = False
        self._calls: Counter[str] = Counter()
        self._athletes: dict[int, Athlete] = {}
        self._activities: dict[int, Activity] = {}
        self._derived: dict[int, Derived] = {}
        self._tracks: OrderedDict[int, Track | None] = OrderedDict()
        self._logged_in: int | None = None
        self._subscription: Subscription | None = None
        self.subscription_pending = False
        self.closing = threading.Event()
        self._seed_data()
        self.app: Starlette = build_app(self)

    # -- data ---------------------------------------------------------------------------

    def _seed_data(self) -> None:
        end = self.config.data_end or default_data_end(self.clock())
        histories: list[Activity] = []
        for _ in range(self.config.athletes):
            athlete = self._generator.athlete(end)
            self._athletes[athlete.id] = athlete
            histories.extend(
                self._generator.history(athlete, self.config.activities_per_athlete, end)
            )
        # Ids grow with time across all athletes, as Strava's do.
        for activity in sorted(histories, key=lambda a: (a.start, a.athlete_id)):
            self._generator.assign_id(activity)
            self._activities[activity.id] = activity
        if self._athletes:
            self._logged_in = next(iter(self._athletes))

    def add_athlete(self, **overrides: Any) -> int:
        """A new athlete with no activities; ``overrides`` set fields of ``data.Athlete``."""
        with self.lock:
            athlete = self._generator.athlete(self.clock(), overrides)
            self._athletes[athlete.id] = athlete
            if self._logged_in is None:
                self._logged_in = athlete.id
            return athlete.id

    @property
    def athlete_ids(self) -> list[int]:
        with self.lock:
            return list(self._athletes)

    def athlete(self, athlete_id: int) -> Athlete:
        with self.lock:
            return self._athletes[athlete_id]

    def athlete_json(self, athlete_id: int, detailed: bool = True) -> dict[str, Any]:
        with self.lock:
            athlete = self._athletes[athlete_id]
            return detailed_athlete(athlete) if detailed else summary_athlete(athlete)

    def login(self, athlete_id: int) -> None:
        """Who /oauth/authorize approves as, like the browser session on strava.com."""
        with self.lock:
            if athlete_id not in self._athletes:
                raise KeyError(athlete_id)
            self._logged_in = athlete_id

    @property
    def logged_in(self) -> int | None:
        with self.lock:
            return self._logged_in

    def get_activity(self, activity_id: int) -> Activity | None:
        """A copy of the stored activity (safe to read without the lock)."""
        with self.lock:
            found = self._activities.get(activity_id)
            return copy.copy(found) if found is not None else None

    def activities_for(self, athlete_id: int) -> list[Activity]:
        """Copies of the athlete's activities, newest first."""
        with self.lock:
            owned = [copy.copy(a) for a in self._activities.values() if a.athlete_id == athlete_id]
        return sorted(owned, key=lambda a: (a.start, a.id), reverse=True)

    def track(self, activity: Activity) -> Track | None:
        """The activity's samples; regenerated on demand, the last few kept."""
        with self.lock:
            if activity.id in self._tracks:
                self._tracks.move_to_end(activity.id)
                return self._tracks[activity.id]
        track = (
            None
            if activity.manual
            else build_track(activity.track_spec(), self.config.max_stream_points)
        )
        with self.lock:
            self._tracks[activity.id] = track
            while len(self._tracks) > 16:
                self._tracks.popitem(last=False)
        return track

    def derived(self, activity: Activity) -> Derived:
        with self.lock:
            found = self._derived.get(activity.id)
        if found is None:
            found = derive(activity, self.track(activity))
            with self.lock:
                self._derived[activity.id] = found
        return found

    def summary_json(self, activity: Activity) -> dict[str, Any]:
        return summary_activity(activity, self.derived(activity))

    def detail_json(self, activity: Activity) -> dict[str, Any]:
        with self.lock:
            athlete = self._athletes.get(activity.athlete_id)
        gear = None
        if athlete is not None:
            gear = next(
                (g for g in athlete.shoes + athlete.bikes if g.id == activity.gear_id), None
            )
        return detailed_activity(activity, self.derived(activity), self.track(activity), gear)

    def activities_of(self, athlete_id: int) -> list[dict[str, Any]]:
        """The athlete's activities as summary JSON, newest first (any visibility)."""
        return [self.summary_json(a) for a in self.activities_for(athlete_id)]

    def activity(self, activity_id: int) -> dict[str, Any]:
        """One activity as detailed JSON; KeyError if unknown."""
        found = self.get_activity(activity_id)
        if found is None:
            raise KeyError(activity_id)
        return self.detail_json(found)

    def create_activity(self, athlete_id: int, **overrides: Any) -> dict[str, Any]:
        """A new activity that just finished (unless ``start_date`` says otherwise).

        Pushes a ``create`` event (docs/strava.md §1.4). Returns its summary JSON.
        """
        with self.lock:
            athlete = self._athletes[athlete_id]
            sport = SPORTS[overrides.get("sport_type") or self._pick_sport(athlete)]
            start = int(self.clock()) - 3600
            activity = self._generator.activity(athlete, sport, start, overrides)
            if "start_date" not in overrides:
                activity.start = int(self.clock()) - activity.elapsed_time
            self._generator.assign_id(activity)
            self._activities[activity.id] = activity
            snapshot = copy.copy(activity)
        self._event("activity", snapshot.id, "create", athlete_id, {})
        return self.summary_json(snapshot)

    def _pick_sport(self, athlete: Athlete) -> str:
        names = sorted(athlete.sports)
        rng = self._generator.rng
        return rng.choices(names, weights=[athlete.sports[n] for n in names])[0]

    def update_activity(
        self,
        activity_id: int,
        *,
        title: str | None = None,
        type: str | None = None,
        private: bool | None = None,
    ) -> dict[str, Any]:
        """Change what Strava sends update events for (title, type, privacy; §1.3).

        The event carries exactly the keys whose value changed; no change, no event.
        """
        updates: dict[str, str] = {}
        with self.lock:
            activity = self._activities[activity_id]
            if title is not None and title != activity.name:
                activity.name = title
                updates["title"] = title
            if type is not None and type != activity.sport_type:
                if type not in SPORTS:
                    raise ValueError(f"unsupported sport_type: {type}")
                activity.sport_type = type
                activity.trainer = type == "VirtualRide"
                self._derived.pop(activity_id, None)
                self._tracks.pop(activity_id, None)
                updates["type"] = type
            if private is not None and private != activity.private:
                activity.visibility = "only_me" if private else "everyone"
                # The value is a string, "true" or "false" (§1.4).
                updates["private"] = "true" if private else "false"
            snapshot = copy.copy(activity)
        if updates:
            self._event("activity", activity_id, "update", snapshot.athlete_id, updates)
        return self.summary_json(snapshot)

    def delete_activity(self, activity_id: int) -> None:
        with self.lock:
            activity = self._activities.pop(activity_id)
            self._derived.pop(activity_id, None)
            self._tracks.pop(activity_id, None)
        self._event("activity", activity_id, "delete", activity.athlete_id, {})

    def deauthorize(self, athlete_id: int, *, send_event: bool = True) -> None:
        """The athlete revokes the app on strava.com: tokens die, a deauth event is pushed."""
        with self.lock:
            if athlete_id not in self._athletes:
                raise KeyError(athlete_id)
            was_authorized = self.tokens.revoke(athlete_id)
        if send_event and (was_authorized or not self.config.events_require_authorization):
            # Deauth shape: object_type athlete, aspect update, "authorized": "false" (§1.4).
            self._event("athlete", athlete_id, "update", athlete_id, {"authorized": "false"}, True)

    def issue_tokens(
        self, athlete_id: int, scope: str = "read,activity:read_all"
    ) -> dict[str, Any]:
        """A token-exchange response for the athlete without the browser round trip."""
        with self.lock:
            athlete = summary_athlete(self._athletes[athlete_id])
            access, refresh = self.tokens.grant(athlete_id, scope)
            return self.tokens.token_response(access, refresh, athlete)

    # -- events ---------------------------------------------------------------------------

    def _event(
        self,
        object_type: str,
        object_id: int,
        aspect_type: str,
        owner_id: int,
        updates: dict[str, str],
        force: bool = False,
    ) -> None:
        with self.lock:
            subscription = self._subscription
            authorized = owner_id in self.tokens.authorized
        if subscription is None:
            return
        if self.config.events_require_authorization and not (authorized or force):
            return
        event = {
            "aspect_type": aspect_type,
            "event_time": int(self.clock()),
            "object_id": object_id,
            "object_type": object_type,
            "owner_id": owner_id,
            "subscription_id": subscription.id,
            "updates": updates,
        }
        self.deliverer.submit(subscription.callback_url, event)

    @property
    def deliveries(self) -> list[DeliveryAttempt]:
        return self.deliverer.records

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """True once every pushed event has succeeded or used up its attempts."""
        return self.deliverer.wait(timeout)

    # -- subscription ---------------------------------------------------------------------

    @property
    def subscription(self) -> dict[str, Any] | None:
        with self.lock:
            sub = self._subscription
        return subscription_json(sub, self.config.client_id) if sub else None

    def set_subscription(self, subscription: Subscription | None) -> None:
        with self.lock:
            self._subscription = subscription

    def current_subscription(self) -> Subscription | None:
        with self.lock:
            return self._subscription

    def new_subscription_id(self) -> int:
        with self.lock:
            return self._generator.rng.randint(100_000, 999_999)

    # -- faults, counters, limits -----------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next ``n`` data requests (under /api/v3) or deauthorizations answer ``status``
        instead."""
        with self.lock:
            self._faults.extend(Fault(status=status) for _ in range(n))

    def timeout_next(self, n: int = 1) -> None:
        """The next ``n`` data requests or deauthorizations hang for ``config.timeout_delay``,
        then answer 504."""
        with self.lock:
            self._faults.extend(Fault(timeout=True) for _ in range(n))

    def show_public_activities_to_others(self, shown: bool = True) -> None:
        """Whether ``GET /activities/{id}`` shows another athlete's Everyone activity, as
        Strava's "Requires activity:read for Everyone and Followers activities" suggests
        (§4.2; UNCONFIRMED, so off by default: a 404, as for a missing one)."""
        with self.lock:
            self._public_to_others = shown

    @property
    def public_to_others(self) -> bool:
        with self.lock:
            return self._public_to_others

    def set_fault_rate(self, rate: float) -> None:
        with self.lock:
            self._fault_rate = rate

    def take_fault(self) -> Fault | None:
        with self.lock:
            if self._faults:
                return self._faults.pop(0)
            if self._fault_rate > 0 and self._fault_rng.random() < self._fault_rate:
                return Fault(status=self._fault_rng.choice(self.config.fault_statuses))
            return None

    def count(self, endpoint: str) -> None:
        with self.lock:
            self._calls[endpoint] += 1

    @property
    def calls(self) -> Counter[str]:
        """Requests per endpoint, e.g. ``calls["GET /activities/{id}"]`` (0 if never)."""
        with self.lock:
            return Counter(self._calls)

    def reset_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    def rate_limit_usage(self) -> Usage:
        return self.limiter.usage()

    def close(self) -> None:
        """Stop background delivery and release requests held by ``timeout_next``."""
        self.closing.set()
        self.deliverer.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
