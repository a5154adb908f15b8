"""`.env.example` documents every setting of service/config.py's Settings, with its default,
and nothing Settings does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from service.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
# `NAME=value`, or commented out as `# NAME=value`.
SETTING_LINE = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
REQUIRED = {"STRAVA_CLIENT_ID": "1", "STRAVA_CLIENT_SECRET": "s", "STRAVA_VERIFY_TOKEN": "v"}


def documented() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    found = [m.groups() for m in map(SETTING_LINE.match, lines) if m is not None]
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f".env.example names these settings more than once: {duplicates}"
    return dict(found)


def settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_every_setting_is_in_the_env_example() -> None:
    missing = sorted(settings_names() - set(documented()))
    assert not missing, f"settings missing from .env.example (add each with its default): {missing}"


def test_the_env_example_names_no_setting_that_does_not_exist() -> None:
    unknown = sorted(set(documented()) - settings_names())
    assert not unknown, f".env.example names settings that Settings does not have: {unknown}"


def test_the_env_example_shows_each_default(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = documented()
    for name in settings_names():
        monkeypatch.delenv(name, raising=False)
    fields = {name.upper(): field for name, field in Settings.model_fields.items()}
    required = sorted(name for name, field in fields.items() if field.is_required())
    for name in required:
        assert shown[name] == "", f".env.example gives required {name} a value: leave it empty"
    for name, field in fields.items():
        if field.default is None:
            assert shown[name] == "", f"{name} has no default: .env.example should show it empty"
        elif name not in required:
            monkeypatch.setenv(name, shown[name])
    monkeypatch.setenv("TOKEN_KEY", "A" * 43 + "=")
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)

    loaded = Settings(_env_file=None)  # type: ignore[call-arg]

    wrong = {
        name: (shown[name], field.default)
        for name, field in fields.items()
        if field.default is not PydanticUndefined and getattr(loaded, name.lower()) != field.default
    }
    assert not wrong, (
        f".env.example shows values that are not the defaults (shown, default): {wrong}"
    )
