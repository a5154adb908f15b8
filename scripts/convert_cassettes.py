#!/usr/bin/env python3
"""Convert Ruby VCR cassettes (as recorded by dblock/strava-ruby-client) into vcrpy cassettes.

Ruby VCR writes ``http_interactions`` with lower-case methods and ``recorded_at`` per
interaction; vcrpy reads ``interactions`` + ``version: 1``. Bodies, headers (names, casing and
order), statuses and URIs are copied as recorded: the point of these cassettes is that they are
Strava's real answers. Where each interaction came from is kept in the cassette's ``metadata``
(which vcrpy loads and leaves alone).

Examples, with RUBY_CLIENT a checkout of https://github.com/dblock/strava-ruby-client:
    scripts/convert_cassettes.py "$RUBY_CLIENT/spec/fixtures/strava" tests/cassettes
    scripts/convert_cassettes.py "$RUBY_CLIENT/spec/fixtures/strava/client/activity.yml" \
        tests/cassettes/client
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

RUBY_SUFFIXES = (".yml", ".yaml")


def convert_interaction(interaction: dict[str, Any]) -> dict[str, Any]:
    """One Ruby VCR interaction as a vcrpy interaction."""
    request = interaction["request"]
    response = interaction["response"]
    return {
        "request": {
            "method": str(request["method"]).upper(),
            "uri": request["uri"],
            "body": _body_text(request.get("body")),
            "headers": _headers(request.get("headers")),
        },
        "response": {
            "status": {
                "code": int(response["status"]["code"]),
                "message": response["status"].get("message") or "",
            },
            "headers": _headers(response.get("headers")),
            "body": {"string": _body_text(response.get("body"))},
        },
    }


def convert_cassette(ruby: dict[str, Any], source: str) -> dict[str, Any]:
    """A whole Ruby cassette as a vcrpy cassette, with its provenance in ``metadata``."""
    interactions = ruby.get("http_interactions") or []
    return {
        "interactions": [convert_interaction(item) for item in interactions],
        "version": 1,
        "metadata": {
            "source": source,
            "recorded_at": [str(item.get("recorded_at", "")) for item in interactions],
            "recorded_with": str(ruby.get("recorded_with", "")),
            "converted_by": "scripts/convert_cassettes.py",
        },
    }


def _body_text(body: Any) -> str:
    # Ruby tags binary-safe bodies "ASCII-8BIT"; Strava's are UTF-8 JSON, so text is kept as is.
    if body is None:
        return ""
    value = body.get("string", "") if isinstance(body, dict) else body
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return "" if value is None else str(value)


def _headers(headers: Any) -> dict[str, list[str]]:
    if not headers:
        return {}
    return {str(name): [str(value) for value in values] for name, values in headers.items()}


def convert_file(source: Path, target: Path, provenance: str) -> None:
    ruby = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(ruby, dict) or "http_interactions" not in ruby:
        raise ValueError(f"{source} is not a Ruby VCR cassette (no http_interactions)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        yaml.safe_dump(
            convert_cassette(ruby, provenance),
            sort_keys=False,
            allow_unicode=True,
            width=100,
        ),
        encoding="utf-8",
    )


def _sources(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(path for path in root.rglob("*") if path.suffix in RUBY_SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "A directory is converted recursively, keeping its sub-folders "
            "(client/, oauth/, webhooks/). Output files are .yaml."
        ),
    )
    parser.add_argument("source", type=Path, help="a Ruby VCR .yml file or a folder of them")
    parser.add_argument("target", type=Path, help="the folder to write vcrpy cassettes into")
    parser.add_argument(
        "--origin",
        default="dblock/strava-ruby-client@ca6ae632df31:spec/fixtures/strava",
        help="recorded in each cassette's metadata.source, followed by the relative path "
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)

    source_root: Path = args.source
    if not source_root.exists():
        parser.error(f"{source_root} does not exist")
    base = source_root.parent if source_root.is_file() else source_root
    for source in _sources(source_root):
        relative = source.relative_to(base)
        target = (args.target / relative).with_suffix(".yaml")
        convert_file(source, target, f"{args.origin}/{relative.as_posix()}")
        print(f"{source} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
