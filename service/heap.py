"""Garbage-collector settings for the long-running processes.

Under load the web process keeps thousands of short-lived objects (requests, futures, tasks)
alive across a few milliseconds, long enough for CPython's default thresholds (700, 10, 10) to
promote them, and then to run full collections over the whole heap (every imported module,
SQLAlchemy's and pydantic's structures) several times a second: each stopped the event loop
for 60-80 ms (measured, docs/benchmarks/ingest.md). Freezing what exists once start-up is done
takes it out of every later collection, and a larger first threshold lets short-lived objects
die young instead of being promoted. Reference cycles are still collected.
"""

from __future__ import annotations

import gc

# Allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


def settle_after_start_up() -> None:
    """Freeze the start-up heap and raise the young-generation threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
