"""Seeded generation of athletes and activities (the emulator's records, not yet JSON).

Every random choice comes from one ``random.Random(seed)`` consumed in a fixed order, so the
same config always produces the same athletes, ids and activities (and, via each activity's
``track_seed``, the same streams).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.emulator.geo import (
    PLACES,
    WATOPIA,
    Place,
    local_epoch,
    parse_iso,
    utc_offset,
)
from service.emulator.sports import PROFILES, SPORTS, Sport, default_name
from service.emulator.tracks import TrackSpec

FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas")
LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Novak", "Byrne", "Kaur")
SHOES = ("Nike Pegasus 41", "Hoka Clifton 9", "Saucony Endorphin Speed 4", "ASICS Novablast 4")
BIKES = ("Canyon Ultimate CF SL", "Specialized Tarmac SL7", "Trek Checkpoint SL 5")
DESCRIPTIONS = ("Easy one.", "Legs felt heavy today.", "Negative split!", "With the club.")
VISIBILITIES = (("everyone", 80), ("followers_only", 12), ("only_me", 8))

# Keys accepted by ``create_activity`` overrides; each maps onto an ``Activity`` attribute.
OVERRIDABLE = frozenset(
    {
        "name",
        "sport_type",
        "start_date",
        "elapsed_time",
        "moving_time",
        "distance",
        "visibility",
        "private",
        "manual",
        "trainer",
        "commute",
        "workout_type",
        "gear_id",
        "description",
        "has_heartrate",
        "has_power",
    }
)


@dataclass
class Gear:
    id: str
    name: str
    kind: str
    primary: bool
    retired: bool
    distance: int
    nickname: str | None


@dataclass
class Athlete:
    id: int
    username: str
    firstname: str
    lastname: str
    sex: str
    place: Place
    premium: bool
    created_at: int
    updated_at: int
    weight: float
    follower_count: int
    friend_count: int
    athlete_type: int
    measurement_preference: str
    ftp: int | None
    picture_id: int
    sports: dict[str, int]
    devices: tuple[str, str]
    shoes: list[Gear] = field(default_factory=list)
    bikes: list[Gear] = field(default_factory=list)


@dataclass
class Activity:
    """One activity's stored facts; the JSON shapes are rendered from these on demand."""

    id: int
    athlete_id: int
    name: str
    sport_type: str
    start: int
    elapsed_time: int
    moving_time: int
    distance: float
    place: Place
    visibility: str
    manual: bool
    trainer: bool
    commute: bool
    workout_type: int | None
    gear_id: str | None
    description: str | None
    device_name: str | None
    external_id: str | None
    upload_id: int | None
    has_heartrate: bool
    has_cadence: bool
    has_power: bool
    has_temp: bool
    track_seed: int
    origin: tuple[float, float, float]
    climb: float
    heartrate: float
    cadence: float
    watts: float
    temperature: float
    kudos_count: int
    comment_count: int
    achievement_count: int
    athlete_count: int
    pr_count: int
    total_photo_count: int
    photo_uid: str
    embed_token: str
    id_base: int

    @property
    def sport(self) -> Sport:
        return SPORTS[self.sport_type]

    @property
    def type(self) -> str:
        return self.sport.type

    @property
    def private(self) -> bool:
        # Strava's `private` is true exactly for "Only You" activities (docs/strava.md §1.4).
        return self.visibility == "only_me"

    @property
    def utc_offset(self) -> float:
        return utc_offset(self.place.zone, self.start)

    @property
    def has_latlng(self) -> bool:
        return self.sport.gps and not self.manual

    @property
    def has_distance(self) -> bool:
        return self.sport.distance is not None and not self.manual and self.distance > 0

    def track_spec(self) -> TrackSpec:
        return TrackSpec(
            seed=self.track_seed,
            elapsed_time=self.elapsed_time,
            moving_time=self.moving_time,
            distance=self.distance,
            origin=self.origin,
            has_distance=self.has_distance,
            has_latlng=self.has_latlng,
            has_altitude=self.has_latlng,
            has_heartrate=self.has_heartrate,
            has_cadence=self.has_cadence,
            has_power=self.has_power,
            has_temp=self.has_temp,
            climb=self.climb,
            heartrate=self.heartrate,
            cadence=self.cadence,
            watts=self.watts,
            temperature=self.temperature,
        )


def _weighted(rng: random.Random, options: dict[str, int]) -> str:
    names = sorted(options)
    return rng.choices(names, weights=[options[n] for n in names])[0]


class Generator:
    """Draws athletes and activities from one seeded random generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._next_athlete_id = 20_000_000 + self.rng.randint(0, 60_000_000)
        self._next_activity_id = 12_000_000_000 + self.rng.randint(0, 1_000_000_000)

    def next_activity_id(self) -> int:
        # Real ids grow with time and exceed 2^32 (docs/strava.md §1.4: 16181809559).
        self._next_activity_id += self.rng.randint(5_000_000, 40_000_000)
        return self._next_activity_id

    def athlete(self, now: float, overrides: dict[str, Any] | None = None) -> Athlete:
        rng = self.rng
        self._next_athlete_id += rng.randint(1_000, 5_000_000)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        place = rng.choice(PLACES)
        sports = dict(rng.choice(PROFILES))
        created = int(now) - rng.randint(400, 3000) * 86400
        athlete = Athlete(
            id=self._next_athlete_id,
            username=f"{first}{last}{rng.randint(1, 99)}".lower(),
            firstname=first,
            lastname=last,
            sex=rng.choice(("M", "F")),
            place=place,
            premium=rng.random() < 0.6,
            created_at=created,
            updated_at=int(now) - rng.randint(1, 90) * 86400,
            weight=round(rng.uniform(52, 90), 1),
            follower_count=rng.randint(0, 400),
            friend_count=rng.randint(0, 400),
            athlete_type=1 if sports.get("Run", 0) >= sports.get("Ride", 0) else 0,
            measurement_preference="feet" if place.country == "United States" else "meters",
            ftp=rng.randint(180, 320) if "Ride" in sports else None,
            picture_id=rng.randint(1_000_000, 9_999_999),
            sports=sports,
            devices=(rng.choice(SPORTS["Run"].device), rng.choice(SPORTS["Ride"].device)),
        )
        for i, model in enumerate(rng.sample(SHOES, 2)):
            athlete.shoes.append(self._gear("g", model, "shoe", i == 0, i == 1))
        if "Ride" in sports:
            athlete.bikes.append(self._gear("b", rng.choice(BIKES), "bike", True, False))
        for key, value in (overrides or {}).items():
            if not hasattr(athlete, key):
                raise ValueError(f"unknown athlete field: {key}")
            setattr(athlete, key, value)
        return athlete

    def _gear(self, prefix: str, name: str, kind: str, primary: bool, retired: bool) -> Gear:
        rng = self.rng
        return Gear(
            id=f"{prefix}{rng.randint(10_000_000, 29_999_999)}",
            name=name,
            kind=kind,
            primary=primary,
            retired=retired,
            distance=rng.randint(50_000, 1_500_000),
            nickname=None,
        )

    def history(self, athlete: Athlete, count: int, end: int) -> list[Activity]:
        """``count`` activities ending before ``end``, one every few days, oldest first."""
        rng = self.rng
        activities: list[Activity] = []
        cursor = end - 3 * 3600
        for _ in range(count):
            sport = SPORTS[_weighted(rng, athlete.sports)]
            day = datetime.fromtimestamp(cursor, UTC).date()
            start = local_epoch(
                athlete.place.zone,
                day.year,
                day.month,
                day.day,
                rng.randint(6, 19),
                rng.randint(0, 59),
            ) + rng.randint(0, 59)
            activity = self.activity(athlete, sport, start, {})
            while activity.start + activity.elapsed_time > end:
                activity.start -= 86400
            activities.append(activity)
            cursor = activity.start - int(rng.uniform(0.4, 2.6) * 86400)
        activities.reverse()
        return activities

    def activity(
        self, athlete: Athlete, sport: Sport, start: int, overrides: dict[str, Any]
    ) -> Activity:
        """One activity; the id is left at 0 for the caller to assign in time order."""
        rng = self.rng
        manual = rng.random() < 0.03
        if sport.distance is not None:
            distance = rng.uniform(*sport.distance) * (1.6 if rng.random() < 0.08 else 1.0)
            moving = int(distance / rng.uniform(*sport.speed))
        else:
            distance = 0.0
            moving = int(rng.uniform(*sport.duration))
        pause = 0 if manual else int(moving * rng.uniform(0.0, 0.05))
        visibility = rng.choices(
            [v for v, _ in VISIBILITIES], weights=[w for _, w in VISIBILITIES]
        )[0]
        gear_id = None
        if sport.gear == "shoe" and athlete.shoes:
            gear_id = athlete.shoes[0].id
        elif sport.gear == "bike" and athlete.bikes:
            gear_id = athlete.bikes[0].id
        device = (
            "Zwift"
            if sport.sport_type == "VirtualRide"
            else (athlete.devices[1] if sport.gear == "bike" else athlete.devices[0])
        )
        garmin = device.startswith("Garmin")
        origin = (
            WATOPIA
            if sport.sport_type == "VirtualRide"
            else (
                athlete.place.lat + rng.uniform(-0.02, 0.02),
                athlete.place.lng + rng.uniform(-0.02, 0.02),
                athlete.place.altitude,
            )
        )
        photos = rng.randint(1, 4) if rng.random() < 0.15 else 0
        achievements = rng.randint(0, 6)
        local_hour = datetime.fromtimestamp(start + utc_offset(athlete.place.zone, start), UTC).hour
        activity = Activity(
            id=0,
            athlete_id=athlete.id,
            name=default_name(sport, local_hour),
            sport_type=sport.sport_type,
            start=start,
            elapsed_time=moving + pause,
            moving_time=moving,
            distance=round(distance, 1),
            place=athlete.place,
            visibility=visibility,
            manual=manual,
            trainer=sport.sport_type == "VirtualRide",
            commute=sport.gear is not None and rng.random() < 0.05,
            workout_type=rng.choice(sport.workout_types),
            gear_id=gear_id,
            description=rng.choice(DESCRIPTIONS) if rng.random() < 0.2 else None,
            device_name=None if manual else device,
            external_id=None,
            upload_id=None,
            has_heartrate=not manual and rng.random() < 0.92,
            has_cadence=not manual and sport.cadence is not None,
            has_power=not manual and rng.random() < sport.power_probability,
            has_temp=not manual and garmin and sport.sport_type != "Swim",
            track_seed=rng.getrandbits(48),
            origin=origin,
            climb=rng.uniform(*sport.climb_per_km) * distance / 1000,
            heartrate=rng.uniform(*sport.heartrate),
            cadence=rng.uniform(*(sport.cadence or (0.0, 0.0))),
            watts=rng.uniform(160, 280),
            temperature=rng.uniform(4, 28),
            kudos_count=0 if visibility == "only_me" else rng.randint(0, 30),
            comment_count=rng.randint(0, 3) if rng.random() < 0.3 else 0,
            achievement_count=achievements,
            athlete_count=rng.choice((1, 1, 1, 2, 3)),
            pr_count=rng.randint(0, achievements),
            total_photo_count=photos,
            photo_uid=f"{rng.getrandbits(128):032x}",
            embed_token=f"{rng.getrandbits(160):040x}",
            id_base=rng.randint(10_000_000_000, 60_000_000_000),
        )
        apply_overrides(activity, overrides)
        if not activity.manual:
            serial = rng.randint(10**11, 10**12 - 1)
            activity.external_id = f"garmin_ping_{serial}" if garmin else f"{serial}.fit"
        return activity

    def assign_id(self, activity: Activity) -> None:
        activity.id = self.next_activity_id()
        if not activity.manual:
            # Upload ids run ahead of activity ids (16181809559 came from upload 17265595469).
            activity.upload_id = activity.id + 1_000_000_000 + self.rng.randint(0, 99_999_999)


def apply_overrides(activity: Activity, overrides: dict[str, Any]) -> None:
    """Apply caller-chosen values, keeping derived facts consistent (private, moving time)."""
    unknown = set(overrides) - OVERRIDABLE
    if unknown:
        raise ValueError(f"unknown activity fields: {', '.join(sorted(unknown))}")
    values = dict(overrides)
    if "sport_type" in values:
        if values["sport_type"] not in SPORTS:
            raise ValueError(f"unsupported sport_type: {values['sport_type']}")
        activity.sport_type = values.pop("sport_type")
        activity.trainer = activity.sport_type == "VirtualRide"
        if activity.sport.distance is None:
            activity.distance = 0.0
    if "start_date" in values:
        raw = values.pop("start_date")
        activity.start = parse_iso(raw) if isinstance(raw, str) else int(raw)
    if "private" in values:
        private = bool(values.pop("private"))
        activity.visibility = "only_me" if private else "everyone"
    if "visibility" in values and values["visibility"] not in dict(VISIBILITIES):
        raise ValueError(f"unsupported visibility: {values['visibility']}")
    if "distance" in values and "moving_time" not in values and activity.distance > 0:
        speed = activity.distance / max(1, activity.moving_time)
        values["moving_time"] = int(float(values["distance"]) / speed)
    for key, value in values.items():
        setattr(activity, key, value)
    activity.distance = round(float(activity.distance), 1)
    if "elapsed_time" in overrides and "moving_time" not in overrides:
        activity.moving_time = min(activity.moving_time, activity.elapsed_time)
    activity.elapsed_time = max(activity.elapsed_time, activity.moving_time, 1)
    if activity.manual:
        activity.has_heartrate = activity.has_cadence = False
        activity.has_power = activity.has_temp = False
        activity.device_name = None


def default_data_end(now: float) -> int:
    """Midnight UTC of today: stable for a day, so default-config runs agree within it."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(day.timestamp())
