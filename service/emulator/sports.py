"""Plausible ranges per sport type, so generated activities look like real ones."""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True)
class Sport:
    """How one ``sport_type`` is usually recorded.

    ``type`` is the deprecated coarse field Strava still sends next to ``sport_type``
    (a recorded TrailRun has ``"type":"Run"``; docs/strava.md §4.4).
    ``distance`` is ``None`` for sports without a distance (those use ``duration``).
    """

    sport_type: str
    type: str
    distance: Range | None
    speed: Range
    duration: Range
    heartrate: Range
    cadence: Range | None
    climb_per_km: Range
    gps: bool
    power_probability: float
    gear: str | None
    workout_types: tuple[int | None, ...]
    lap_length: float
    device: tuple[str, ...]


_WATCHES = ("Garmin Forerunner 265", "COROS PACE 3", "Apple Watch Series 9", "Garmin fenix 7")
_BIKE_COMPUTERS = ("Garmin Edge 840", "Wahoo ELEMNT BOLT", "Garmin Edge 530")

SPORTS: dict[str, Sport] = {
    s.sport_type: s
    for s in (
        # Run workout_type: None/0 default, 1 race, 2 long run, 3 workout.
        Sport("Run", "Run", (5000, 21000), (2.5, 3.6), (0, 0), (130, 165), (76, 90), (2, 15),
              True, 0.15, "shoe", (None, None, 0, 0, 1, 2, 3), 1000.0, _WATCHES),
        Sport("TrailRun", "Run", (8000, 28000), (1.9, 2.7), (0, 0), (135, 160), (70, 80),
              (25, 60), True, 0.1, "shoe", (None, 0, 2), 1000.0, _WATCHES),
        # Ride workout_type: 10 default, 11 race, 12 workout.
        Sport("Ride", "Ride", (20000, 100000), (6.0, 9.0), (0, 0), (120, 155), (80, 95),
              (5, 15), True, 0.6, "bike", (None, 10, 10, 11, 12), 5000.0, _BIKE_COMPUTERS),
        Sport("VirtualRide", "VirtualRide", (15000, 50000), (7.0, 10.0), (0, 0), (125, 160),
              (82, 95), (3, 12), True, 1.0, "bike", (None, 10, 12), 5000.0, ("Zwift",)),
        Sport("Swim", "Swim", (1000, 4000), (0.7, 1.1), (0, 0), (115, 150), (24, 34), (0, 0),
              False, 0.0, None, (None,), 500.0, _WATCHES),
        Sport("Walk", "Walk", (2000, 8000), (1.1, 1.6), (0, 0), (90, 115), (52, 60), (2, 10),
              True, 0.0, "shoe", (None,), 1000.0, _WATCHES),
        Sport("Hike", "Hike", (5000, 18000), (0.9, 1.4), (0, 0), (105, 135), (48, 56), (40, 100),
              True, 0.0, "shoe", (None,), 1000.0, _WATCHES),
        Sport("WeightTraining", "WeightTraining", None, (0.0, 0.0), (1800, 4200), (95, 125),
              None, (0, 0), False, 0.0, None, (None,), 0.0, _WATCHES),
        Sport("Yoga", "Yoga", None, (0.0, 0.0), (1800, 3600), (75, 95), None, (0, 0), False,
              0.0, None, (None,), 0.0, _WATCHES),
    )
}  # fmt: skip

# Athlete profiles: relative weights of the sports they do.
PROFILES: tuple[dict[str, int], ...] = (
    {"Run": 12, "TrailRun": 2, "Walk": 2, "WeightTraining": 2, "Yoga": 1},
    {"Ride": 8, "VirtualRide": 5, "Run": 2, "WeightTraining": 1},
    {"Swim": 4, "Ride": 4, "Run": 4, "VirtualRide": 1, "Hike": 1},
)


def default_name(sport: Sport, local_hour: int) -> str:
    """Strava's automatic title: time of day plus the sport ("Morning Run")."""
    if 4 <= local_hour < 11:
        part = "Morning"
    elif local_hour < 14:
        part = "Lunch"
    elif local_hour < 18:
        part = "Afternoon"
    elif local_hour < 22:
        part = "Evening"
    else:
        part = "Night"
    noun = {
        "VirtualRide": "Zwift Ride",
        "TrailRun": "Trail Run",
        "WeightTraining": "Weight Training",
    }.get(sport.sport_type, sport.sport_type)
    return f"{part} {noun}"
