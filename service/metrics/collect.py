"""The metrics registry: every series, read when it is scraped.

`StateCollector` reads what is shared by every process, at scrape time: PostgreSQL (inbox
events by type and status, unconfirmed destructive events, the oldest event still waiting for
the broker, the last event received, sync jobs by kind and status, activities by hydration
status), the broker (messages waiting and the oldest one's age per queue) and the quota
scheduler's ``status()`` (used and limit per bucket, window and tier; denials; 429s), plus
the event sums every process publishes (service/metrics/events.py). A source that fails is
left out of that scrape, and ``strava_ingest_metrics_source_up{source}`` says which
answered, so a database outage does not also hide the queues and the quota.

Labels come from the code's vocabulary only. Inbox object and aspect types are what Strava
sent, so any other than Strava's own (docs/strava.md §1.4) is reported as ``other``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import dramatiq
import sqlalchemy as sa
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped
from sqlmodel import col

from service.metrics.events import (
    DRAMATIQ_DURATION,
    DRAMATIQ_ERRORS,
    DRAMATIQ_IN_PROGRESS,
    DRAMATIQ_MESSAGES,
    DRAMATIQ_REJECTS,
    DRAMATIQ_RETRIES,
    REJECTED_REQUESTS,
    SSE_SUBSCRIBERS,
    STRAVA_DURATION,
    STRAVA_ERRORS,
    EventStore,
    SeriesKey,
)
from service.models import Activity, InboxEvent, InboxStatus, SyncJob
from service.strava.quota import QuotaScheduler

log = logging.getLogger(__name__)

OBJECT_TYPES = ("activity", "athlete")
ASPECT_TYPES = ("create", "update", "delete")


@dataclass(frozen=True)
class _Counter:
    name: str  # without the _total suffix, as prometheus-client wants it
    documentation: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Gauge:
    name: str
    documentation: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Histogram:
    name: str
    documentation: str
    labels: tuple[str, ...]


# The per-process series as the store holds them, with how to show them.
_EVENT_SERIES: tuple[_Counter | _Gauge | _Histogram, ...] = (
    _Counter(
        REJECTED_REQUESTS.removesuffix("_total"),
        "Requests refused with an error, by its reason.",
        ("reason",),
    ),
    _Counter(
        STRAVA_ERRORS.removesuffix("_total"),
        "Strava calls answered with an error status, or not answered, by endpoint template.",
        ("endpoint", "status"),
    ),
    _Histogram(
        STRAVA_DURATION,
        "Seconds from sending a Strava call (quota granted) to its answer.",
        ("endpoint",),
    ),
    _Gauge(SSE_SUBSCRIBERS, "Open sync progress streams (server-sent events).", ()),
    _Counter(
        DRAMATIQ_MESSAGES.removesuffix("_total"),
        "The total number of messages processed.",
        ("queue_name", "actor_name"),
    ),
    _Counter(
        DRAMATIQ_ERRORS.removesuffix("_total"),
        "The total number of errored messages.",
        ("queue_name", "actor_name"),
    ),
    _Counter(
        DRAMATIQ_RETRIES.removesuffix("_total"),
        "The total number of retried messages.",
        ("queue_name", "actor_name"),
    ),
    _Counter(
        DRAMATIQ_REJECTS.removesuffix("_total"),
        "The total number of dead-lettered messages.",
        ("queue_name", "actor_name"),
    ),
    _Gauge(
        DRAMATIQ_IN_PROGRESS, "The number of messages in progress.", ("queue_name", "actor_name")
    ),
    _Histogram(
        DRAMATIQ_DURATION, "The time spent processing messages.", ("queue_name", "actor_name")
    ),
)


class StateCollector(Collector):
    """Every series of the service, read from the shared state when collected.

    Parameters:
        engine: the database.
        broker: the dramatiq broker (Redis in production, the in-process one when embedded).
        quota: the quota scheduler.
        events: where the processes publish their event sums.
    """

    def __init__(
        self, engine: Engine, broker: dramatiq.Broker, quota: QuotaScheduler, events: EventStore
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.quota = quota
        self.events = events

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "strava_ingest_metrics_source_up",
            "Whether a source of these metrics answered this scrape (1) or not (0).",
            labels=["source"],
        )
        for source, read in (
            ("database", self._database),
            ("broker", self._broker),
            ("quota", self._quota),
            ("events", self._events),
        ):
            try:
                metrics = list(read())
            except Exception as error:  # one source down must not hide the others
                log.warning(
                    "metrics source failed source=%s error=%s", source, type(error).__name__
                )
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from metrics
        yield up

    # PostgreSQL

    def _database(self) -> Iterable[Metric]:
        inbox = GaugeMetricFamily(
            "strava_ingest_inbox_events",
            "Webhook events in the inbox, by object type, aspect type and status.",
            labels=["object_type", "aspect_type", "status"],
        )
        object_type = _bounded(col(InboxEvent.object_type), OBJECT_TYPES)
        aspect_type = _bounded(col(InboxEvent.aspect_type), ASPECT_TYPES)
        status = col(InboxEvent.status)
        inbox_query = sa.select(object_type, aspect_type, status, sa.func.count()).group_by(
            object_type, aspect_type, status
        )
        waiting_since = sa.select(sa.func.min(col(InboxEvent.received_at))).where(
            status == InboxStatus.RECEIVED.value
        )
        last_received = sa.select(sa.func.max(col(InboxEvent.received_at)))
        jobs = GaugeMetricFamily(
            "strava_ingest_sync_jobs",
            "Sync jobs by kind and status.",
            labels=["kind", "status"],
        )
        jobs_query = sa.select(col(SyncJob.kind), col(SyncJob.status), sa.func.count()).group_by(
            col(SyncJob.kind), col(SyncJob.status)
        )
        hydration = GaugeMetricFamily(
            "strava_ingest_activities",
            "Stored activities by hydration status (none, pending, partial, complete, "
            "not_available, failed).",
            labels=["hydration_status"],
        )
        hydration_query = sa.select(col(Activity.hydration_status), sa.func.count()).group_by(
            col(Activity.hydration_status)
        )
        unconfirmed = 0
        with self.engine.connect() as connection:
            for obj, aspect, state, count in connection.execute(inbox_query):
                inbox.add_metric([obj, aspect, state], count)
                if state == InboxStatus.UNCONFIRMED.value:
                    unconfirmed += count
            oldest = connection.execute(waiting_since).scalar()
            newest = connection.execute(last_received).scalar()
            for kind, job_status, count in connection.execute(jobs_query):
                jobs.add_metric([kind, job_status], count)
            for hydration_status, count in connection.execute(hydration_query):
                hydration.add_metric([hydration_status], count)
        now = time.time()
        yield inbox
        yield GaugeMetricFamily(
            "strava_ingest_inbox_unconfirmed_destructive_events",
            "Deletes and deauthorizations Strava did not confirm: nothing was removed.",
            value=unconfirmed,
        )
        yield GaugeMetricFamily(
            "strava_ingest_inbox_oldest_received_age_seconds",
            "Age of the oldest event stored but not yet handed to the broker (the relay's "
            "lag); 0 when none waits.",
            value=max(0.0, now - oldest.timestamp()) if oldest is not None else 0.0,
        )
        if newest is not None:
            yield GaugeMetricFamily(
                "strava_ingest_last_webhook_received_timestamp_seconds",
                "When the newest event in the inbox arrived (Unix seconds).",
                value=newest.timestamp(),
            )
        yield jobs
        yield hydration

    # The broker

    def _broker(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "strava_ingest_broker_queue_messages",
            "Messages waiting in a broker queue (a queue's .DQ holds delayed ones).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "strava_ingest_broker_queue_oldest_message_age_seconds",
            "Age of the oldest message waiting in a queue (since it was first enqueued); 0 "
            "when the queue is empty.",
            labels=["queue"],
        )
        now_ms = time.time() * 1000
        for queue, waiting, oldest_ms in _queues(self.broker):
            depth.add_metric([queue], waiting)
            age.add_metric([queue], max(0.0, (now_ms - oldest_ms) / 1000) if oldest_ms else 0.0)
        yield depth
        yield age

    # The quota scheduler

    def _quota(self) -> Iterable[Metric]:
        status = self.quota.status()
        used = GaugeMetricFamily(
            "strava_ingest_quota_used",
            "Requests counted in the current window (Strava's report or our reservations).",
            labels=["bucket", "window"],
        )
        limit = GaugeMetricFamily(
            "strava_ingest_quota_limit",
            "Strava's limit for the window.",
            labels=["bucket", "window"],
        )
        tier_used = GaugeMetricFamily(
            "strava_ingest_quota_tier_used",
            "Requests a priority tier reserved in the current window.",
            labels=["bucket", "window", "tier"],
        )
        tier_allowed = GaugeMetricFamily(
            "strava_ingest_quota_tier_allowed",
            "Requests a priority tier may use in the current window.",
            labels=["bucket", "window", "tier"],
        )
        resets = GaugeMetricFamily(
            "strava_ingest_quota_seconds_to_reset",
            "Seconds until the window resets.",
            labels=["bucket", "window"],
        )
        for window in status.windows:
            labels = [window.bucket, window.window]
            used.add_metric(labels, window.used)
            limit.add_metric(labels, window.limit)
            resets.add_metric(labels, window.seconds_to_reset)
            for tier, count in window.used_by_tier.items():
                tier_used.add_metric([*labels, tier.value], count)
            for tier, count in window.allowed.items():
                tier_allowed.add_metric([*labels, tier.value], count)
        denials = CounterMetricFamily(
            "strava_ingest_quota_denials",
            "Strava calls the quota refused (never sent), by tier.",
            labels=["tier"],
        )
        for tier, count in status.denials.items():
            denials.add_metric([tier.value], count)
        yield from (used, limit, tier_used, tier_allowed, resets, denials)
        yield CounterMetricFamily(
            "strava_ingest_strava_throttled",
            "429 answers from Strava (none expected: the quota should prevent them).",
            value=status.throttled,
        )

    # What the processes published

    def _events(self) -> Iterable[Metric]:
        counters = self.events.counters()
        gauges = self.events.gauges()
        for spec in _EVENT_SERIES:
            if isinstance(spec, _Counter):
                counter = CounterMetricFamily(
                    spec.name, spec.documentation, labels=list(spec.labels)
                )
                for labels, value in _of(counters, f"{spec.name}_total", spec.labels):
                    counter.add_metric(labels, value)
                yield counter
            elif isinstance(spec, _Gauge):
                gauge = GaugeMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))
                found = list(_of(gauges, spec.name, spec.labels))
                for labels, value in found:
                    gauge.add_metric(labels, value)
                if not found and not spec.labels:
                    gauge.add_metric([], 0)
                yield gauge
            else:
                yield _histogram(spec, counters)


def _bounded(column: Mapped[str], known: tuple[str, ...]) -> sa.ColumnElement[str]:
    return sa.case((column.in_(known), column), else_=sa.literal("other"))


def _of(
    values: dict[SeriesKey, float], name: str, labels: tuple[str, ...]
) -> Iterator[tuple[list[str], float]]:
    for (series_name, pairs), value in sorted(values.items()):
        if series_name == name:
            given = dict(pairs)
            yield [given.get(label, "") for label in labels], value


def _histogram(spec: _Histogram, counters: dict[SeriesKey, float]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(spec.name, spec.documentation, labels=list(spec.labels))
    buckets: dict[tuple[str, ...], list[tuple[str, float]]] = defaultdict(list)
    sums: dict[tuple[str, ...], float] = {}
    for labels, value in _of(counters, f"{spec.name}_bucket", (*spec.labels, "le")):
        buckets[tuple(labels[:-1])].append((labels[-1], value))
    for labels, value in _of(counters, f"{spec.name}_sum", spec.labels):
        sums[tuple(labels)] = value
    for key, pairs in sorted(buckets.items()):
        pairs.sort(key=lambda pair: float(pair[0]))
        family.add_metric(list(key), pairs, sums.get(key, 0.0))
    return family


def _queues(broker: dramatiq.Broker) -> Iterator[tuple[str, int, float | None]]:
    """Per declared queue and its delay queue: messages waiting, and the oldest one's
    enqueue time (milliseconds since the epoch) or None."""
    names = sorted({*broker.get_declared_queues(), *broker.get_declared_delay_queues()})
    if isinstance(broker, RedisBroker):
        client = broker.client
        namespace = broker.namespace
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(f"{namespace}:{name}")
            pipe.lindex(f"{namespace}:{name}", 0)
        answers = pipe.execute()
        heads = answers[1::2]
        pipe = client.pipeline(transaction=False)
        for name, head in zip(names, heads, strict=True):
            pipe.hget(f"{namespace}:{name}.msgs", head or b"")
        bodies = pipe.execute()
        for name, waiting, body in zip(names, answers[0::2], bodies, strict=True):
            yield name, int(waiting), _enqueued_at(body)
    elif isinstance(broker, StubBroker):
        for name in names:
            queue = broker.queues[name]
            yield name, queue.qsize(), None


def _enqueued_at(body: bytes | None) -> float | None:
    if not body:
        return None
    try:
        return float(json.loads(body)["message_timestamp"])
    except (ValueError, KeyError, TypeError):
        return None


def build_registry(
    engine: Engine, broker: dramatiq.Broker, quota: QuotaScheduler, events: EventStore
) -> CollectorRegistry:
    """A registry of its own (not prometheus-client's global one, which would collect this
    process's Python runtime as if it were the deployment's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(engine, broker, quota, events))
    return registry
