import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping

import pytest

from service.config import Settings
from service.log_ids import add_log_ids, current_ids, log_ids
from service.logs import (
    EscapeControls,
    LogFormat,
    RedactSecrets,
    build_formatter,
    install_filters,
    redact,
)


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


def lines_of(log_format: LogFormat, *records: logging.LogRecord) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter(log_format))
    install_filters(handler)
    for one in records:
        handler.handle(one)
    return stream.getvalue().splitlines()


def test_a_json_line_is_one_object_with_level_logger_message_and_the_known_ids() -> None:
    with log_ids(request_id="r-1", athlete_id=7), log_ids(inbox_event_id=12, activity_id=None):
        [line] = lines_of("json", record("event done outcome=%s", "processed"))

    parsed = json.loads(line)
    assert parsed["level"] == "INFO"
    assert parsed["logger"] == "service.web.oauth"
    assert parsed["message"] == "event done outcome=processed"
    assert (parsed["request_id"], parsed["athlete_id"], parsed["inbox_event_id"]) == ("r-1", 7, 12)
    assert "activity_id" not in parsed
    assert parsed["time"].startswith("20")


def test_ids_are_dropped_when_their_block_ends_and_stay_out_of_other_threads() -> None:
    seen: list[Mapping[str, object]] = []
    with log_ids(job_id=3):
        add_log_ids(athlete_id=9)
        other = threading.Thread(target=lambda: seen.append(dict(current_ids())))
        other.start()
        other.join()
        inside = dict(current_ids())

    assert inside == {"athlete_id": 9, "job_id": 3}
    assert seen == [{}]
    assert dict(current_ids()) == {}


def test_an_unknown_id_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a log id: token"), log_ids(token="x"):
        pass


def test_a_text_line_has_the_ids_as_key_value_pairs_before_the_message() -> None:
    with log_ids(request_id="abc", job_id=5):
        [line] = lines_of("text", record("sync job page"))

    assert line.endswith(
        "level=INFO logger=service.web.oauth request_id=abc job_id=5 sync job page"
    )


def test_json_lines_redact_secrets_in_the_message_extras_and_tracebacks() -> None:
    try:
        raise RuntimeError("GET /token?refresh_token=s3cret-refresh")
    except RuntimeError:
        failed = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "call failed url=%s",
            ("/a?code=s3cret-code",),
            sys.exc_info(),
        )
    failed.callback = "https://h/cb?hub.verify_token=s3cret-verify"

    [line, *traceback_lines] = lines_of("json", failed)

    assert traceback_lines == []
    parsed = json.loads(line)
    assert parsed["message"] == "call failed url=/a?code=***"
    assert parsed["callback"] == "https://h/cb?hub.verify_token=***"
    assert "refresh_token=***" in parsed["exc_info"]
    assert "s3cret" not in line


def test_json_lines_keep_a_forged_line_break_inside_the_one_line() -> None:
    [line] = lines_of("json", record("error=%s", 'x\n{"level": "ERROR"}'))

    assert json.loads(line)["message"] == 'error=x\\n{"level": "ERROR"}'


@pytest.mark.parametrize(
    ("database_url", "broker_url", "given", "in_effect"),
    [
        ("sqlite:///x.db", "memory://", None, "text"),
        ("postgresql+psycopg://h/db", "redis://h/0", None, "json"),
        ("sqlite:///x.db", "redis://h/0", None, "json"),
        ("postgresql+psycopg://h/db", "redis://h/0", "text", "text"),
        ("sqlite:///x.db", "memory://", "json", "json"),
    ],
)
def test_log_format_defaults_to_json_in_production_and_text_in_embedded_mode(
    make_settings: Callable[..., Settings],
    database_url: str,
    broker_url: str,
    given: str | None,
    in_effect: str,
) -> None:
    settings = make_settings(database_url=database_url, broker_url=broker_url, log_format=given)

    assert settings.log_format_in_effect == in_effect
