"""Bookkeeping of units of work (webhook events, hydrations) between attempts: waiting for
quota, backing off, or failed for good, always with the reason kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.db import session_scope
from service.ingest.retry import GiveUp, RetryLater, Step, WaitForQuota
from service.models import Activity, HydrationStatus, InboxEvent, InboxStatus


@dataclass(frozen=True)
class WorkItems:
    """One kind of work item and how its row shows each state.

    Parameters:
      table: the SQLModel table holding the items.
      status: the status column.
      attempts: the column counting failed attempts.
      error: the column keeping the last error.
      waiting: the status while waiting for quota or backing off.
      rate_limited: the status while waiting for quota.
      failed: the status once given up.
      kept: statuses that waiting does not replace (a `partial` hydration waiting to fetch
        its streams stays `partial`: its detail is stored).
    """

    table: Any
    status: str
    attempts: str
    error: str
    waiting: str
    rate_limited: str
    failed: str
    kept: tuple[str, ...] = ()

    def failed_attempts(self, engine: Engine, item_id: int) -> int:
        with session_scope(engine) as session:
            row = session.get(self.table, item_id)
            return int(getattr(row, self.attempts)) if row is not None else 0

    def record(self, engine: Engine, item_id: int, step: Step, error: str, now: datetime) -> None:
        column = getattr(self.table, self.attempts)
        values: dict[str, Any] = {"updated_at": now}
        match step:
            case WaitForQuota(at):
                # Not a failure: the attempt never reached Strava, or Strava had no quota.
                values |= {self.status: self._waiting(self.rate_limited), "retry_after": at}
            case RetryLater(at):
                values |= {self.status: self._waiting(self.waiting), "retry_after": at}
                values[self.error] = error
                values[self.attempts] = column + 1
            case GiveUp(reason):
                values |= {self.status: self.failed, "retry_after": None, self.error: reason}
                values[self.attempts] = column + 1
        with session_scope(engine) as session:
            session.execute(sa.update(self.table).where(self.table.id == item_id).values(**values))

    def _waiting(self, status: str) -> Any:
        if not self.kept:
            return status
        column = getattr(self.table, self.status)
        return sa.case((column.in_(self.kept), column), else_=status)


EVENTS = WorkItems(
    table=InboxEvent,
    status="status",
    attempts="attempts",
    error="last_error",
    waiting=InboxStatus.ENQUEUED.value,
    rate_limited=InboxStatus.RATE_LIMITED.value,
    failed=InboxStatus.FAILED.value,
)

HYDRATIONS = WorkItems(
    table=Activity,
    status="hydration_status",
    attempts="hydrate_attempts",
    error="last_hydrate_error",
    # A hydration waiting for quota is still pending; `retry_after` tells it is waiting.
    waiting=HydrationStatus.PENDING.value,
    rate_limited=HydrationStatus.PENDING.value,
    failed=HydrationStatus.FAILED.value,
    kept=(HydrationStatus.PARTIAL.value,),
)
