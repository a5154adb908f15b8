"""Importing the worker modules only defines things: reading the settings, connecting and
declaring the actors wait for the worker's start-up (workers.main.start, setup_workers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter with an empty environment: it records every connection the
# imports open (TCP and PostgreSQL), then tells whether a broker exists and what an actor
# does when called before the start-up.
PROBE = r"""
import json
import socket

import psycopg

opened = []
tcp_connect = socket.socket.connect
pg_connect = psycopg.Connection.connect.__func__


def record_tcp(self, address):
    opened.append(repr(address))
    return tcp_connect(self, address)


def record_pg(cls, *args, **kwargs):
    opened.append("postgresql")
    return pg_connect(cls, *args, **kwargs)


socket.socket.connect = record_tcp
psycopg.Connection.connect = classmethod(record_pg)

import dramatiq.broker

import workers.actors
import workers.main
from workers.runtime import NotStarted

try:
    workers.actors.process_event(1)
    actor_before_start = "ran"
except NotStarted as error:
    actor_before_start = str(error)
print(json.dumps({
    "opened": opened,
    "broker_created": dramatiq.broker.global_broker is not None,
    "actor_before_start": actor_before_start,
}))
"""


def test_importing_the_worker_modules_reads_no_settings_and_opens_nothing(
    tmp_path: Path,
) -> None:
    # Without settings, reading them exits (TOKEN_KEY etc. are required): a clean exit and
    # the report below show the imports never read them.
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["opened"] == []
    assert report["broker_created"] is False
    # An actor called before the start-up says so, and how to start the workers.
    assert "not set up" in report["actor_before_start"]
    assert "workers.main:start" in report["actor_before_start"]
