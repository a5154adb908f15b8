"""JSON shapes, key for key as in the real recordings in tests/cassettes/.

Key order follows the recordings too (client/athlete_activities.yaml, client/activity.yaml,
client/activity_laps.yaml, client/athlete.yaml, oauth/token_authorization_code.yaml), so a diff
against a real response reads naturally. Keys that Strava only sends when a sensor recorded
the value (cadence, temperature, heart rate, elevation, power) are left out when it did not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from service.emulator.data import Activity, Athlete, Gear
from service.emulator.geo import encode_polyline, iso, iso_nanos, local_iso, thin
from service.emulator.state import Subscription
from service.emulator.tracks import (
    Track,
    boundaries,
    elevation_gain,
    fastest,
    moving_seconds,
)

Json = dict[str, Any]

_CDN = "https://dgalywyr863hv.cloudfront.net/pictures"
BEST_EFFORTS = (
    ("400m", 400),
    ("1/2 mile", 805),
    ("1k", 1000),
    ("1 mile", 1609),
    ("2 mile", 3219),
    ("5k", 5000),
    ("10k", 10000),
    ("15k", 15000),
    ("10 mile", 16090),
    ("20k", 20000),
    ("Half-Marathon", 21097),
    ("30k", 30000),
    ("Marathon", 42195),
)
RUNS = ("Run", "TrailRun")


@dataclass(frozen=True)
class Derived:
    """Per-activity values computed once from the track and cached by the state."""

    average_speed: float
    max_speed: float
    total_elevation_gain: float
    elev_high: float | None
    elev_low: float | None
    average_cadence: float | None
    average_temp: int | None
    average_heartrate: float | None
    max_heartrate: float | None
    average_watts: float | None
    max_watts: int | None
    weighted_average_watts: int | None
    kilojoules: float | None
    start_latlng: list[float]
    end_latlng: list[float]
    polyline: str
    summary_polyline: str
    suffer_score: float | None
    calories: float


def _mean(values: list[int] | list[float], mask: list[bool]) -> float:
    picked = [v for v, m in zip(values, mask, strict=True) if m] or list(values)
    return sum(picked) / len(picked)


def derive(activity: Activity, track: Track | None) -> Derived:
    moving = activity.moving_time
    speed = round(activity.distance / moving, 3) if moving and activity.distance else 0.0
    if track is None:  # manual entry: only what the athlete typed in
        return Derived(speed, 0.0, 0.0, None, None, None, None, None, None, None, None, None,
                       None, [], [], "", "", None, round(moving / 60 * 7.0, 1))  # fmt: skip
    mask = track.moving
    hr = track.heartrate
    watts = track.watts
    points = [(p[0], p[1]) for p in track.latlng] if track.latlng else []
    average_hr = round(_mean(hr, mask), 1) if hr else None
    average_watts = round(_mean(watts, mask), 1) if watts else None
    weighted = round(_mean([w**4 for w in watts], mask) ** 0.25) if watts else None
    suffer = (
        float(round(moving / 60 * max(0.2, (average_hr - 95) / 40) ** 2))
        if average_hr is not None
        else None
    )
    kilojoules = round(average_watts * moving / 1000, 1) if average_watts is not None else None
    calories = kilojoules if kilojoules is not None else moving / 60 * 10.5
    return Derived(
        average_speed=speed,
        max_speed=round(max(track.velocity_smooth), 1) if track.velocity_smooth else 0.0,
        total_elevation_gain=elevation_gain(track.altitude) if track.altitude else 0.0,
        elev_high=max(track.altitude) if track.altitude else None,
        elev_low=min(track.altitude) if track.altitude else None,
        average_cadence=round(_mean(track.cadence, mask), 1) if track.cadence else None,
        average_temp=round(_mean(track.temp, mask)) if track.temp else None,
        average_heartrate=average_hr,
        max_heartrate=float(max(hr)) if hr else None,
        average_watts=average_watts,
        max_watts=max(watts) if watts else None,
        weighted_average_watts=weighted,
        kilojoules=kilojoules,
        start_latlng=list(points[0]) if points else [],
        end_latlng=list(points[-1]) if points else [],
        polyline=encode_polyline(thin(points, 400)) if points else "",
        summary_polyline=encode_polyline(thin(points, 80)) if points else "",
        suffer_score=suffer,
        calories=round(calories, 1),
    )


def meta_athlete(athlete_id: int) -> Json:
    return {"id": athlete_id, "resource_state": 1}


def summary_athlete(athlete: Athlete) -> Json:
    """The athlete in a token-exchange response (oauth/token_authorization_code.yaml)."""
    return {
        "id": athlete.id,
        "username": athlete.username,
        "resource_state": 2,
        "firstname": athlete.firstname,
        "lastname": athlete.lastname,
        "city": athlete.place.city,
        "state": athlete.place.state,
        "country": athlete.place.country,
        "sex": athlete.sex,
        "premium": athlete.premium,
        "summit": athlete.premium,
        "created_at": iso(athlete.created_at),
        "updated_at": iso(athlete.updated_at),
        "badge_type_id": 1 if athlete.premium else 0,
        "profile_medium": f"{_CDN}/athletes/{athlete.id}/{athlete.picture_id}/2/medium.jpg",
        "profile": f"{_CDN}/athletes/{athlete.id}/{athlete.picture_id}/2/large.jpg",
        "friend": None,
        "follower": None,
    }


def gear_summary(gear: Gear, in_activity: bool = False) -> Json:
    """SummaryGear; an unset nickname is null on the athlete but "" inside an activity
    (client/athlete.yaml vs client/activity.yaml)."""
    nickname = gear.nickname if gear.nickname is not None or not in_activity else ""
    return {
        "id": gear.id,
        "primary": gear.primary,
        "name": gear.name,
        "nickname": nickname,
        "resource_state": 2,
        "retired": gear.retired,
        "distance": gear.distance,
        "converted_distance": round(gear.distance / 1609.344, 1),
    }


def detailed_athlete(athlete: Athlete) -> Json:
    """GET /athlete (client/athlete.yaml); clubs are left empty (not emulated)."""
    summary = summary_athlete(athlete)
    head = {k: summary[k] for k in ("id", "username", "resource_state", "firstname", "lastname")}
    tail = {k: v for k, v in summary.items() if k not in head}
    return {
        **head,
        "resource_state": 3,
        "bio": "",
        **{k: tail[k] for k in ("city", "state", "country", "sex", "premium", "summit")},
        **{k: tail[k] for k in ("created_at", "updated_at", "badge_type_id")},
        "weight": athlete.weight,
        **{k: tail[k] for k in ("profile_medium", "profile", "friend", "follower")},
        "blocked": False,
        "can_follow": True,
        "follower_count": athlete.follower_count,
        "friend_count": athlete.friend_count,
        "mutual_friend_count": 0,
        "athlete_type": athlete.athlete_type,
        "date_preference": "%m/%d/%Y",
        "measurement_preference": athlete.measurement_preference,
        "clubs": [],
        "postable_clubs_count": 0,
        "ftp": athlete.ftp,
        "bikes": [gear_summary(g) for g in athlete.bikes],
        "shoes": [gear_summary(g) for g in athlete.shoes],
    }


def _power(activity: Activity, derived: Derived) -> Json:
    if derived.average_watts is None:
        return {}
    return {
        "average_watts": derived.average_watts,
        "max_watts": derived.max_watts,
        "weighted_average_watts": derived.weighted_average_watts,
        "device_watts": True,
        "kilojoules": derived.kilojoules,
    }


def summary_activity(activity: Activity, derived: Derived, detailed: bool = False) -> Json:
    """A SummaryActivity (resource_state 2) as in client/athlete_activities.yaml."""
    offset = activity.utc_offset
    if detailed:
        map_json: Json = {
            "id": f"a{activity.id}",
            "polyline": derived.polyline,
            "resource_state": 3,
            "summary_polyline": derived.summary_polyline,
        }
    else:
        map_json = {
            "id": f"a{activity.id}",
            "summary_polyline": derived.summary_polyline,
            "resource_state": 2,
        }
    out: Json = {
        "resource_state": 3 if detailed else 2,
        "athlete": meta_athlete(activity.athlete_id),
        "name": activity.name,
        "distance": activity.distance,
        "moving_time": activity.moving_time,
        "elapsed_time": activity.elapsed_time,
        "total_elevation_gain": derived.total_elevation_gain,
        "type": activity.type,
        "sport_type": activity.sport_type,
        "workout_type": activity.workout_type,
        "id": activity.id,
        "start_date": iso(activity.start),
        "start_date_local": local_iso(activity.start, offset),
        "timezone": activity.place.label,
        "utc_offset": offset,
        "location_city": None,
        "location_state": None,
        "location_country": None,
        "achievement_count": activity.achievement_count,
        "kudos_count": activity.kudos_count,
        "comment_count": activity.comment_count,
        "athlete_count": activity.athlete_count,
        "photo_count": 0,
        "map": map_json,
        "trainer": activity.trainer,
        "commute": activity.commute,
        "manual": activity.manual,
        "private": activity.private,
        "visibility": activity.visibility,
        "flagged": False,
        "gear_id": activity.gear_id,
        "start_latlng": derived.start_latlng,
        "end_latlng": derived.end_latlng,
        "average_speed": derived.average_speed,
        "max_speed": derived.max_speed,
    }
    if derived.average_cadence is not None:
        out["average_cadence"] = derived.average_cadence
    out.update(_power(activity, derived))
    if derived.average_temp is not None:
        out["average_temp"] = derived.average_temp
    out["has_heartrate"] = derived.average_heartrate is not None
    if derived.average_heartrate is not None:
        out["average_heartrate"] = derived.average_heartrate
        out["max_heartrate"] = derived.max_heartrate
    out["heartrate_opt_out"] = False
    out["display_hide_heartrate_option"] = derived.average_heartrate is not None
    if derived.elev_high is not None:
        out["elev_high"] = derived.elev_high
        out["elev_low"] = derived.elev_low
    out["upload_id"] = activity.upload_id
    if activity.upload_id is not None:
        out["upload_id_str"] = str(activity.upload_id)
    out["external_id"] = activity.external_id
    out["from_accepted_tag"] = False
    out["pr_count"] = activity.pr_count
    out["total_photo_count"] = activity.total_photo_count
    out["has_kudoed"] = False
    out["suffer_score"] = derived.suffer_score
    return out


def _ref(activity: Activity) -> Json:
    return {"id": activity.id, "visibility": activity.visibility, "resource_state": 1}


def _sensor_means(track: Track, start: int, end: int) -> Json:
    mask = track.moving[start : end + 1]
    out: Json = {}
    if track.cadence:
        out["average_cadence"] = round(_mean(track.cadence[start : end + 1], mask), 1)
    out["device_watts"] = track.watts is not None
    if track.watts:
        out["average_watts"] = round(_mean(track.watts[start : end + 1], mask), 1)
    if track.heartrate:
        out["average_heartrate"] = round(_mean(track.heartrate[start : end + 1], mask), 1)
        out["max_heartrate"] = float(max(track.heartrate[start : end + 1]))
    return out


def _pace_zone(speed: float, average: float) -> int:
    return max(1, min(5, 1 + math.floor((speed / average - 0.85) / 0.07))) if average else 1


def laps(
    activity: Activity, derived: Derived, track: Track | None, detailed: bool = False
) -> list[Json]:
    """Laps as in client/activity_laps.yaml; ``pace_zone`` too inside a detailed run."""
    offset = activity.utc_offset
    length = activity.sport.lap_length
    if track is None or track.distance is None or length <= 0:
        pieces = [(0, len(track.time) - 1 if track else 0)]
    else:
        pieces = boundaries(track.distance, length)
        if len(pieces) > 40:  # Strava devices auto-lap; very long activities get one lap
            pieces = [(0, len(track.time) - 1)]
    out: list[Json] = []
    for index, (start, end) in enumerate(pieces, 1):
        if track is None:
            elapsed, moving, dist = activity.elapsed_time, activity.moving_time, activity.distance
            top, climb, offset_s = derived.max_speed, 0.0, 0
        else:
            elapsed = track.time[end] - track.time[start]
            moving = moving_seconds(track, start, end)
            dist = (track.distance[end] - track.distance[start]) if track.distance else 0.0
            vel = track.velocity_smooth
            top = max(vel[start : end + 1]) if vel else 0.0
            alt = track.altitude
            climb = elevation_gain(alt[start : end + 1]) if alt else 0.0
            offset_s = track.time[start]
        speed = round(dist / moving, 2) if moving else 0.0
        lap: Json = {
            "id": activity.id_base + index,
            "resource_state": 2,
            "name": f"Lap {index}",
            "activity": _ref(activity),
            "athlete": meta_athlete(activity.athlete_id),
            "elapsed_time": elapsed,
            "moving_time": moving,
            "start_date": iso(activity.start + offset_s),
            "start_date_local": local_iso(activity.start + offset_s, offset),
            "distance": round(dist, 2),
            "average_speed": speed,
            "max_speed": round(top, 6),
            "lap_index": index,
            "split": index,
            "start_index": start,
            "end_index": end,
            "total_elevation_gain": climb,
        }
        if track is not None:
            lap.update(_sensor_means(track, start, end))
        else:
            lap["device_watts"] = False
        if detailed and activity.sport_type in RUNS:
            lap["pace_zone"] = _pace_zone(speed, derived.average_speed)
        out.append(lap)
    return out


def splits(activity: Activity, derived: Derived, track: Track | None, length: float) -> list[Json]:
    """Per-kilometre (``splits_metric``) or per-mile (``splits_standard``) splits."""
    if track is None or track.distance is None or track.latlng is None:
        return []
    out: list[Json] = []
    for index, (start, end) in enumerate(boundaries(track.distance, length), 1):
        dist = track.distance[end] - track.distance[start]
        moving = moving_seconds(track, start, end)
        speed = dist / moving if moving else 0.0
        rise = (track.altitude[end] - track.altitude[start]) if track.altitude else 0.0
        split: Json = {
            "distance": round(dist, 1),
            "elapsed_time": track.time[end] - track.time[start],
            "elevation_difference": round(rise, 1),
            "moving_time": moving,
            "split": index,
            "average_speed": round(speed, 2),
            "average_grade_adjusted_speed": round(speed * (1 + 0.03 * 100 * rise / dist), 2)
            if dist
            else None,
        }
        if track.heartrate:
            window = track.heartrate[start : end + 1]
            split["average_heartrate"] = sum(window) / len(window)
        split["pace_zone"] = _pace_zone(speed, derived.average_speed)
        out.append(split)
    return out


def best_efforts(activity: Activity, track: Track | None) -> list[Json]:
    """Fastest windows over standard distances, for runs only (client/activity.yaml)."""
    if activity.sport_type not in RUNS or track is None or track.distance is None:
        return []
    offset = activity.utc_offset
    out: list[Json] = []
    for index, (name, length) in enumerate(BEST_EFFORTS, 1):
        window = fastest(track.distance, track.time, length)
        if window is None:
            break
        start, end = window
        at = activity.start + track.time[start]
        rank = (activity.id_base + index) % 7 + 1
        out.append(
            {
                "id": activity.id_base + 1000 + index,
                "resource_state": 2,
                "name": name,
                "activity": _ref(activity),
                "athlete": meta_athlete(activity.athlete_id),
                "elapsed_time": track.time[end] - track.time[start],
                "moving_time": moving_seconds(track, start, end),
                "start_date": iso(at),
                "start_date_local": local_iso(at, offset),
                "distance": length,
                "pr_rank": rank if rank <= 3 else None,
                "achievements": [{"type_id": 3, "type": "pr", "rank": rank}] if rank <= 3 else [],
                "start_index": start,
                "end_index": end,
            }
        )
    return out


def _photos(activity: Activity) -> Json:
    if not activity.total_photo_count:
        return {"primary": None, "count": 0}
    base = f"https://dgtzuqphqg23d.cloudfront.net/{activity.photo_uid}"
    return {
        "primary": {
            "unique_id": activity.photo_uid,
            "urls": {"600": f"{base}-768x576.jpg", "100": f"{base}-128x96.jpg"},
            "source": 1,
            "media_type": 1,
        },
        "use_primary_photo": True,
        "count": activity.total_photo_count,
    }


def _similar(activity: Activity, derived: Derived) -> Json:
    speed = derived.average_speed
    speeds = [round(speed * f, 6) for f in (1.0, 0.97, 1.04, 0.93)]
    return {
        "effort_count": len(speeds),
        "average_speed": sum(speeds) / len(speeds),
        "min_average_speed": min(speeds),
        "mid_average_speed": sorted(speeds)[1],
        "max_average_speed": max(speeds),
        "pr_rank": sorted(speeds, reverse=True).index(speeds[0]) + 1,
        "frequency_milestone": None,
        "trend": {
            "speeds": speeds,
            "current_activity_index": 0,
            "min_speed": min(speeds),
            "mid_speed": sorted(speeds)[1],
            "max_speed": max(speeds),
            "direction": 0,
        },
        "resource_state": 2,
    }


def detailed_activity(
    activity: Activity, derived: Derived, track: Track | None, gear: Gear | None
) -> Json:
    """A DetailedActivity (resource_state 3) with the key set of client/activity.yaml."""
    out = summary_activity(activity, derived, detailed=True)
    zones = (["heartrate"] if derived.average_heartrate is not None else []) + (
        ["pace"] if activity.sport_type in RUNS else ["power"] if activity.has_power else []
    )
    out.update(
        {
            "description": activity.description,
            "calories": derived.calories,
            "perceived_exertion": None,
            "prefer_perceived_exertion": None,
            # Segment matching is not emulated: an empty list is a valid real answer.
            "segment_efforts": [],
            "splits_metric": splits(activity, derived, track, 1000.0),
            "splits_standard": splits(activity, derived, track, 1609.34),
            "laps": laps(activity, derived, track, detailed=True),
            "best_efforts": best_efforts(activity, track),
        }
    )
    if gear is not None:
        out["gear"] = gear_summary(gear, in_activity=True)
    out["photos"] = _photos(activity)
    out["stats_visibility"] = [
        {"type": kind, "visibility": "everyone"}
        for kind in ("heart_rate", "pace", "power", "speed", "calories")
    ]
    out["hide_from_home"] = False
    if activity.device_name is not None:
        out["device_name"] = activity.device_name
    out["embed_token"] = activity.embed_token
    if derived.average_speed > 0 and not activity.manual:
        out["similar_activities"] = _similar(activity, derived)
    out["available_zones"] = zones
    return out


def streams(track: Track | None, keys: list[str]) -> Json:
    """``key_by_type=true`` streams (client/activity_streams.yaml): an object keyed by type.

    Only types the activity recorded come back. ``series_type`` names the axis Strava indexes
    by: distance when there is one, else time.
    """
    if track is None:
        return {}
    available = track.streams()
    series = "distance" if "distance" in available else "time"
    out: Json = {}
    for key in keys:
        if key in available and key not in out:
            data = available[key]
            out[key] = {
                "data": data,
                "series_type": series,
                "original_size": len(data),
                "resolution": "high",
            }
    return out


def subscription_json(sub: Subscription, client_id: int, precise: bool = False) -> Json:
    """webhooks/create_push_subscription.yaml (nanosecond times) or push_subscriptions.yaml."""
    stamp = iso_nanos(sub.created_at) if precise else iso(sub.created_at)
    return {
        "id": sub.id,
        "resource_state": 2,
        "application_id": client_id,
        "callback_url": sub.callback_url,
        "created_at": stamp,
        "updated_at": stamp,
    }
