"""The quota status as a table for people (`strava-ingest quota`); GET /quota serves JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.strava.quota.eta import TierBacklog
from service.strava.quota.scheduler import QuotaStatus, WindowStatus
from service.strava.quota.tiers import TIERS_BY_PRIORITY


def report_json(status: QuotaStatus, backlog: Sequence[TierBacklog] = ()) -> dict[str, Any]:
    """What GET /quota returns: the windows, and per tier with work waiting its backlog and
    when it should finish."""
    return status.as_json() | {"backlog": {row.tier.value: row.as_json() for row in backlog}}


def format_backlog(backlog: Sequence[TierBacklog]) -> str:
    """One line per tier with work waiting: counts, the rate the tier gets, the estimate."""
    if not backlog:
        return "backlog: nothing waits"
    lines = ["backlog (requests/hour the tier can expect, averaged over the day):"]
    for row in backlog:
        jobs = f", {row.sync_jobs} sync job{'s' if row.sync_jobs != 1 else ''}"
        lines.append(
            f"  {row.tier.value}: {row.estimate.sentence} "
            f"({row.estimate.rate_per_hour:,.0f}/h{jobs if row.sync_jobs else ''})"
        )
    return "\n".join(lines)


def format_status(status: QuotaStatus) -> str:
    """One row per bucket and window: used/limit, time to reset, then used/allowed per tier
    (highest tier first), the usage that is not ours (other clients of the app) and what the
    lower tiers leave free for the forecast of real-time work and other clients' usage."""
    header = ["bucket", "window", "used/limit", "resets in", *TIERS_BY_PRIORITY, "other", "held"]
    rows = [_row(window) for window in status.windows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        f"quota ({status.backend}) at {status.at.isoformat(timespec='seconds')}, "
        f"safety margin {status.safety_margin:.0%}; tiers show used/allowed; held: left free "
        "by the lower tiers for the rest of the window (forecast real-time and other use)",
        _line(header, widths),
        *(_line(row, widths) for row in rows),
        f"429s: {status.throttled}",
        "denied: "
        + ", ".join(f"{tier} {status.denials.get(tier, 0)}" for tier in TIERS_BY_PRIORITY),
    ]
    return "\n".join(lines)


def _row(window: WindowStatus) -> list[str]:
    ours = sum(window.used_by_tier.values())
    return [
        window.bucket,
        window.window,
        f"{window.used}/{window.limit}",
        duration(window.seconds_to_reset),
        *(f"{window.used_by_tier[tier]}/{window.allowed[tier]}" for tier in TIERS_BY_PRIORITY),
        str(max(0, window.used - ours)),
        str(window.held_for_realtime),
    ]


def _line(cells: list[str], widths: list[int]) -> str:
    # Names left-aligned, numbers right-aligned, like most CLI tables.
    first, second, *rest = cells
    return "  ".join(
        [first.ljust(widths[0]), second.ljust(widths[1])]
        + [cell.rjust(width) for cell, width in zip(rest, widths[2:], strict=True)]
    ).rstrip()


def duration(seconds: float) -> str:
    """Seconds as people read a time to reset: 4s, 12m03s, 3h05m00s."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
