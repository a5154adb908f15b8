import io
import logging

import pytest

from service.logs import EscapeControls, RedactSecrets, install_filters, redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "GET /webhooks/strava?hub.verify_token=s3cret&hub.challenge=abc",
            "GET /webhooks/strava?hub.verify_token=***&hub.challenge=abc",
        ),
        (
            "GET /auth/strava/callback?state=&code=ac76eb&scope=read",
            "GET /auth/strava/callback?state=&code=***&scope=read",
        ),
        (
            "GET /push_subscriptions?client_id=1&client_secret=xyz",
            "GET /push_subscriptions?client_id=1&client_secret=***",
        ),
    ],
)
def test_secret_query_parameters_are_masked(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_masks_secrets_passed_as_log_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", "/x?code=abc"),
        None,
    )

    RedactSecrets().filter(record)

    assert record.getMessage() == '1.2.3.4 - "GET /x?code=***"'


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("service.web.oauth", logging.INFO, __file__, 1, message, args, None)


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("x\nINFO forged line", "error=x\\nINFO forged line"),
        ("x\r\nlevel=ERROR", "error=x\\r\\nlevel=ERROR"),
        ("\x1b[2Jcleared", "error=\\x1b[2Jcleared"),
        ("a\u2028b\x85c", "error=a\\u2028b\\x85c"),
        ("plain é text", "error=plain é text"),
    ],
)
def test_control_characters_in_a_logged_value_are_escaped(value: str, logged: str) -> None:
    line = record("error=%s", value)

    EscapeControls().filter(line)

    assert line.getMessage() == logged


def test_a_handler_gets_redaction_then_escaping_and_writes_one_line_per_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("level=%(levelname)s %(message)s"))
    install_filters(handler)
    install_filters(handler)  # once, however often

    handler.handle(record("path=%s", "/cb?code=s3cret\nlevel=ERROR forged&scope=read"))

    assert [type(f) for f in handler.filters] == [RedactSecrets, EscapeControls]
    assert stream.getvalue().splitlines() == [
        "level=INFO path=/cb?code=***\\nlevel=ERROR forged&scope=read"
    ]
