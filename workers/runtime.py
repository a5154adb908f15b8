"""What the actors run with besides their message: set by the worker's start-up, not at import.

dramatiq calls an actor with its message's arguments only. Its other dependencies (the
IngestContext, the retry backoff, the sync options, the dispatcher that re-sends work) are
put here once per process by `workers.actors.setup_workers`, called by `workers.main.start`
in the worker processes and by `strava-ingest serve` in embedded mode.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from service.ingest.context import IngestContext
from service.ingest.job_log import HydrationProgress
from service.ingest.retry import Backoff
from service.ingest.sync import SyncOptions
from service.messaging import Dispatcher


def _process_id() -> str:
    # uuid4 keeps a restarted process apart from the one before it.
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Runtime:
    ctx: IngestContext
    backoff: Backoff
    sync_options: SyncOptions
    dispatcher: Dispatcher
    # Who holds a sync job's lease: this process, with the thread added per job.
    worker_id: str = field(default_factory=_process_id)
    rng: random.Random = field(default_factory=random.Random)
    # This process's hydrations, summed up per athlete for the sync job logs.
    hydration_progress: HydrationProgress = field(default_factory=HydrationProgress)


class NotStarted(RuntimeError):
    """An actor ran in a process whose start-up has not set the runtime."""


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    """Make `runtime` the one every actor of this process runs with."""
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise NotStarted(
            "the worker runtime is not set up: start the workers with `strava-ingest worker` "
            "(dramatiq workers.main:start) or call workers.actors.setup_workers first"
        )
    return _current
