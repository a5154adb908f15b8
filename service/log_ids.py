"""The ids every log line carries where they are known: the request, the athlete, the activity,
the inbox event and the sync job.

They live in a context variable, set where work enters the service (an HTTP request, a
worker's message, a sync job) and read by the log formatters (service/logs.py), so no log
call has to name them. A context variable follows the work: each request's task, each worker
thread, and a thread pool call copying its caller's context, see only their own ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

# In the order a log line shows them.
ID_NAMES = ("request_id", "athlete_id", "activity_id", "inbox_event_id", "job_id")

_EMPTY: Mapping[str, object] = MappingProxyType({})
_ids: ContextVar[Mapping[str, object]] = ContextVar("log_ids", default=_EMPTY)


def current_ids() -> Mapping[str, object]:
    """The ids known here, in ID_NAMES order (read-only)."""
    return _ids.get()


def _merged(ids: Mapping[str, object | None]) -> Mapping[str, object]:
    unknown = set(ids) - set(ID_NAMES)
    if unknown:
        raise ValueError(f"not a log id: {', '.join(sorted(unknown))}")
    merged = {**_ids.get(), **{k: v for k, v in ids.items() if v is not None}}
    return MappingProxyType({name: merged[name] for name in ID_NAMES if name in merged})


@contextmanager
def log_ids(**ids: object | None) -> Iterator[None]:
    """These ids (None: not known) on every log line inside the block, besides those already
    set; restored on leaving it."""
    token = _ids.set(_merged(ids))
    try:
        yield
    finally:
        _ids.reset(token)


def add_log_ids(**ids: object | None) -> None:
    """These ids on every later log line of the current unit of work, once it has learnt
    them (the athlete of an inbox event, once the event is read). The boundary that opened
    the unit of work (`log_ids`, or `replace_log_ids`) drops them when it ends."""
    _ids.set(_merged(ids))


def replace_log_ids(**ids: object | None) -> None:
    """Exactly these ids from now on in this context: for boundaries that cannot wrap the
    work in a block (a worker thread's message hooks)."""
    _ids.set(_EMPTY)
    _ids.set(_merged(ids))
