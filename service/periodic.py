"""Periodic duties (the relay, and whatever else must run on a timer), run by the
`scheduler` process in production and by a thread of `serve` in embedded mode."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    """Something to run every `every` seconds; a failure is logged and retried next time."""

    name: str
    every: float
    run: Callable[[], object]


def run_duties(duties: Sequence[Duty], stop: threading.Event) -> None:
    """Run each duty on its interval until `stop` is set."""
    due = {duty.name: time.monotonic() + duty.every for duty in duties}
    while duties and not stop.is_set():
        now = time.monotonic()
        for duty in duties:
            if due[duty.name] > now:
                continue
            try:
                duty.run()
            except Exception:
                log.exception("periodic duty failed duty=%s; trying again later", duty.name)
            due[duty.name] = time.monotonic() + duty.every
        stop.wait(max(0.0, min(due.values()) - time.monotonic()))
