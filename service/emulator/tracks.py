"""Synthetic recordings: per-sample streams of one activity, and what Strava derives from them.

A track is regenerated from the activity's own seed whenever it is needed (streams, laps,
splits), so it never has to be stored: the same activity always gives the same samples.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TrackSpec:
    """What a track must add up to; built from an activity by the data module."""

    seed: int
    elapsed_time: int
    moving_time: int
    distance: float
    origin: tuple[float, float, float]
    has_distance: bool
    has_latlng: bool
    has_altitude: bool
    has_heartrate: bool
    has_cadence: bool
    has_power: bool
    has_temp: bool
    climb: float
    heartrate: float
    cadence: float
    watts: float
    temperature: float


@dataclass(frozen=True)
class Track:
    """Aligned samples, one list per Strava stream type (docs/strava.md §4.3)."""

    time: list[int]
    moving: list[bool]
    distance: list[float] | None
    velocity_smooth: list[float] | None
    latlng: list[list[float]] | None
    altitude: list[float] | None
    grade_smooth: list[float] | None
    heartrate: list[int] | None
    cadence: list[int] | None
    watts: list[int] | None
    temp: list[int] | None

    def streams(self) -> dict[str, list[object]]:
        """The stream types this track has, in Strava's key order."""
        candidates: dict[str, list[object] | None] = {
            "time": list(self.time),
            "distance": list(self.distance) if self.distance is not None else None,
            "latlng": list(self.latlng) if self.latlng is not None else None,
            "altitude": list(self.altitude) if self.altitude is not None else None,
            "velocity_smooth": (
                list(self.velocity_smooth) if self.velocity_smooth is not None else None
            ),
            "heartrate": list(self.heartrate) if self.heartrate is not None else None,
            "cadence": list(self.cadence) if self.cadence is not None else None,
            "watts": list(self.watts) if self.watts is not None else None,
            "temp": list(self.temp) if self.temp is not None else None,
            "moving": list(self.moving),
            "grade_smooth": list(self.grade_smooth) if self.grade_smooth is not None else None,
        }
        return {key: value for key, value in candidates.items() if value is not None}


def _speeds(rng: random.Random, moving: list[bool]) -> list[float]:
    """A smooth, mean-reverting speed factor: real paces wander but stay near an average."""
    factor = 1.0
    out = []
    for is_moving in moving:
        factor += rng.gauss(0.0, 0.03)
        factor = 0.92 * factor + 0.08
        out.append(max(0.3, factor) if is_moving else 0.0)
    return out


def _altitude(rng: random.Random, fractions: list[float], base: float, climb: float) -> list[float]:
    """Rolling terrain from a few sine waves, scaled so the total ascent matches ``climb``."""
    waves = [(rng.uniform(1, 4) * k, rng.uniform(0, math.tau), 1 / k) for k in (1, 2.5, 6)]
    profile = [sum(a * math.sin(math.tau * f * x + p) for f, p, a in waves) for x in fractions]
    gain = sum(max(0.0, b - a) for a, b in itertools.pairwise(profile))
    scale = climb / gain if gain > 0 else 0.0
    return [round(base + scale * (v - profile[0]), 1) for v in profile]


def build_track(spec: TrackSpec, max_points: int) -> Track:
    """Samples evenly spaced over the elapsed time, capped at ``max_points``."""
    rng = random.Random(spec.seed)
    n = max(2, min(spec.elapsed_time, max_points))
    step = spec.elapsed_time / (n - 1)
    time = [round(i * step) for i in range(n)]
    paused = min(n - 2, max(0, round((spec.elapsed_time - spec.moving_time) / step)))
    pause_at = rng.randint(n // 4, max(n // 4, n - paused - 1))
    moving = [not (pause_at <= i < pause_at + paused) for i in range(n)]

    distance = velocity = None
    fractions = [i / (n - 1) for i in range(n)]
    if spec.has_distance and spec.distance > 0:
        factors = _speeds(rng, moving)
        total = sum(factors[1:]) * step
        scale = spec.distance / total if total > 0 else 0.0
        speeds = [f * scale for f in factors]
        distance = [0.0]
        for s in speeds[1:]:
            distance.append(distance[-1] + s * step)
        distance = [round(d, 1) for d in distance]
        distance[-1] = round(spec.distance, 1)
        fractions = [d / spec.distance for d in distance]
        velocity = []
        for i in range(n):
            window = speeds[max(0, i - 4) : i + 1]
            velocity.append(round(sum(window) / len(window), 3))

    altitude = grade = None
    if spec.has_altitude:
        altitude = _altitude(rng, fractions, spec.origin[2], spec.climb)
        if distance is not None:
            grade = []
            for i in range(n):
                j = max(0, i - 3)
                run = distance[i] - distance[j]
                rise = altitude[i] - altitude[j]
                grade.append(round(max(-40.0, min(40.0, 100 * rise / run)), 1) if run > 1 else 0.0)

    latlng = None
    if spec.has_latlng and distance is not None:
        # A wobbly loop: the heading turns once around over the route, back near the start.
        lat, lng = spec.origin[0], spec.origin[1]
        heading0 = rng.uniform(0, math.tau)
        wobble = rng.uniform(0.2, 0.6)
        latlng = [[round(lat, 6), round(lng, 6)]]
        for i in range(1, n):
            frac = fractions[i]
            heading = heading0 + math.tau * frac + wobble * math.sin(math.tau * 5 * frac)
            metres = distance[i] - distance[i - 1]
            lat += metres * math.cos(heading) / 111_320
            lng += metres * math.sin(heading) / (111_320 * math.cos(math.radians(lat)))
            latlng.append([round(lat, 6), round(lng, 6)])

    heartrate = cadence = watts = temp = None
    if spec.has_heartrate:
        heartrate = []
        for i in range(n):
            warmup = min(1.0, fractions[i] / 0.05) if fractions[i] < 0.05 else 1.0
            target = spec.heartrate * (0.95 + 0.08 * fractions[i])
            value = 95 + (target - 95) * warmup + rng.gauss(0, 2.5)
            heartrate.append(round(value if moving[i] else value - 15))
    if spec.has_cadence:
        cadence = [round(rng.gauss(spec.cadence, 2)) if m else 0 for m in moving]
    if spec.has_power and velocity is not None:
        mean_speed = sum(velocity) / n or 1.0
        watts = []
        for i in range(n):
            effort = (velocity[i] / mean_speed) ** 1.3 if moving[i] else 0.0
            watts.append(max(0, round(spec.watts * effort + rng.gauss(0, 15))) if moving[i] else 0)
    if spec.has_temp:
        temp = [round(spec.temperature + 2 * f) for f in fractions]

    return Track(
        time=time,
        moving=moving,
        distance=distance,
        velocity_smooth=velocity,
        latlng=latlng,
        altitude=altitude,
        grade_smooth=grade,
        heartrate=heartrate,
        cadence=cadence,
        watts=watts,
        temp=temp,
    )


def elevation_gain(altitude: list[float]) -> float:
    return round(sum(max(0.0, b - a) for a, b in itertools.pairwise(altitude)), 1)


def moving_seconds(track: Track, start: int, end: int) -> int:
    """Seconds spent moving between two sample indexes."""
    return sum(
        track.time[i] - track.time[i - 1] for i in range(start + 1, end + 1) if track.moving[i]
    )


def boundaries(distance: list[float], length: float) -> list[tuple[int, int]]:
    """Index ranges of consecutive ``length``-metre pieces (the last may be shorter)."""
    pieces: list[tuple[int, int]] = []
    start = 0
    mark = length
    for i, d in enumerate(distance):
        if d >= mark:
            pieces.append((start, i))
            start = i
            mark += length
    if start < len(distance) - 1:
        pieces.append((start, len(distance) - 1))
    return pieces


def fastest(distance: list[float], time: list[int], length: float) -> tuple[int, int] | None:
    """The quickest index window covering at least ``length`` metres (a best effort)."""
    best: tuple[int, int] | None = None
    start = 0
    for end in range(len(distance)):
        while start < end and distance[end] - distance[start + 1] >= length:
            start += 1
        if distance[end] - distance[start] >= length and (
            best is None or time[end] - time[start] < time[best[1]] - time[best[0]]
        ):
            best = (start, end)
    return best
