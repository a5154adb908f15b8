"""Places, time zones, timestamps and the Google encoded-polyline format used by Strava maps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Place:
    """A home town: where activities start and which time zone they are recorded in.

    ``label`` uses Strava's format, which names the zone's standard offset even in summer
    (a recorded October New York run has ``(GMT-05:00) America/New_York`` with
    ``utc_offset -14400.0``; docs/strava.md §4.4).
    """

    label: str
    zone: str
    city: str
    state: str
    country: str
    lat: float
    lng: float
    altitude: float


PLACES: tuple[Place, ...] = (
    Place(
        "(GMT-05:00) America/New_York",
        "America/New_York",
        "New York",
        "NY",
        "United States",
        40.7812,
        -73.9665,
        25.0,
    ),
    Place(
        "(GMT-07:00) America/Denver",
        "America/Denver",
        "Boulder",
        "CO",
        "United States",
        40.0150,
        -105.2705,
        1655.0,
    ),
    Place(
        "(GMT-08:00) America/Los_Angeles",
        "America/Los_Angeles",
        "San Francisco",
        "CA",
        "United States",
        37.7694,
        -122.4862,
        20.0,
    ),
    Place(
        "(GMT+00:00) Europe/London",
        "Europe/London",
        "London",
        "England",
        "United Kingdom",
        51.5073,
        -0.1657,
        30.0,
    ),
    Place(
        "(GMT+01:00) Europe/Berlin",
        "Europe/Berlin",
        "Berlin",
        "Berlin",
        "Germany",
        52.5145,
        13.3501,
        35.0,
    ),
    Place(
        "(GMT+10:00) Australia/Sydney",
        "Australia/Sydney",
        "Sydney",
        "NSW",
        "Australia",
        -33.8915,
        151.2767,
        15.0,
    ),
)

# Zwift's Watopia sits on real coordinates in the Solomon Sea; virtual rides are mapped there.
WATOPIA = (-11.6406, 166.9524, 10.0)


def utc_offset(zone: str, epoch: float) -> float:
    """Seconds east of UTC at that instant; a float, as Strava sends it (§4.4)."""
    offset = datetime.fromtimestamp(epoch, ZoneInfo(zone)).utcoffset()
    return float(offset.total_seconds()) if offset is not None else 0.0


def local_epoch(zone: str, year: int, month: int, day: int, hour: int, minute: int) -> int:
    """The epoch second at which the wall clock in ``zone`` shows that local time."""
    return int(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp())


def iso(epoch: float) -> str:
    """``2025-10-18T12:49:52Z``: Strava's timestamp format."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_nanos(epoch: float) -> str:
    """The nanosecond form seen in a push-subscription create response (§1.1)."""
    whole = int(epoch)
    nanos = round((epoch - whole) * 1e9)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def local_iso(epoch: float, offset: float) -> str:
    """``start_date_local``: the local wall clock written with a ``Z`` suffix (§4.4)."""
    return iso(epoch + offset)


def parse_iso(value: str) -> int:
    """Epoch seconds of an ISO-8601 instant; a naive value is taken as UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _encode_value(value: int) -> str:
    shifted = ~(value << 1) if value < 0 else value << 1
    chunks = []
    while shifted >= 0x20:
        chunks.append(chr((0x20 | (shifted & 0x1F)) + 63))
        shifted >>= 5
    chunks.append(chr(shifted + 63))
    return "".join(chunks)


def encode_polyline(points: list[tuple[float, float]]) -> str:
    """Google's encoded polyline algorithm, 5-digit precision (what ``map.polyline`` holds)."""
    out: list[str] = []
    last_lat = last_lng = 0
    for lat, lng in points:
        ilat, ilng = round(lat * 1e5), round(lng * 1e5)
        out.append(_encode_value(ilat - last_lat))
        out.append(_encode_value(ilng - last_lng))
        last_lat, last_lng = ilat, ilng
    return "".join(out)


def decode_polyline(text: str) -> list[tuple[float, float]]:
    """The inverse of :func:`encode_polyline`, used by tests to check consistency."""
    values: list[int] = []
    shift = result = 0
    for char in text:
        byte = ord(char) - 63
        result |= (byte & 0x1F) << shift
        shift += 5
        if byte < 0x20:
            values.append(~(result >> 1) if result & 1 else result >> 1)
            shift = result = 0
    points: list[tuple[float, float]] = []
    lat = lng = 0
    for i in range(0, len(values) - 1, 2):
        lat += values[i]
        lng += values[i + 1]
        points.append((lat / 1e5, lng / 1e5))
    return points


def thin(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` points, evenly picked, always keeping the first and last."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]
