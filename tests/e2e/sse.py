"""A Server-Sent Events reader for the tests: what a browser's EventSource would see."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    """One dispatched event."""

    id: str | None
    name: str | None
    data: str

    @property
    def state(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


@dataclass(frozen=True)
class Comment:
    """A comment line (a heartbeat)."""

    text: str


def read_stream(
    url: str, headers: dict[str, str], *, timeout: float = 30.0
) -> Iterator[Event | Comment]:
    """The stream's events and comments in order, until the server ends it. A read that
    waits longer than `timeout` raises httpx.ReadTimeout."""
    limits = httpx.Timeout(10.0, read=timeout)
    with httpx.stream("GET", url, headers=headers, timeout=limits) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in response.iter_lines():
            if line == "":
                if data:
                    yield Event(fields.get("id"), fields.get("event"), "\n".join(data))
                fields, data = {}, []
                continue
            if line.startswith(":"):
                yield Comment(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def id_key(event_id: str) -> tuple[int, int]:
    millis, sequence = event_id.split("-")
    return int(millis), int(sequence)
