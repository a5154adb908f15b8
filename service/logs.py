"""Log set-up: one line per record, as text (key=value pairs) or as one JSON object
(LOG_FORMAT), with the ids of the work it belongs to (service/log_ids.py), secrets redacted,
and control characters escaped so that a value from a request cannot start a line of its own."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from service.log_ids import current_ids

LogFormat = Literal["json", "text"]

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


class TextLines(logging.Formatter):
    """`time level=… logger=… message`, the known ids as key=value pairs between the logger
    and the message: in one place on every line, and the message still last."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Formatting runs in the thread (and context) that logged, so the ids are its own.
        ids = escape_controls("".join(f"{k}={v} " for k, v in current_ids().items()))
        return (
            f"{record.asctime} level={record.levelname} logger={record.name} {ids}{record.message}"
        )

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class JsonLines(JsonFormatter):
    """One JSON object per record: time, level, logger, message, the known ids, and any
    `extra=` fields; every string redacted. JSON escapes control characters itself."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            # uvicorn repeats its message with terminal colours for its own formatter.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.update(current_ids())

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # Tracebacks and `extra=` values pass no filter: redact them here too.
        return {k: redact(v) if isinstance(v, str) else v for k, v in log_data.items()}


def build_formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonLines() if log_format == "json" else TextLines()


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """The root logger at `level`, its handlers (a stderr one when it has none) writing
    `log_format` through the redaction and escaping filters. Handlers that others installed
    first (dramatiq's, in its worker processes) get the same format and filters."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = build_formatter(log_format)
    for handler in root.handlers:
        install_filters(handler)
        handler.setFormatter(formatter)
