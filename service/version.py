"""The installed package's version, for the User-Agent sent to Strava and the OpenAPI
document."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "strava-ingest"


def package_version() -> str:
    """The installed distribution's version; ``0+unknown`` in a source tree never installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
