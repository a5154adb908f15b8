"""Copies of one SIGTERM are one stop request; a later SIGTERM still reaches the handler
that forces the exit."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from workers.stop_signal import COPY_WINDOW_SECONDS, treat_copies_as_one_stop


@pytest.fixture
def received() -> Iterator[list[int]]:
    """SIGTERMs reaching the handler installed before the wrapper (dramatiq's, in a worker)."""
    calls: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    yield calls
    signal.signal(signal.SIGTERM, previous)


def deliver() -> None:
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    handler(signal.SIGTERM, None)


def test_copies_within_the_window_are_one_request_and_a_later_one_goes_through(
    received: list[int],
) -> None:
    now = [100.0]
    treat_copies_as_one_stop(clock=lambda: now[0])

    deliver()
    now[0] += 0.01
    deliver()
    now[0] += COPY_WINDOW_SECONDS / 2
    deliver()
    assert received == [signal.SIGTERM]

    now[0] = 100.0 + COPY_WINDOW_SECONDS
    deliver()
    assert received == [signal.SIGTERM, signal.SIGTERM]


def test_a_process_that_ignores_sigterm_is_left_as_it_is() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        treat_copies_as_one_stop()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
