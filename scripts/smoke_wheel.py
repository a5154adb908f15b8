"""The wheel smoke check: what a user gets from `pip install strava-ingest-*.whl` works.

1. Builds the wheel from a copy of the source tree (so nothing stale from an earlier build in
   the checkout ends up in it), with the locked setuptools of this virtualenv, no downloads,
   and checks that it holds every migration.
2. Installs it into a fresh virtualenv in a temporary folder, without extras, its
   dependencies held to requirements.lock's versions.
3. From a folder outside the source tree (so the checkout cannot be imported by accident)
   and with no setting inherited from this shell: `strava-ingest --version`,
   `python -m service --version`, `strava-ingest db upgrade` on a fresh SQLite file, then
   `strava-ingest serve` in embedded mode on a free port until GET /healthz answers 200;
   its GET /openapi.json must carry the package's version, and GET /admin/login must answer
   the operator page's login form (rendered from the templates the wheel ships).

Exits non-zero, saying which step failed and with the process's output, otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

import httpx
from launch import answers, free_port, running

from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# Not part of the distribution (and .env may hold credentials): the copy the wheel is built
# from leaves these out.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".env", "tests", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
    "*.db", "*.db-*",
)  # fmt: skip
HEALTHZ_DEADLINE = 60.0


class SmokeFailed(Exception):
    """A step failed; the message says which and what it printed."""


def run(args: list[str], *, cwd: Path) -> str:
    print("$", " ".join(args), flush=True)
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SmokeFailed(
            f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def locked_constraints(lock: Path, target: Path) -> Path:
    """The lock's `name==version ; marker` lines without hashes: pip takes hashes only in
    requirements, and the wheel's own dependencies are the requirements here."""
    text = lock.read_text().replace("\\\n", " ")
    pins = []
    for line in text.splitlines():
        line = re.sub(r"--hash=\S+", "", line.split("#", 1)[0]).strip()
        if line:
            pins.append(line)
    if not pins:
        raise SmokeFailed(f"no pinned versions in {lock}")
    target.write_text("\n".join(pins) + "\n")
    return target


def build_wheel(work: Path) -> Path:
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = work / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(source)],
        cwd=work,
    )  # fmt: skip
    wheels = list(dist.glob("strava_ingest-*.whl"))
    if len(wheels) != 1:
        raise SmokeFailed(f"expected one wheel in {dist}, found {wheels}")
    return wheels[0]


def check_contents(wheel: Path) -> None:
    """Every migration of the source tree inside the `service` package, every template of the
    operator page, a licence, and no top-level `migrations` package (alembic would not miss a
    newest revision left out: the installed copy would just take an older head for the
    newest)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = (ROOT / "migrations" / "versions").glob("*.py")
    expected = {"service/migrations/env.py", "service/migrations/script.py.mako"}
    expected |= {f"service/migrations/versions/{path.name}" for path in versions}
    expected |= {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "service" / "web" / "templates").rglob("*")
        if path.is_file()
    }
    problems = [f"missing {name}" for name in sorted(expected - names)]
    problems += [f"top-level {name}" for name in sorted(names) if name.startswith("migrations/")]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        problems.append("no LICENSE")
    if problems:
        raise SmokeFailed(f"{wheel.name}: " + "; ".join(problems))


def install(wheel: Path, work: Path) -> Path:
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    constraints = locked_constraints(LOCK, work / "constraints.txt")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--constraint", str(constraints)]
    run([*pip, "pip"], cwd=work)
    run([*pip, str(wheel)], cwd=work)
    return venv


def clean_environment(work: Path) -> dict[str, str]:
    """This shell's environment without any setting of the service (nor a path that could
    lead to the checkout), plus the embedded mode's required settings as test values."""
    setting_names = {name.upper() for name in Settings.model_fields}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in setting_names and key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env.update(
        DATABASE_URL=f"sqlite:///{work / 'run' / 'smoke.db'}",
        STRAVA_CLIENT_ID="1",
        STRAVA_CLIENT_SECRET="smoke-client-secret",  # noqa: S106 - a test value
        STRAVA_VERIFY_TOKEN="smoke-verify-token",  # noqa: S106 - a test value
        # Opens the operator page, whose login form is rendered from the wheel's templates.
        ADMIN_API_KEYS="smoke-admin-key-0123456789",
    )
    return env


def smoke(work: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel = build_wheel(work)
    check_contents(wheel)
    venv = install(wheel, work)
    bin_dir = venv / "bin"
    python, cli = str(bin_dir / "python"), str(bin_dir / "strava-ingest")
    here = work / "run"
    here.mkdir()
    env = clean_environment(work)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # From here on this process's environment is the clean one: `running` starts the server
    # from it.
    os.environ.clear()
    os.environ.update(env)

    where = run([python, "-c", "import service; print(service.__file__)"], cwd=here).strip()
    if not where.startswith(str(venv)):
        raise SmokeFailed(f"the service package was imported from {where}, not the wheel")
    for args in ([cli, "--version"], [python, "-m", "service", "--version"]):
        printed = run(args, cwd=here)
        if version not in printed:
            raise SmokeFailed(f"{' '.join(args)} printed {printed!r}, not version {version}")
    os.environ["TOKEN_KEY"] = run([cli, "keygen"], cwd=here).strip()
    run([cli, "db", "upgrade"], cwd=here)
    if not (here / "smoke.db").exists():
        raise SmokeFailed("`strava-ingest db upgrade` created no database file")

    port = free_port()
    healthz = f"http://127.0.0.1:{port}/healthz"
    print(f"$ {cli} serve --port {port}   (until {healthz} answers 200)", flush=True)
    try:
        with running(
            [cli, "serve", "--port", str(port)],
            env={},
            log_file=work / "serve.log",
            cwd=here,
            ready=lambda: answers(healthz),
            timeout=HEALTHZ_DEADLINE,
        ):
            print(f"GET {healthz} -> 200", flush=True)
            described = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()
            print(f"GET /openapi.json -> info.version {described['info']['version']}", flush=True)
            if described["info"]["version"] != version:
                raise SmokeFailed(f"/openapi.json gives version {described['info']['version']}")
            login = httpx.get(f"http://127.0.0.1:{port}/admin/login", timeout=10)
            print(f"GET /admin/login -> {login.status_code}", flush=True)
            if login.status_code != 200 or 'action="/admin/login"' not in login.text:
                raise SmokeFailed(f"/admin/login answered {login.status_code}: {login.text[:500]}")
    except SmokeFailed:
        raise
    except Exception as error:
        log = (work / "serve.log").read_text(errors="replace")[-3000:]
        raise SmokeFailed(f"`strava-ingest serve` did not become healthy: {error}\n{log}") from None


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/smoke_wheel",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Builds and installs into a temporary folder, removed afterwards.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (wheel, venv, logs)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="strava-ingest-wheel-"))
    try:
        smoke(work)
    except SmokeFailed as error:
        print(f"wheel smoke check FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("wheel smoke check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
