"""Settings: the one place where environment variables (and an optional .env) are read.

The defaults give the embedded mode (SQLite and an in-process broker, one process);
a `postgresql+psycopg://` DATABASE_URL and a `redis://` BROKER_URL give production mode.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated, TypeVar

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """A setting is missing or malformed; the message names every offending variable."""


class Mode(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


_DATABASE_SCHEMES = ("sqlite://", "postgresql+psycopg://")
_BROKER_SCHEMES = ("memory://", "redis://", "rediss://")


class DatabaseSettings(BaseSettings):
    """What commands that only touch the database (migrations) need."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./strava_ingest.db"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(_DATABASE_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_DATABASE_SCHEMES)}")
        return value


class Settings(DatabaseSettings):
    """Everything the web app, the workers and the CLI need."""

    broker_url: str = "memory://"
    strava_client_id: Annotated[int, Field(gt=0)]
    strava_client_secret: SecretStr
    strava_verify_token: SecretStr
    strava_api_url: str = "https://www.strava.com/api/v3"
    strava_oauth_url: str = "https://www.strava.com/oauth"
    webhook_path: str = "/webhooks/strava"
    # One or more Fernet keys, comma-separated; the first encrypts, all decrypt (rotation).
    token_key: SecretStr

    oauth_scopes: str = "read,activity:read_all"
    # Where Strava sends the athlete back after authorizing; derived from the request if unset.
    public_url: str | None = None
    # Refresh an access token that expires sooner than this (strava-api.md §3.3).
    token_refresh_margin_seconds: Annotated[int, Field(ge=0)] = 300
    strava_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # The relay re-sends inbox rows that stayed `received` longer than this.
    relay_after_seconds: Annotated[float, Field(ge=0)] = 10.0
    relay_interval_seconds: Annotated[float, Field(gt=0)] = 15.0
    worker_threads: Annotated[int, Field(gt=0)] = 4
    log_level: str = "INFO"

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(_BROKER_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_BROKER_SCHEMES)}")
        return value

    @field_validator("webhook_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value.rstrip("/") or "/"

    @field_validator("token_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        if not keys:
            raise ValueError("must hold at least one Fernet key")
        for key in keys:
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    "each key must be 32 url-safe base64-encoded bytes "
                    "(generate one with `strava-ingest keygen`)"
                ) from None
        return value

    @field_validator("strava_api_url", "strava_oauth_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @cached_property
    def mode(self) -> Mode:
        embedded = self.database_url.startswith("sqlite") and self.broker_url == "memory://"
        return Mode.EMBEDDED if embedded else Mode.PRODUCTION

    @property
    def scopes(self) -> list[str]:
        return [s.strip() for s in self.oauth_scopes.split(",") if s.strip()]


S = TypeVar("S", bound=DatabaseSettings)


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's error into one line per variable, named as the user sets it."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        reason = "is required" if item["type"] == "missing" else item["msg"]
        lines.append(f"{name}: {reason}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(cls: type[S]) -> S:
    """Read settings from the environment, raising ConfigError that names what is wrong."""
    try:
        return cls()
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None
