"""The operator page's form posts: the body read as a small urlencoded form, and the check
that the post comes from a page of this service."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

from service.config import Settings
from service.web.api_spec import bounded_body
from service.web.errors import Forbidden, InvalidRequest, UnsupportedMediaType

# The page's forms hold a key or a token and a word or two.
MAX_FORM_BYTES = 4096
_MAX_FIELDS = 16
FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """The posted form's fields (the last of a repeated one): 415 for another content type,
    413 past MAX_FORM_BYTES, 400 for a body that is not a form."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != FORM_TYPE:
        raise UnsupportedMediaType(f"the form must be sent as {FORM_TYPE}", reason="content_type")
    raw = await bounded_body(request, MAX_FORM_BYTES, "form")
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=_MAX_FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form is malformed", reason="form") from None


def require_same_origin(request: Request, settings: Settings) -> None:
    """Forbidden (reason ``cross_origin``) for a post another site's page made: one whose
    `Sec-Fetch-Site` says so, or whose `Origin` is neither this request's own nor
    PUBLIC_URL's. Browsers send both with every form post; a client that sends neither is
    no browser page and still needs the session and its CSRF token."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site not in ("same-origin", "none"):
        raise _cross_origin()
    if origin is None:
        return
    own = {f"{request.url.scheme}://{request.url.netloc}"}
    if settings.public_url is not None:
        public = urlsplit(settings.public_url)
        own.add(f"{public.scheme}://{public.netloc}")
    if origin.lower() not in {allowed.lower() for allowed in own}:
        raise _cross_origin()


def _cross_origin() -> Forbidden:
    return Forbidden("the form was sent from another site's page", reason="cross_origin")
