"""Logging in to the operator page from a test client, and reading what its pages hold."""

from __future__ import annotations

import re

from starlette.testclient import TestClient
from support import ADMIN_KEY

# The page's own origin as a browser sends it with a form post.
ORIGIN = {"origin": "http://testserver"}

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def log_in(client: TestClient) -> str:
    """Log the client in with the admin key; the CSRF token the overview's forms carry."""
    response = client.post("/admin/login", data={"key": ADMIN_KEY}, headers=ORIGIN)
    assert response.status_code == 200, response.text
    assert response.url.path == "/admin"
    return csrf_of(response.text)


def csrf_of(html: str) -> str:
    tokens = set(_CSRF.findall(html))
    assert len(tokens) == 1, f"expected one CSRF token in the page, found {tokens}"
    return tokens.pop()


def count_in_row(html: str, attribute: str, value: str) -> int:
    """The number in the `num` cell of the table row marked `attribute="value"`."""
    found = re.search(rf'<tr {attribute}="{value}">.*?<td class="num">([\d,]+)</td>', html, re.S)
    assert found is not None, f"no row {attribute}={value!r}"
    return int(found.group(1).replace(",", ""))
