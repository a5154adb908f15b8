"""Starting the service's own processes locally, exactly as the Procfile does, for the demo,
the end-to-end tests and the benchmarks; and waiting on conditions with a deadline."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx


class DeadlineExceeded(Exception):
    """A condition did not come true in time."""


def wait_until(
    condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05
) -> object:
    """Poll `condition` until it returns something truthy; raise when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def command(*args: str) -> list[str]:
    """The `strava-ingest` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("strava-ingest")
    return [str(script) if script.exists() else shutil.which("strava-ingest") or "", *args]


@contextmanager
def running(
    args: list[str],
    *,
    env: Mapping[str, str],
    log_file: Path,
    cwd: Path | None = None,
    ready: Callable[[], bool] | None = None,
    timeout: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a process for the duration of the block, its output going to `log_file`;
    with `ready`, wait until it is ready (failing early, with its log, if it exits)."""
    log: IO[bytes] = log_file.open("ab")
    process = subprocess.Popen(
        args,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that stopping it also stops its children (dramatiq forks)
    )
    try:
        if ready is not None:

            def up() -> bool:
                if process.poll() is not None:
                    tail = log_file.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{tail}")
                return ready()

            wait_until(up, timeout=timeout, what=" ".join(args[:2]))
        yield process
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
