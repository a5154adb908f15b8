import logging

import pytest

from service.logs import RedactSecrets, redact


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
