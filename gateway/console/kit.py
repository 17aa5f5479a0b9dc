"""The console's plumbing: typed app state, templates, the session cookie, CSRF, and the
pages shown when something is refused.

Every handler follows one order: read the form, check its origin, find the principal (an
expired session sends the user to sign in, keeping the form's harmless input), check the
CSRF token, check the role for the tenant, then act. `PageError` carries a status and a
catalogue key; the middleware turns it, and the accounts errors, into an HTML page in the
user's language, so a refusal is always a page a person can read and never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from gateway.accounts.errors import AccountsError
from gateway.accounts.principal import Principal
from gateway.console.i18n import COOKIE as LANG_COOKIE
from gateway.console.i18n import Lang, choose, translator
from gateway.console.resume import Resumes
from gateway.runtime.services import Services
from gateway.store.records import AlreadyExists, NotFound

log = logging.getLogger("sluis.console")

P = ParamSpec("P")
T = TypeVar("T")

PREFIX: Final = "/console"
PLAIN_COOKIE: Final = "sluis_session"
TLS_COOKIE: Final = "__Host-sluis_session"

SERVICES: Final = web.AppKey("console_services", Services)
TEMPLATES: Final = web.AppKey("console_templates", jinja2.Environment)
RESUMES: Final = web.AppKey("console_resumes", Resumes)
TASKS: Final = web.AppKey("console_tasks", set[asyncio.Task[Any]])
#: The request's principal once looked up (None: signed out).
PRINCIPAL: Final[web.RequestKey[Principal | None]] = web.RequestKey("console_principal")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Form = MultiDictProxy[str]


class PageError(Exception):
    """A refusal shown as a page: `status` and a catalogue key (with its values)."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.values = values


def services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A synchronous store or accounts call on a worker thread (SQLite is blocking)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def lang_of(request: web.Request) -> Lang:
    return choose(request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language"))


def url(*parts: str) -> str:
    """A console path from its parts, each quoted (ids come from users)."""
    return PREFIX + "".join("/" + quote(p, safe="") for p in parts)


def safe_next(value: str | None) -> str:
    """A local console path to go to after sign-in, or the start page (no open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//"):
        parts = urlsplit(value)
        if not parts.scheme and not parts.netloc and "\\" not in value:
            return value
    return PREFIX + "/"


# --------------------------------------------------------------------------- rendering


@dataclass
class Flash:
    kind: str  # "ok" | "error" | "info"
    text: str


def render(
    request: web.Request,
    template: str,
    status: int = 200,
    *,
    principal: Principal | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    lang = lang_of(request)
    env = request.config_dict[TEMPLATES]
    # `here` (where the language switch comes back to) may be given: a page whose query
    # holds a one-time secret (an OAuth callback's code) must not repeat it in its links.
    context.setdefault("here", request.path_qs)
    html = env.get_template(template).render(
        t=translator(lang),
        lang=lang,
        principal=principal,
        csrf=principal.csrf if principal else None,
        url=url,
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)


def error_page(request: web.Request, status: int, key: str, **values: object) -> web.Response:
    principal = request.get(PRINCIPAL)
    return render(
        request,
        "error.html",
        status,
        principal=principal,
        message_key=key,
        message_values=values,
    )


_ACCOUNT_ERRORS: Final = {
    "forbidden": "error.forbidden",
    "step-up-required": "error.step_up",
    "not-found": "error.not_found",
    "oidc-failed": "oidc.failed",
}


@web.middleware
async def console_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals become readable pages; nothing unexpected shows a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404 and request.path == PREFIX:
            raise web.HTTPPermanentRedirect(PREFIX + "/") from None
        if exc.status == 404:
            return error_page(request, 404, "error.not_found")
        if exc.status in (400, 405, 413):
            return error_page(request, exc.status, "error.bad_request")
        raise
    except PageError as exc:
        return error_page(request, exc.status, exc.key, **exc.values)
    except AccountsError as exc:
        key = _ACCOUNT_ERRORS.get(exc.slug, "error.forbidden")
        return error_page(request, exc.status, key)
    except NotFound:
        return error_page(request, 404, "error.not_found")
    except AlreadyExists:
        return error_page(request, 409, "error.bad_request")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("console page failed with %s", type(exc).__name__)
        return error_page(request, 500, "error.internal")


async def page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """No framing, no referrer beyond this site (invitation links carry a token; a stricter
    policy would make browsers send `Origin: null` on our own forms), scripts only our own."""
    if not request.path.startswith(PREFIX):
        return
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


# --------------------------------------------------------------------------- sessions


def is_secure(request: web.Request) -> bool:
    """Over TLS: this connection, or the proxy in front (`public_url` says https)."""
    public = services(request).settings.public_url
    return request.secure or (public is not None and public.startswith("https://"))


def public_base(request: web.Request) -> str:
    """How browsers reach this gateway: `public_url`, else this request's scheme and host."""
    public = services(request).settings.public_url
    return public if public is not None else f"{request.scheme}://{request.host}"


def cookie_name(request: web.Request) -> str:
    return TLS_COOKIE if is_secure(request) else PLAIN_COOKIE


def session_value(request: web.Request) -> str | None:
    return request.cookies.get(cookie_name(request)) or None


def set_session(response: web.StreamResponse, request: web.Request, value: str) -> None:
    response.set_cookie(
        cookie_name(request),
        value,
        path="/",
        httponly=True,
        secure=is_secure(request),
        samesite="Strict",
    )


def clear_session(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        cookie_name(request), path="/", secure=is_secure(request), httponly=True, samesite="Strict"
    )


async def current(request: web.Request) -> Principal | None:
    """The signed-in principal of this request, looked up once."""
    if PRINCIPAL in request:
        known: Principal | None = request[PRINCIPAL]
        return known
    value = session_value(request)
    principal = None
    if value is not None:
        principal = await call(services(request).accounts.session, value)
    request[PRINCIPAL] = principal
    return principal


def to_sign_in(path: str, *, expired: bool, resume: str | None = None) -> web.HTTPSeeOther:
    """To the sign-in page, and back to `path` afterwards (with the kept input, if any)."""
    target = url("sign-in") + "?next=" + quote(path, safe="/")
    if expired:
        target += "&expired=1"
    if resume:
        target += "&resume=" + quote(resume, safe="")
    return web.HTTPSeeOther(target)


async def signed_in(request: web.Request) -> Principal:
    """The principal, or a redirect to sign in that comes back to this page."""
    principal = await current(request)
    if principal is None:
        raise to_sign_in(request.path, expired=session_value(request) is not None)
    return principal


# --------------------------------------------------------------------------- forms


def same_origin(request: web.Request) -> bool:
    """An `Origin` header, when sent, must name this host (a cross-site post is refused).

    The host is compared, not the scheme: behind a proxy that ends TLS the gateway sees
    plain HTTP while the browser says `https://`."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = urlsplit(origin).netloc
    public = services(request).settings.public_url
    ours = [request.host] + ([urlsplit(public).netloc] if public else [])
    return bool(host) and any(hmac.compare_digest(host.encode(), h.encode()) for h in ours)


async def read_form(request: web.Request) -> Form:
    form = await request.post()
    if not same_origin(request):
        raise PageError(403, "error.csrf")
    # Files are not expected anywhere; only text fields are read.
    return MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))


async def posted(request: web.Request, *, back: str | None = None) -> tuple[Principal, Form]:
    """A state-changing form: same origin, a live session (else sign in and come back to
    `back` with the harmless input kept) and the session's CSRF token."""
    form = await read_form(request)
    principal = await current(request)
    if principal is None:
        resume = None
        if back is not None:
            resume = request.config_dict[RESUMES].keep(back, form)
        raise to_sign_in(back or request.path, expired=True, resume=resume)
    given = form.get("csrf", "")
    expected = principal.csrf or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PageError(403, "error.csrf")
    return principal, form


def prefill(request: web.Request) -> dict[str, str]:
    """The input a user typed before their session ended, if this page is where it goes."""
    token = request.query.get("resume")
    if not token:
        return {}
    return request.config_dict[RESUMES].take(token, request.path)


def now(request: web.Request) -> datetime:
    return services(request).clock()
