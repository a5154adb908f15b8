"""Log set-up: one line per record, key=value pairs in the messages, secrets redacted, and
control characters escaped so that a value from a request cannot start a line of its own."""

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


# C0 controls (CR and LF among them), DEL, C1 controls, and the Unicode line and paragraph
# separators: whatever a log reader might take for the end of a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with each control character written as its Python escape (`\\n`, `\\x1b`)."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


class EscapeControls(logging.Filter):
    """Escapes control characters in the formatted message of every record: values logged
    from requests (a callback's `error`, a path) cannot forge a second log line. Runs after
    RedactSecrets, whose patterns stop at whitespace."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def install_filters(handler: logging.Handler) -> None:
    """Redaction, then escaping, on `handler` (once, however often this is called)."""
    for kind in (RedactSecrets, EscapeControls):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        install_filters(handler)
