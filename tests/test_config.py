import subprocess

import pytest
from launch import command
from support import TOKEN_KEY

from service.config import ConfigError, Mode, Settings, load_settings

REQUIRED = {
    "STRAVA_CLIENT_ID": "4242",
    "STRAVA_CLIENT_SECRET": "secret",
    "STRAVA_VERIFY_TOKEN": "verify",
    "TOKEN_KEY": TOKEN_KEY,
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> pytest.MonkeyPatch:
    for name in (*REQUIRED, "DATABASE_URL", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_the_defaults_are_the_embedded_mode(environment: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        environment.setenv(name, value)

    settings = load_settings(Settings)

    assert settings.mode is Mode.EMBEDDED
    assert settings.database_url == "sqlite:///./strava_ingest.db"
    assert settings.broker_url == "memory://"


def test_postgresql_and_redis_select_production_mode(environment: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        environment.setenv(name, value)
    environment.setenv("DATABASE_URL", "postgresql+psycopg://u@db/x")
    environment.setenv("BROKER_URL", "redis://redis:6379/0")

    assert load_settings(Settings).mode is Mode.PRODUCTION


def test_every_missing_setting_is_named(environment: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(Settings)

    for name in REQUIRED:
        assert f"{name}: is required" in str(error.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKEN_KEY", "not-a-fernet-key"),
        ("DATABASE_URL", "mysql://x"),
        ("BROKER_URL", "amqp://x"),
        ("STRAVA_CLIENT_ID", "abc"),
        ("STRAVA_API_URL", "ftp://strava"),
        ("WEBHOOK_PATH", "webhooks"),
        ("LOG_FORMAT", "xml"),
        ("SUBSCRIPTION_SILENCE_ALERT", "soon"),
        ("HEARTBEAT_TTL_SECONDS", "10"),  # not longer than the interval
    ],
)
def test_a_malformed_setting_is_named(
    environment: pytest.MonkeyPatch, name: str, value: str
) -> None:
    for required, good in REQUIRED.items():
        environment.setenv(required, good)
    environment.setenv(name, value)

    with pytest.raises(ConfigError) as error:
        load_settings(Settings)

    assert str(error.value).splitlines()[1].strip().startswith(f"{name}:")


def test_the_secret_values_are_not_echoed_in_errors(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("STRAVA_CLIENT_SECRET", "hunter2")
    environment.setenv("TOKEN_KEY", "hunter3")

    with pytest.raises(ConfigError) as error:
        load_settings(Settings)

    assert "hunter" not in str(error.value)


def test_the_command_refuses_to_start_with_a_message_naming_the_setting(
    environment: pytest.MonkeyPatch,
) -> None:
    result = subprocess.run(command("serve"), capture_output=True, text=True, check=False)

    assert result.returncode != 0
    assert "STRAVA_CLIENT_ID: is required" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_service_refuses_an_unmigrated_database_and_names_the_fix(
    environment: pytest.MonkeyPatch,
) -> None:
    for name, value in REQUIRED.items():
        environment.setenv(name, value)

    result = subprocess.run(command("serve"), capture_output=True, text=True, check=False)

    assert result.returncode != 0
    assert "run `strava-ingest db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_mode_refuses_several_web_processes(environment: pytest.MonkeyPatch) -> None:
    # Its broker and worker threads live in the one process (service/cli/run.py `serve`).
    for name, value in REQUIRED.items():
        environment.setenv(name, value)
    subprocess.run(command("db", "upgrade"), capture_output=True, check=True)

    result = subprocess.run(
        command("serve", "--workers", "2"), capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "embedded mode runs in one process" in result.stderr
    assert "Traceback" not in result.stderr


def test_parameter_objects_built_without_settings_agree_with_the_default_settings(
    environment: pytest.MonkeyPatch,
) -> None:
    from service.ingest.policy import HydrationPolicy
    from service.ingest.sync import SyncOptions
    from service.strava.quota import QuotaConfig

    for name, value in REQUIRED.items():
        environment.setenv(name, value)
    settings = load_settings(Settings)

    assert SyncOptions() == SyncOptions.from_settings(settings)
    assert HydrationPolicy() == HydrationPolicy.from_settings(settings)
    defaults = QuotaConfig()
    configured = QuotaConfig.from_settings(settings)
    assert (defaults.window_seconds, defaults.day_seconds) == (
        configured.window_seconds,
        configured.day_seconds,
    )
    assert (defaults.limit, defaults.read_limit, defaults.safety_margin) == (
        configured.limit,
        configured.read_limit,
        configured.safety_margin,
    )
    assert defaults.shares == configured.shares
