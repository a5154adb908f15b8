"""The registry served unauthenticated on METRICS_PORT, for Prometheus scrapers."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)

# Scrapers run on other hosts; the setting's comment (service/config.py) says to firewall it.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def serve_metrics(
    port: int, registry: CollectorRegistry, *, addr: str = ALL_INTERFACES
) -> Callable[[], None]:
    """Serve ``registry`` on ``port`` in a background thread; returns what stops it.

    Every process answers for the whole deployment, so when another process of this host
    already serves the port this one only logs it (and the returned function does nothing).
    """
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as error:
        log.info("metrics port taken, served by another process port=%d error=%s", port, error)
        return lambda: None
    log.info("serving metrics port=%d", port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
