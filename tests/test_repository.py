"""The repository stands on its own: no tracked file names a place on someone's machine or a
document outside the repository, and names say what things are, not which piece of work
brought them.

The patterns are built so that this file does not match them itself.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Folders that are never part of the repository when the tree is walked without git.
UNTRACKED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "node_modules",
    "build",
    "dist",
}

RULES: list[tuple[str, re.Pattern[str]]] = [
    # An absolute path into a home or work folder. Not inside a URL (a host or a path segment
    # precedes the slash there), and not /tmp, /etc or /var, which are the same on every host.
    ("absolute path of a machine", re.compile(r"(?<![\w.~/-])/(?:work|home|root|Users)/")),
    ("absolute Windows path", re.compile(r"(?<![\w\\])[A-Za-z]:\\\\?[\w.-]")),
    # Documents and folders that live beside the repository, not in it.
    ("folder outside the repository", re.compile(r"\.\./shared\b|\bstrava-fixtures\b")),
    ("document outside the repository", re.compile(r"\bstrava-api\.md\b|\bDESIGN\.md\b")),
    # A tracker entry's number, joined by a space, "_", "-" or "#" (or nothing), in any case:
    # a number is not a name. Addresses such as https://github.com/o/r/issues/38 stay allowed.
    ("process word", re.compile(r"issues?[ _-]?#?\d", re.IGNORECASE)),
]


def tracked_files(root: Path = ROOT, *, use_git: bool = True) -> list[Path]:
    """The repository's files, relative to ``root``: what git tracks, or, where git or the
    .git folder is missing (an exported tarball), every file outside UNTRACKED_DIRS."""
    if use_git and (root / ".git").exists():
        try:
            listed = subprocess.run(
                ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            pass
        else:
            names = [name for name in listed.decode().split("\0") if name]
            return sorted(Path(name) for name in names if (root / name).is_file())
    return sorted(_walk(root, root))


def _walk(root: Path, folder: Path) -> Iterator[Path]:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            if entry.name not in UNTRACKED_DIRS and not entry.name.endswith(".egg-info"):
                yield from _walk(root, entry)
        elif entry.is_file():
            yield entry.relative_to(root)


def text_lines(path: Path) -> list[str] | None:
    """The file's lines, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def violations(name: str, lines: list[str]) -> list[str]:
    """Every rule broken by a file's name or by one of its lines, as ``path:line: rule``."""
    found = [f"{name}: {rule} in the file name" for rule, p in RULES if p.search(name)]
    for number, line in enumerate(lines, start=1):
        for rule, pattern in RULES:
            if pattern.search(line):
                found.append(f"{name}:{number}: {rule}: {line.strip()[:120]}")
    return found


def test_no_tracked_file_names_a_machine_path_an_outside_document_or_a_tracker_number() -> None:
    found: list[str] = []
    for path in tracked_files():
        lines = text_lines(ROOT / path)
        found.extend(violations(path.as_posix(), lines or []))
    assert not found, "\n".join(found)


def test_every_section_cited_exists_in_docs_strava_md() -> None:
    # Code, tests and docs cite docs/strava.md by section ("§4.1", "§7 question 2").
    text = (ROOT / "docs" / "strava.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE))
    open_questions = text.split("## 7.", 1)[1]
    questions = set(re.findall(r"^(\d+)\. ", open_questions, re.MULTILINE))
    missing: list[str] = []
    for path in tracked_files():
        for number, line in enumerate(text_lines(ROOT / path) or [], start=1):
            for section in re.findall(r"§(\d+(?:\.\d+)?)", line):
                if section not in sections:
                    missing.append(f"{path.as_posix()}:{number}: §{section}")
            for question in re.findall(r"§7 question (\d+)", line):
                if question not in questions:
                    missing.append(f"{path.as_posix()}:{number}: §7 question {question}")
    assert not missing, "\n".join(missing)


def test_the_walk_without_git_finds_the_sources_and_skips_the_virtualenv() -> None:
    walked = {path.as_posix() for path in tracked_files(use_git=False)}

    assert "tests/test_repository.py" in walked
    assert "service/config.py" in walked
    assert not any(name.startswith((".venv/", ".git/")) for name in walked)


def _joined(*parts: str) -> str:
    # Examples are assembled at run time so that this file's own text stays clean.
    return "".join(parts)


@pytest.mark.parametrize(
    "line",
    [
        _joined("FIXTURES = Path('/wo", "rk/shared/x')"),
        _joined("cd /ho", "me/alice/strava-ingest"),
        _joined("`/Us", "ers/bob/src`"),
        _joined("C:", "\\", "Users\\carol"),
        _joined("see ../sha", "red/notes"),
        _joined("as strava-api", ".md §4.1 says"),
        _joined("(DESIGN", ".md, two phases)"),
        _joined("webhook trust (iss", "ue 5)"),
        _joined("sync_jobs_iss", "ue_4.py"),
        _joined("Iss", "ue #12 asks for"),
        _joined("iss", "ue-7"),
    ],
)
def test_each_forbidden_form_is_caught(line: str) -> None:
    assert violations("example.py", [line])


@pytest.mark.parametrize(
    "line",
    [
        "(https://github.com/dblock/slack-strava/issues/38, 2018)",
        _joined("https://example.com/home/page and https://example.com/wo", "rk/x"),
        "tmp_path / 'db.sqlite' and /tmp/scclone and /var/lib/redis",
        _joined("~/wo", "rk/notes is a home-relative path"),
        "docs/strava.md §4.1",
        "an issue with the broker",
        "re.compile(r'\\d+')",
    ],
)
def test_legitimate_text_is_not_flagged(line: str) -> None:
    assert violations("example.py", [line]) == []
