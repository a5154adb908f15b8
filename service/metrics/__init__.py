"""Prometheus metrics of the whole deployment: ``GET /metrics`` and ``METRICS_PORT``.

Two kinds of numbers, each kept where every process can read it:

- **Shared state, read at scrape time** (``collect.py``): inbox events, sync jobs and
  hydration outcomes are counted in PostgreSQL, queue depths read from the broker's Redis
  keys, quota usage from the quota scheduler's ``status()``. These are the same for every
  process, so nothing is counted twice and a restarted process loses nothing.
- **Events only one process sees** (``events.py``): rejected requests by reason, Strava call
  latency and errors, SSE subscribers, dramatiq's message series. Each process sums them in
  memory and publishes the sums to Redis about once a second; gauges go under a per-process
  key that expires when the process stops refreshing it.

Why Redis rather than prometheus-client's multiprocess mode: that mode shares one directory
of memory-mapped files, so it only adds up processes of one host and needs the directory
wiped by whoever starts them all. The Procfile's `web`, `worker` and `scheduler` run as
separate commands (often on separate hosts or containers), with nothing that starts them
together, but they already share one Redis. With the sums in Redis every process answers for
the whole deployment: scrape any one of them. Counters also survive restarts, so rates do
not dip when a worker is replaced. Embedded mode (``BROKER_URL=memory://``) is one process
and keeps the sums in memory.

Labels are bounded: endpoint templates (``/activities/{id}``), HTTP statuses, reasons,
statuses, tiers, queue and actor names, all from the code's own vocabulary; never an athlete,
activity or event id.
"""
