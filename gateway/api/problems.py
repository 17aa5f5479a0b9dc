"""Errors as RFC 9457 problem details (`application/problem+json`), and the middleware that
guarantees every error leaves the gateway in that shape.

Handlers raise `Problem`; aiohttp's own HTTP errors (unknown route, wrong method, a body over
the size limit) are rewritten to problems with the same status; and anything unexpected
becomes a 500 whose detail is generic. A 500 is logged with the exception's *type*, the
route template and the frame that raised it, but never the exception's message, the request
body, the query or the headers: those can hold personal data or secrets, and a traceback in
a response is a map for an attacker.

Validation problems (422) carry `errors: [{"field": "credentials.token", "message": ...}]`.
Their messages come from pydantic with `include_input=False`, so a rejected value is never
echoed back (it may be a BSN pasted into the wrong field).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web
from pydantic import ValidationError

from gateway.accounts.errors import AccountsError, Throttled
from gateway.store.protocols import StoreConflict, StoreUnavailable

log = logging.getLogger("sluis.http")

PROBLEM_JSON: Final = "application/problem+json"
#: Problem type URIs are identifiers, not links: `urn:sluis:problem:<slug>`.
TYPE_PREFIX: Final = "urn:sluis:problem:"
MAX_FIELD_ERRORS: Final = 20
_MAX_LOC_PART: Final = 64

_SLUGS: Final[dict[int, tuple[str, str]]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "Request failed validation"),
    500: ("internal", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


def problem_type(status: int, slug: str | None = None) -> str:
    if slug is None:
        slug = _SLUGS.get(status, ("error", ""))[0]
    return TYPE_PREFIX + slug


class Problem(Exception):
    """An error a client can act on; becomes a problem+json response.

    `extra` adds extension members (e.g. `code`, `instruction_id`, `run_id`); they must be
    ids, codes or numbers, never personal data.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or "")
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or _SLUGS.get(status, ("", "Error"))[1]
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": problem_type(self.status, self.slug),
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.errors is not None:
            out["errors"] = self.errors
        out.update(self.extra)
        return out

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=orjson.dumps(self.body()),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def field_error(field: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "message": message, **extra}


def invalid(field: str, message: str, **extra: Any) -> Problem:
    """A 422 about one field."""
    return Problem(422, f"{field}: {message}", errors=[field_error(field, message, **extra)])


def _loc(parts: Iterable[int | str], prefix: str) -> str:
    # Parts starting with "#" are union tags (see `api_models`), not fields.
    names = [str(p)[:_MAX_LOC_PART] for p in parts if not str(p).startswith("#")]
    joined = ".".join(n for n in names if n)
    if prefix:
        return f"{prefix}.{joined}" if joined else prefix
    return joined or "body"


def from_validation(exc: ValidationError, prefix: str = "") -> Problem:
    """A 422 naming every failing field, without the values that failed."""
    errors = [
        field_error(_loc(err["loc"], prefix), err["msg"].removeprefix("Value error, "))
        for err in exc.errors(include_input=False, include_url=False, include_context=False)
    ][:MAX_FIELD_ERRORS]
    summary = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return Problem(422, f"invalid fields: {summary}", errors=errors)


def _where(exc: BaseException) -> str:
    """`file:line in function` of the innermost frame: code locations, no values."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "(no route)"


def _from_http(exc: web.HTTPException) -> Problem:
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return Problem(405, "this route does not accept that method", headers=headers)
    if exc.status == 404:
        return Problem(404, "no such route")
    if exc.status == 413:
        return Problem(413, "the request body is larger than the gateway accepts")
    return Problem(exc.status, None, title=exc.reason)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes a problem+json response; unexpected ones a generic 500."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except AccountsError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return Problem(exc.status, str(exc), slug=exc.slug, headers=headers).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(exc).response()
    except (StoreUnavailable, StoreConflict) as exc:
        # The database is failing over or busy, or another replica won a race: nothing was
        # written, and the same request will most likely succeed in a moment.
        log.warning("store %s at %s (%s %s)", type(exc).__name__, _where(exc),
                    request.method, _route(request))  # fmt: skip
        return Problem(
            503,
            "the database is not available right now; nothing was changed, try again shortly",
            slug="store-unavailable",
            headers={"Retry-After": "5"},
        ).response()
    except Exception as exc:
        log.error(
            "unhandled %s at %s (%s %s)",
            type(exc).__name__,
            _where(exc),
            request.method,
            _route(request),
        )
        return Problem(
            500, "the gateway failed to handle this request; it has been logged"
        ).response()
