"""What `pip install` gives: every imported package declared, the lock installed exactly and
consistent with pyproject.toml, the migrations inside the wheel, the version on the command
line."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.db import migrations_dir

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
FIRST_PARTY = {"service", "workers", "migrations"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(requirements: list[str]) -> dict[str, Requirement]:
    parsed = [Requirement(line) for line in requirements]
    return {canonicalize_name(r.name): r for r in parsed}


def locked_pins() -> dict[str, str]:
    """name -> version of every pin in requirements.lock that applies to this interpreter."""
    text = LOCK.read_text().replace("\\\n", " ")
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        line = " ".join(part for part in line.split() if not part.startswith("--hash="))
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"requirements.lock does not pin {line!r} exactly"
        if requirement.marker is None or requirement.marker.evaluate():
            pins[canonicalize_name(requirement.name)] = specifier.version
    assert pins, f"no pinned versions read from {LOCK}"
    return pins


def imported_top_level(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_the_service_imports_is_a_declared_dependency() -> None:
    imported = set().union(*(imported_top_level(ROOT / d) for d in ("service", "workers")))
    imported |= imported_top_level(ROOT / "migrations")
    third_party = imported - set(sys.stdlib_module_names) - FIRST_PARTY - {"__future__"}
    providers = packages_distributions()
    unknown = sorted(name for name in third_party if name not in providers)
    assert not unknown, f"imported but not installed by any distribution: {unknown}"
    needed = {canonicalize_name(providers[name][0]): name for name in third_party}
    missing = sorted(f"{dist} (import {module})" for dist, module in needed.items()
                     if dist not in declared(PROJECT["dependencies"]))  # fmt: skip
    assert not missing, f"imported by service/, workers/ or migrations/ but not declared: {missing}"


def test_the_installed_versions_are_the_locked_ones() -> None:
    different = {}
    for name, pinned in locked_pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            different[name] = (installed, pinned)
    assert not different, (
        f"installed versions differ from requirements.lock (installed, locked): {different}; "
        "scripts/_bootstrap.sh re-installs when the lock changes"
    )


def test_the_lock_satisfies_every_requirement_of_pyproject() -> None:
    pins = locked_pins()
    requirements = declared(PROJECT["dependencies"]) | declared(
        PROJECT["optional-dependencies"]["dev"]
    )
    unmet = {
        name: (str(req.specifier), pins.get(name, "not locked"))
        for name, req in requirements.items()
        if (req.marker is None or req.marker.evaluate())
        and (name not in pins or pins[name] not in req.specifier)
    }
    assert not unmet, f"requirements.lock is stale (wanted, locked): {unmet}; run scripts/lock"


def test_dev_tools_are_pinned_exactly_and_runtime_majors_bounded() -> None:
    loose = [r for r in PROJECT["optional-dependencies"]["dev"] if "==" not in r]
    assert not loose, f"dev tools not pinned exactly in pyproject.toml: {loose}"
    unbounded = [
        name
        for name, req in declared(PROJECT["dependencies"]).items()
        if name != "cryptography" and not any(s.operator == "<" for s in req.specifier)
    ]
    assert not unbounded, f"runtime dependencies without an upper bound: {unbounded}"


def test_the_migrations_are_found_through_the_package() -> None:
    found = migrations_dir()
    assert (found / "env.py").is_file()
    assert (found / "script.py.mako").is_file()
    assert {p.name for p in (found / "versions").glob("*.py")} == {
        p.name for p in (ROOT / "migrations" / "versions").glob("*.py")
    }


def test_the_wheel_ships_the_migrations_inside_the_service_package(tmp_path: Path) -> None:
    # The wheel smoke check's own build and check (CI runs the whole check from the wheel).
    spec = importlib.util.spec_from_file_location("smoke_wheel", ROOT / "scripts/smoke_wheel.py")
    assert spec is not None
    assert spec.loader is not None
    smoke_wheel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke_wheel)

    wheel = smoke_wheel.build_wheel(tmp_path)

    smoke_wheel.check_contents(wheel)  # raises SmokeFailed naming what is missing
    names = zipfile.ZipFile(wheel).namelist()
    assert len([n for n in names if n.startswith("service/migrations/versions/")]) == len(
        list((ROOT / "migrations" / "versions").glob("*.py"))
    )


def test_the_version_option_reports_the_installed_distribution() -> None:
    expected = f"strava-ingest, version {version('strava-ingest')}"
    cli = Path(sys.executable).with_name("strava-ingest")
    for command in ([str(cli), "--version"], [sys.executable, "-m", "service", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        assert done.stdout.strip() == expected, command
