"""One stop request, however many copies of SIGTERM carry it.

Process managers stop a whole group (a shell's job control, Heroku) or cgroup (systemd): a
worker process then gets SIGTERM from the manager and, a moment later, the copy dramatiq's
main process forwards. dramatiq takes a second SIGTERM as "kill now", which would abort the
graceful shutdown every such stop asks for: messages in flight, the last metrics publication.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType

# Repeats this close to the first signal are copies of it; a later one still forces the exit.
COPY_WINDOW_SECONDS = 2.0


def treat_copies_as_one_stop(clock: Callable[[], float] = time.monotonic) -> None:
    """Wrap this process's SIGTERM handler (dramatiq's, installed before the worker module
    starts) so that repeats within ``COPY_WINDOW_SECONDS`` of the first are ignored."""
    handler = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return
    first: float | None = None

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        nonlocal first
        now = clock()
        if first is None:
            first = now
        elif now - first < COPY_WINDOW_SECONDS:
            return
        handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
