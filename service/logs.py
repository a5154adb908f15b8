"""Log set-up: one line per record, key=value pairs in the messages, secrets redacted."""

from __future__ import annotations

import logging
import re

# Query parameters that carry secrets: the handshake's verify token, OAuth codes, client
# credentials (subscription calls put them in the query, docs/strava.md §1.1) and tokens.
_SECRET_PARAMS = re.compile(
    r"((?:hub\.verify_token|code|client_secret|access_token|refresh_token)=)[^&\s\"']+"
)


def redact(text: str) -> str:
    return _SECRET_PARAMS.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Masks secret query parameters wherever a URL lands in a log line (e.g. uvicorn's
    access log prints the full request path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
