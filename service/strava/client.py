"""HTTP clients for the parts of the Strava API this service uses.

Every endpoint is described once, as a small ``_Call`` (method, URL, parameters, how to parse
the answer) built by ``_Calls``. ``StravaClient`` (sync, for workers and the CLI) and
``AsyncStravaClient`` (for the web app) differ only in how they send it; building requests and
interpreting responses is shared, so both behave identically.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from service.strava.errors import StravaError, Transient, UnexpectedResponse, error_for_response
from service.strava.ratelimit import EMPTY_SNAPSHOT, RateLimitSnapshot, parse_rate_limit_headers
from service.strava.schemas import (
    DetailedActivity,
    DetailedAthlete,
    Lap,
    Stream,
    Subscription,
    SummaryActivity,
    TokenResponse,
)
from service.version import DISTRIBUTION, package_version

T = TypeVar("T")

RequestKind = Literal["read", "write", "oauth"]
"""How a request spends quota, for the quota scheduler.

``read``: a GET on the API. ``write``: any other API call (push subscriptions); Strava still
counts it as "non-upload", so it uses both buckets like a read (docs/strava.md §2.1).
``oauth``: ``/oauth/*``; token calls carry no rate-limit headers and may not count (§2.2).
"""

MAX_PER_PAGE = 200  # docs/strava.md §4.1


USER_AGENT = f"{DISTRIBUTION}/{package_version()}"


@dataclass(frozen=True)
class Result(Generic[T]):
    """A successful answer from Strava.

    Parameters:
        data: the typed view of the body.
        raw: the parsed JSON exactly as Strava sent it (``None`` for an empty body); store this,
            since the typed view is lenient but not exhaustive (docs/strava.md §4.4).
        rate_limit: the response's rate-limit headers.
        status_code: the HTTP status (200, 201 or 204).
        text: the body as received, for storing ``raw`` without encoding it again.
    """

    data: T
    raw: Any = field(repr=False)  # token responses hold credentials
    rate_limit: RateLimitSnapshot
    status_code: int
    text: str = field(default="", repr=False)


@dataclass(frozen=True)
class RequestInfo:
    """What hooks learn about a request: never its URL, parameters or credentials.

    Parameters:
        operation: the client method, e.g. ``"get_activity"``.
        kind: how it spends quota, see ``RequestKind``.
        method: the HTTP method.
        endpoint: the path template, ids as ``{id}`` (``/activities/{id}``): what metrics
            label a call with, so that no id becomes a label value. Empty when not given.
    """

    operation: str
    kind: RequestKind
    method: str
    endpoint: str = ""


class RequestHooks(Protocol):
    """The seam for a quota scheduler: it sees every request the client sends.

    ``before_request`` runs before anything is sent; raising from it cancels the request (the
    exception propagates to the caller). ``after_response`` runs once per attempt, with the
    status and rate-limit headers of the response, or with ``None`` and an empty snapshot
    when no response arrived (timeout, connection error), before the result or the error is
    handed back.
    """

    def before_request(self, request: RequestInfo) -> None: ...

    def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> None: ...


class AsyncRequestHooks(Protocol):
    """``RequestHooks`` for ``AsyncStravaClient``: each method may be sync or ``async``."""

    def before_request(self, request: RequestInfo) -> Awaitable[None] | None: ...

    def after_response(
        self, request: RequestInfo, status_code: int | None, rate_limit: RateLimitSnapshot
    ) -> Awaitable[None] | None: ...


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request to Strava, independent of how it is sent, and how to read its answer."""

    info: RequestInfo
    url: str
    parse: Callable[[Any], T]
    params: Mapping[str, str | int] | None = None
    form: Mapping[str, str | int] | None = None
    access_token: str | None = None
    ignore_body: bool = False  # 204s and acknowledgements: any body is kept in raw only


def _ignore(_raw: Any) -> None:
    return None


# Built once at import: pydantic compiles a validator per adapter.
_parse_token: Callable[[Any], TokenResponse] = TypeAdapter(TokenResponse).validate_python
_parse_athlete: Callable[[Any], DetailedAthlete] = TypeAdapter(DetailedAthlete).validate_python
_parse_activities: Callable[[Any], list[SummaryActivity]] = TypeAdapter(
    list[SummaryActivity]
).validate_python
_parse_activity: Callable[[Any], DetailedActivity] = TypeAdapter(DetailedActivity).validate_python
_parse_laps: Callable[[Any], list[Lap]] = TypeAdapter(list[Lap]).validate_python
_parse_streams: Callable[[Any], dict[str, Stream]] = TypeAdapter(dict[str, Stream]).validate_python
_parse_subscription: Callable[[Any], Subscription] = TypeAdapter(Subscription).validate_python
_parse_subscriptions: Callable[[Any], list[Subscription]] = TypeAdapter(
    list[Subscription]
).validate_python


class _Calls:
    """Builds every ``_Call``; the single description of Strava's endpoints."""

    def __init__(self, *, api_url: str, oauth_url: str, client_id: int, client_secret: str):
        # Both forms of base URL are accepted; paths below always start with "/".
        self._api_url = api_url.rstrip("/")
        self._oauth_url = oauth_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret

    def _app_credentials(self) -> dict[str, str | int]:
        return {"client_id": self._client_id, "client_secret": self._client_secret}

    def exchange_code(self, code: str) -> _Call[TokenResponse]:
        # docs/strava.md §3.2: form-encoded POST to /oauth/token.
        form = {**self._app_credentials(), "code": code, "grant_type": "authorization_code"}
        return _Call(
            info=RequestInfo("exchange_code", "oauth", "POST", "/oauth/token"),
            url=f"{self._oauth_url}/token",
            form=form,
            parse=_parse_token,
        )

    def refresh_token(self, refresh_token: str) -> _Call[TokenResponse]:
        # docs/strava.md §3.3: the answer may carry a new refresh token; the old one then dies.
        form = {
            **self._app_credentials(),
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        return _Call(
            info=RequestInfo("refresh_token", "oauth", "POST", "/oauth/token"),
            url=f"{self._oauth_url}/token",
            form=form,
            parse=_parse_token,
        )

    def deauthorize(self, access_token: str) -> _Call[None]:
        # docs/strava.md §3.4: the Bearer header is enough; the answer echoes the token.
        return _Call(
            info=RequestInfo("deauthorize", "oauth", "POST", "/oauth/deauthorize"),
            url=f"{self._oauth_url}/deauthorize",
            access_token=access_token,
            parse=_ignore,
            ignore_body=True,
        )

    def get_athlete(self, access_token: str) -> _Call[DetailedAthlete]:
        return _Call(
            info=RequestInfo("get_athlete", "read", "GET", "/athlete"),
            url=f"{self._api_url}/athlete",
            access_token=access_token,
            parse=_parse_athlete,
        )

    def list_activities(
        self, access_token: str, *, before: int | None, after: int | None, page: int, per_page: int
    ) -> _Call[list[SummaryActivity]]:
        # docs/strava.md §4.1: page-based; before/after are epoch seconds; per_page <= 200.
        # page and per_page are always sent so a page never depends on Strava's defaults.
        if page < 1:
            raise ValueError("page starts at 1")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}")
        params: dict[str, str | int] = {"page": page, "per_page": per_page}
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        return _Call(
            info=RequestInfo("list_activities", "read", "GET", "/athlete/activities"),
            url=f"{self._api_url}/athlete/activities",
            params=params,
            access_token=access_token,
            parse=_parse_activities,
        )

    def get_activity(self, access_token: str, activity_id: int) -> _Call[DetailedActivity]:
        return _Call(
            info=RequestInfo("get_activity", "read", "GET", "/activities/{id}"),
            url=f"{self._api_url}/activities/{activity_id}",
            access_token=access_token,
            parse=_parse_activity,
        )

    def list_activity_laps(self, access_token: str, activity_id: int) -> _Call[list[Lap]]:
        return _Call(
            info=RequestInfo("list_activity_laps", "read", "GET", "/activities/{id}/laps"),
            url=f"{self._api_url}/activities/{activity_id}/laps",
            access_token=access_token,
            parse=_parse_laps,
        )

    def get_activity_streams(
        self, access_token: str, activity_id: int, keys: Sequence[str] | None
    ) -> _Call[dict[str, Stream]]:
        # docs/strava.md §4.3: key_by_type "Must be true", which turns the answer into an
        # object keyed by stream type; keys is a CSV list with at least one item.
        params: dict[str, str | int] = {}
        if keys is not None:
            if not keys:
                raise ValueError("keys, when given, needs at least one stream type")
            params["keys"] = ",".join(keys)
        params["key_by_type"] = "true"
        return _Call(
            info=RequestInfo("get_activity_streams", "read", "GET", "/activities/{id}/streams"),
            url=f"{self._api_url}/activities/{activity_id}/streams",
            params=params,
            access_token=access_token,
            parse=_parse_streams,
        )

    def create_subscription(self, callback_url: str, verify_token: str) -> _Call[Subscription]:
        # docs/strava.md §1.1-1.2: app credentials, form-encoded. Strava answers only after our
        # callback has answered its validation GET, so that server must already be serving.
        form = {
            "callback_url": callback_url,
            **self._app_credentials(),
            "verify_token": verify_token,
        }
        return _Call(
            info=RequestInfo("create_subscription", "write", "POST", "/push_subscriptions"),
            url=f"{self._api_url}/push_subscriptions",
            form=form,
            parse=_parse_subscription,
        )

    def list_subscriptions(self) -> _Call[list[Subscription]]:
        # docs/strava.md §1.1: the credentials go in the query; the answer is a 0- or 1-item list.
        return _Call(
            info=RequestInfo("list_subscriptions", "read", "GET", "/push_subscriptions"),
            url=f"{self._api_url}/push_subscriptions",
            params=self._app_credentials(),
            parse=_parse_subscriptions,
        )

    def delete_subscription(self, subscription_id: int) -> _Call[None]:
        # docs/strava.md §1.1: 204 No Content, empty body.
        return _Call(
            info=RequestInfo("delete_subscription", "write", "DELETE", "/push_subscriptions/{id}"),
            url=f"{self._api_url}/push_subscriptions/{subscription_id}",
            params=self._app_credentials(),
            parse=_ignore,
            ignore_body=True,
        )


def _build_request(call: _Call[Any], timeout: httpx.Timeout) -> httpx.Request:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if call.access_token is not None:
        headers["Authorization"] = f"Bearer {call.access_token}"
    return httpx.Request(
        call.info.method,
        call.url,
        params=call.params,
        data=call.form,
        headers=headers,
        # httpx applies a client's timeout only to requests it builds itself; set it here.
        extensions={"timeout": timeout.as_dict()},
    )


def _transport_failure(call: _Call[Any], exc: httpx.RequestError) -> StravaError:
    # The class name only: httpx messages are safe today, but the request (URL with the
    # client secret, headers with the token) must never leak through a message.
    what = type(exc).__name__
    if isinstance(exc, httpx.TransportError):
        return Transient(f"{what} during {call.info.operation}")
    return UnexpectedResponse(f"{what} during {call.info.operation}")


def _interpret(
    call: _Call[T], response: httpx.Response, rate_limit: RateLimitSnapshot
) -> Result[T]:
    """Turn a received response into a ``Result`` or raise the matching ``StravaError``."""
    status = response.status_code
    body = response.text
    if not 200 <= status < 300:
        raise error_for_response(status, body, rate_limit, operation=call.info.operation)
    try:
        raw = json.loads(body) if body.strip() else None
    except ValueError:
        if not call.ignore_body:
            raise UnexpectedResponse(
                f"Strava answered {status} to {call.info.operation} with a body that is not JSON",
                status_code=status,
                body=body,
                rate_limit=rate_limit,
            ) from None
        raw = None
    try:
        data = call.parse(raw)
    except ValidationError as exc:
        # Only locations and error types: the input values may be credentials.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['type']}"
            for error in exc.errors()[:5]
        )
        raise UnexpectedResponse(
            f"Strava's answer to {call.info.operation} has an unexpected shape ({problems})",
            status_code=status,
            body=body,
            rate_limit=rate_limit,
        ) from None
    return Result(data=data, raw=raw, rate_limit=rate_limit, status_code=status, text=body)


class _RedactClientSecret(logging.Filter):
    """Hides ``client_secret`` in the URLs that httpx logs at INFO.

    Strava takes the client secret in the query of the push-subscription calls
    (docs/strava.md §1.1) and httpx logs every request URL; logs must never hold secrets.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, httpx.URL) and "client_secret" in arg.params:
        return arg.copy_set_param("client_secret", "[redacted]")
    return arg


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactClientSecret) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactClientSecret())


class StravaClient:
    """Synchronous Strava client (workers, CLI).

    Each method sends one request and returns a ``Result`` with typed data, the raw JSON and
    the rate-limit headers, or raises from the ``service.strava.errors`` tree. There are no
    retries here: whether and when to retry is the caller's (and the quota scheduler's) call.

    Hooks: pass ``hooks`` (a ``RequestHooks``) to see every request. ``before_request`` gets a
    ``RequestInfo`` (operation, kind read/write/oauth, method) before sending and may raise to
    cancel it; ``after_response`` gets the status (``None`` if no response arrived) and the
    ``RateLimitSnapshot`` after each attempt. This is where a quota scheduler reserves budget
    and reconciles its counters with Strava's headers.

    Parameters:
        api_url: e.g. ``https://www.strava.com/api/v3`` (a trailing slash is fine).
        oauth_url: e.g. ``https://www.strava.com/oauth``.
        client_id, client_secret: the application's credentials; sent only in request bodies
            or queries, never in messages or logs.
        timeout: seconds, for connect, read, write and pool alike.
        transport: an httpx transport, e.g. ``httpx.MockTransport`` in tests.
        hooks: optional ``RequestHooks``.
    """

    def __init__(
        self,
        *,
        api_url: str,
        oauth_url: str,
        client_id: int,
        client_secret: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        hooks: RequestHooks | None = None,
    ) -> None:
        self._calls = _Calls(
            api_url=api_url, oauth_url=oauth_url, client_id=client_id, client_secret=client_secret
        )
        self._timeout = httpx.Timeout(timeout)
        self._hooks = hooks
        self._http = httpx.Client(transport=transport, timeout=self._timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: _Call[T]) -> Result[T]:
        if self._hooks is not None:
            self._hooks.before_request(call.info)
        request = _build_request(call, self._timeout)
        try:
            response = self._http.send(request)
        except httpx.RequestError as exc:
            if self._hooks is not None:
                self._hooks.after_response(call.info, None, EMPTY_SNAPSHOT)
            raise _transport_failure(call, exc) from exc
        rate_limit = parse_rate_limit_headers(response.headers)
        if self._hooks is not None:
            self._hooks.after_response(call.info, response.status_code, rate_limit)
        return _interpret(call, response, rate_limit)

    def exchange_code(self, code: str) -> Result[TokenResponse]:
        """Trade an OAuth ``code`` for tokens; the answer includes the athlete (§3.2)."""
        return self._send(self._calls.exchange_code(code))

    def refresh_token(self, refresh_token: str) -> Result[TokenResponse]:
        """New tokens; persist the returned refresh token before using it (§3.3)."""
        return self._send(self._calls.refresh_token(refresh_token))

    def deauthorize(self, access_token: str) -> Result[None]:
        """Revoke every token the application holds for this athlete (§3.4)."""
        return self._send(self._calls.deauthorize(access_token))

    def get_athlete(self, access_token: str) -> Result[DetailedAthlete]:
        return self._send(self._calls.get_athlete(access_token))

    def list_activities(
        self,
        access_token: str,
        *,
        before: int | None = None,
        after: int | None = None,
        page: int = 1,
        per_page: int = 30,
    ) -> Result[list[SummaryActivity]]:
        """One page of the athlete's activities; only an empty page marks the end (§4.1)."""
        return self._send(
            self._calls.list_activities(
                access_token, before=before, after=after, page=page, per_page=per_page
            )
        )

    def get_activity(self, access_token: str, activity_id: int) -> Result[DetailedActivity]:
        return self._send(self._calls.get_activity(access_token, activity_id))

    def list_activity_laps(self, access_token: str, activity_id: int) -> Result[list[Lap]]:
        return self._send(self._calls.list_activity_laps(access_token, activity_id))

    def get_activity_streams(
        self, access_token: str, activity_id: int, keys: Sequence[str] | None = None
    ) -> Result[dict[str, Stream]]:
        """Streams keyed by type; Strava may return fewer keys than asked for (§4.3)."""
        return self._send(self._calls.get_activity_streams(access_token, activity_id, keys))

    def create_subscription(self, callback_url: str, verify_token: str) -> Result[Subscription]:
        """Create the app's one push subscription; the callback must already answer (§1.2)."""
        return self._send(self._calls.create_subscription(callback_url, verify_token))

    def list_subscriptions(self) -> Result[list[Subscription]]:
        return self._send(self._calls.list_subscriptions())

    def delete_subscription(self, subscription_id: int) -> Result[None]:
        return self._send(self._calls.delete_subscription(subscription_id))


class AsyncStravaClient:
    """Asynchronous twin of ``StravaClient`` (the web app), with the same methods as coroutines.

    Hooks: as for ``StravaClient``, but ``hooks`` is an ``AsyncRequestHooks``, whose methods
    may be plain functions or coroutines (awaited when they return an awaitable).

    Parameters: as ``StravaClient``, except ``transport`` is an ``httpx.AsyncBaseTransport``.
    """

    def __init__(
        self,
        *,
        api_url: str,
        oauth_url: str,
        client_id: int,
        client_secret: str,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        hooks: AsyncRequestHooks | None = None,
    ) -> None:
        self._calls = _Calls(
            api_url=api_url, oauth_url=oauth_url, client_id=client_id, client_secret=client_secret
        )
        self._timeout = httpx.Timeout(timeout)
        self._hooks = hooks
        self._http = httpx.AsyncClient(transport=transport, timeout=self._timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: _Call[T]) -> Result[T]:
        if self._hooks is not None:
            await _maybe_await(self._hooks.before_request(call.info))
        request = _build_request(call, self._timeout)
        try:
            response = await self._http.send(request)
        except httpx.RequestError as exc:
            if self._hooks is not None:
                await _maybe_await(self._hooks.after_response(call.info, None, EMPTY_SNAPSHOT))
            raise _transport_failure(call, exc) from exc
        rate_limit = parse_rate_limit_headers(response.headers)
        if self._hooks is not None:
            await _maybe_await(
                self._hooks.after_response(call.info, response.status_code, rate_limit)
            )
        return _interpret(call, response, rate_limit)

    async def exchange_code(self, code: str) -> Result[TokenResponse]:
        return await self._send(self._calls.exchange_code(code))

    async def refresh_token(self, refresh_token: str) -> Result[TokenResponse]:
        return await self._send(self._calls.refresh_token(refresh_token))

    async def deauthorize(self, access_token: str) -> Result[None]:
        return await self._send(self._calls.deauthorize(access_token))

    async def get_athlete(self, access_token: str) -> Result[DetailedAthlete]:
        return await self._send(self._calls.get_athlete(access_token))

    async def list_activities(
        self,
        access_token: str,
        *,
        before: int | None = None,
        after: int | None = None,
        page: int = 1,
        per_page: int = 30,
    ) -> Result[list[SummaryActivity]]:
        return await self._send(
            self._calls.list_activities(
                access_token, before=before, after=after, page=page, per_page=per_page
            )
        )

    async def get_activity(self, access_token: str, activity_id: int) -> Result[DetailedActivity]:
        return await self._send(self._calls.get_activity(access_token, activity_id))

    async def list_activity_laps(self, access_token: str, activity_id: int) -> Result[list[Lap]]:
        return await self._send(self._calls.list_activity_laps(access_token, activity_id))

    async def get_activity_streams(
        self, access_token: str, activity_id: int, keys: Sequence[str] | None = None
    ) -> Result[dict[str, Stream]]:
        return await self._send(self._calls.get_activity_streams(access_token, activity_id, keys))

    async def create_subscription(
        self, callback_url: str, verify_token: str
    ) -> Result[Subscription]:
        return await self._send(self._calls.create_subscription(callback_url, verify_token))

    async def list_subscriptions(self) -> Result[list[Subscription]]:
        return await self._send(self._calls.list_subscriptions())

    async def delete_subscription(self, subscription_id: int) -> Result[None]:
        return await self._send(self._calls.delete_subscription(subscription_id))


async def _maybe_await(outcome: Awaitable[None] | None) -> None:
    if outcome is not None:
        await outcome
