"""The clocks injected wherever time decides something (quota windows, leases, backoff,
coalescing), so that tests and simulations move time instead of waiting for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

# Seconds since the epoch: the quota scheduler's windows and the emulator's rate limits.
Clock = Callable[[], float]
# An aware UTC datetime: the ingest domain's leases, retries and coalescing windows.
UtcClock = Callable[[], datetime]
