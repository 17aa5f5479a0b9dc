"""The inbound SCIM endpoint's HTTP side: `/scim/v2/tenants/{t}/connectors/{c}/...`.

One base URL per SCIM connector (the "tenant URL" an admin pastes into Entra ID or Okta),
authenticated by that connector's bearer token (its SHA-256 sealed with the connector;
compared in constant time). Every error, including unknown routes, oversized bodies and
throttling, is an RFC 7644 error body (`urn:ietf:params:scim:api:messages:2.0:Error`) with
a 4xx status, never a problem document: SCIM clients read only that. Bodies are capped at
`MAX_SCIM_BODY`, and each connector may make `RATE_PER_SECOND` requests a second (bursts of
`RATE_BURST`) before it is answered 429 with `Retry-After`, which both providers honour.

What a request does is `gateway.sync.scim_inbound`'s; this module parses and answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web
from scim2_models import Error

from connectors.scim.door import USER_SCHEMA
from gateway.api import scim_discovery as discovery
from gateway.api.httpkit import BODY_TIMEOUT_SECONDS, bearer_token, duplicate_key, services_of
from gateway.api.models import TENANT_ID_PATTERN
from gateway.api.problems import Problem
from gateway.store.protocols import StoreError
from gateway.store.records import ConnectorRecord
from gateway.sync.scim_inbound import ScimFailure, ScimUser

log = logging.getLogger("sluis.scim")

CONTENT_TYPE: Final = "application/scim+json"
#: A SCIM user is a few KiB at most, with every attribute a provider has filled.
MAX_SCIM_BODY: Final = 64 * 1024
#: Per connector; Entra ID asks SCIM apps to take 25 requests a second.
RATE_PER_SECOND: Final = 200.0
RATE_BURST: Final = 400.0
DEFAULT_COUNT: Final = 100
_RECORD: Final = web.RequestKey("sluis.scim.connector", ConnectorRecord)
_CONNECTOR_ID: Final = "[a-z0-9][a-z0-9_-]{0,62}"
BASE: Final = (
    "/tenants/{tenant:" + TENANT_ID_PATTERN.strip("^$") + "}/connectors/{connector:"
    + _CONNECTOR_ID + "}"
)  # fmt: skip
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def scim_json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(value), status=status, content_type=CONTENT_TYPE, headers=headers
    )


def scim_error(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = Error(status=status, detail=detail, scim_type=scim_type).model_dump()
    return scim_json(body, status, headers)


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimit:
    """A token bucket per connector: a provider syncing thousands of users at once is
    slowed with 429 and `Retry-After` instead of starving the gateway's other work."""

    def __init__(self, rate: float = RATE_PER_SECOND, burst: float = RATE_BURST) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def wait_for(self, key: tuple[str, str]) -> float:
        """0 when a request may go now (and counts it), else the seconds to wait."""
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


RATE_LIMIT: Final = web.AppKey("scim_rate_limit", RateLimit)


@web.middleware
async def scim_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, throttling and SCIM error bodies for everything under /scim/v2."""
    try:
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception
        token = bearer_token(request)
        if token is None:
            return scim_error(401, "a bearer token is required", headers=_CHALLENGE)
        s = services_of(request)
        m = request.match_info
        record = await asyncio.to_thread(s.scim.authenticate, m["tenant"], m["connector"], token)
        wait = request.app[RATE_LIMIT].wait_for((record.tenant, record.id))
        if wait:
            retry = str(max(1, round(wait + 0.5)))
            return scim_error(429, "too many requests; retry later", headers={"Retry-After": retry})
        request[_RECORD] = record
        return await handler(request)
    except ScimFailure as failure:
        headers = _CHALLENGE if failure.status == 401 else None
        return scim_error(failure.status, failure.detail, failure.scim_type, headers)
    except Problem as problem:
        return scim_error(problem.status, problem.detail or problem.title)
    except web.HTTPException as exc:
        if exc.status >= 500:  # pragma: no cover - aiohttp raises none on this path
            raise
        return scim_error(exc.status, exc.reason)
    except StoreError as exc:
        log.warning("SCIM request not served: %s", type(exc).__name__)
        return scim_error(503, "the store is not available; retry later",
                          headers={"Retry-After": "5"})  # fmt: skip


_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="sluis-scim"'}


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_SCIM_BODY:
        raise ScimFailure(413, f"the body is larger than {MAX_SCIM_BODY} bytes")
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            # Whole, however it was sent (chunked too); the app's own cap (256 KiB) ends a
            # larger one early, as a 413.
            raw = await request.read()
    except TimeoutError:
        raise ScimFailure(408, "the request body did not arrive in time") from None
    if len(raw) > MAX_SCIM_BODY:
        raise ScimFailure(413, f"the body is larger than {MAX_SCIM_BODY} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ScimFailure(400, "the body is not valid JSON", "invalidSyntax") from None
    twice = duplicate_key(raw, data)
    if twice is not None:
        raise ScimFailure(400, "the body names a key twice in one object", "invalidSyntax")
    return data


def _base(request: web.Request) -> str:
    public = services_of(request).settings.public_url
    root = public.rstrip("/") if public else f"{request.scheme}://{request.host}"
    m = request.match_info
    return f"{root}/scim/v2/tenants/{m['tenant']}/connectors/{m['connector']}"


def user_body(user: ScimUser, base: str) -> dict[str, Any]:
    """The minimised user as a SCIM User: nothing the gateway did not keep.

    Built as a dict in the shape scim2-models' `User` serialises to (the conformance test
    reads it back with that model), not through the model: the values passed the egress
    rules when they came in, and pydantic's email check refuses addresses the egress
    schema accepts (`.local` test domains), which would turn a stored user unreadable."""
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": user.id}
    name = {k: v for k, v in (("givenName", user.first_name),
                              ("familyName", user.last_name)) if v is not None}  # fmt: skip
    if name:
        body["name"] = name
    if user.job_title is not None:
        body["title"] = user.job_title
    body["active"] = user.active
    if user.email is not None:
        body["emails"] = [{"value": user.email, "type": "work", "primary": True}]
    body["meta"] = {"resourceType": "User", "location": f"{base}/Users/{user.id}"}
    return body


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


# --------------------------------------------------------------------------- users


async def post_user(request: web.Request) -> web.Response:
    body = await _body(request)
    user = await _call(services_of(request).scim.create, request[_RECORD], body)
    base = _base(request)
    return scim_json(user_body(user, base), 201, {"Location": f"{base}/Users/{user.id}"})


SEARCH_REQUEST: Final = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
_ALWAYS: Final = frozenset({"schemas", "id", "meta"})


def _names(given: list[str]) -> set[str] | None:
    """Attribute names as `attributes` / `excludedAttributes` give them (comma-separated,
    possibly URN-prefixed), by top-level attribute, lower-cased."""
    if not given:
        return None
    found = set()
    for part in ",".join(given).split(","):
        name = part.strip().removeprefix(USER_SCHEMA + ":").split(".")[0]
        if name:
            found.add(name.lower())
    return found


def shaped(
    request: web.Request,
    body: dict[str, Any],
    *,
    only: set[str] | None = None,
    without: set[str] | None = None,
) -> dict[str, Any]:
    """`attributes` / `excludedAttributes` (RFC 7644 §3.9), by top-level attribute: from
    the query string, or as a search request's body gave them."""
    if only is None and without is None:
        only = _names(request.query.getall("attributes", []))
        without = _names(request.query.getall("excludedAttributes", []))
    if only is not None:
        return {k: v for k, v in body.items() if k in _ALWAYS or k.lower() in only}
    if without is not None:
        return {k: v for k, v in body.items() if k in _ALWAYS or k.lower() not in without}
    return body


async def get_user(request: web.Request) -> web.Response:
    user = await _call(services_of(request).scim.get, request[_RECORD], request.match_info["id"])
    return scim_json(shaped(request, user_body(user, _base(request))))


async def put_user(request: web.Request) -> web.Response:
    body = await _body(request)
    s, sid = services_of(request), request.match_info["id"]
    user = await _call(s.scim.replace, request[_RECORD], sid, body)
    return scim_json(user_body(user, _base(request)))


async def patch_user(request: web.Request) -> web.Response:
    body = await _body(request)
    s, sid = services_of(request), request.match_info["id"]
    user = await _call(s.scim.modify, request[_RECORD], sid, body)
    return scim_json(user_body(user, _base(request)))


async def delete_user(request: web.Request) -> web.Response:
    s, sid = services_of(request), request.match_info["id"]
    await _call(s.scim.delete, request[_RECORD], sid)
    return web.Response(status=204)


def _whole(request: web.Request, name: str, default: int) -> int:
    given = request.query.getall(name, [])
    if len(given) > 1:
        raise ScimFailure(400, f"{name} is given more than once", "invalidValue")
    if not given:
        return default
    try:
        return int(given[0])
    except ValueError:
        raise ScimFailure(400, f"{name} must be a whole number", "invalidValue") from None


async def list_users(request: web.Request) -> web.Response:
    start = max(1, _whole(request, "startIndex", 1))
    count = min(discovery.MAX_RESULTS, max(0, _whole(request, "count", DEFAULT_COUNT)))
    filters = request.query.getall("filter", [])
    if len(filters) > 1:
        raise ScimFailure(400, "filter is given more than once", "invalidFilter")
    return await _page(request, filters[0] if filters else None, start, count)


async def _page(
    request: web.Request,
    filter_text: str | None,
    start: int,
    count: int,
    *,
    only: set[str] | None = None,
    without: set[str] | None = None,
) -> web.Response:
    s = services_of(request)
    total, users = await _call(s.scim.search, request[_RECORD], filter_text, start, count)
    base = _base(request)
    found = [shaped(request, user_body(u, base), only=only, without=without) for u in users]
    page = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total, "startIndex": start, "itemsPerPage": len(users),
        "Resources": found,
    }  # fmt: skip
    return scim_json(page)


async def search_users(request: web.Request) -> web.Response:
    """`POST /.search` and `POST /Users/.search` (RFC 7644 §3.4.3): a search request in
    the body instead of the query string (for filters too long or too private for a URL).
    Users are the one resource type here, so the root search is the Users search."""
    body = await _body(request)
    if not isinstance(body, dict) or SEARCH_REQUEST not in (body.get("schemas") or []):
        raise ScimFailure(
            400, f"the body is not a SearchRequest ({SEARCH_REQUEST})", "invalidSyntax"
        )
    filter_text = body.get("filter")
    if filter_text is not None and not isinstance(filter_text, str):
        raise ScimFailure(400, "filter must be a string", "invalidFilter")
    start, count = body.get("startIndex", 1), body.get("count", DEFAULT_COUNT)
    for name, value in (("startIndex", start), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScimFailure(400, f"{name} must be a whole number", "invalidValue")
    names: list[set[str] | None] = []
    for key in ("attributes", "excludedAttributes"):
        given = body.get(key)
        if given is not None and (
            not isinstance(given, list) or not all(isinstance(a, str) for a in given)
        ):
            raise ScimFailure(400, f"{key} must be a list of attribute names", "invalidValue")
        names.append(_names(given or []))
    start = max(1, start)
    count = min(discovery.MAX_RESULTS, max(0, count))
    return await _page(request, filter_text, start, count, only=names[0], without=names[1])


# --------------------------------------------------------------------------- discovery


async def service_provider_config(request: web.Request) -> web.Response:
    base = _base(request)
    docs = f"{base.split('/scim/v2/')[0]}/openapi.json"
    return scim_json(discovery.service_provider_config(base, docs))


async def list_schemas(request: web.Request) -> web.Response:
    found = [discovery.schema_with_meta(_base(request))]
    return scim_json(_list_of(found))


async def get_schema(request: web.Request) -> web.Response:
    if request.match_info["id"] != USER_SCHEMA:
        raise ScimFailure(404, "no such schema")
    return scim_json(discovery.schema_with_meta(_base(request)))


async def list_resource_types(request: web.Request) -> web.Response:
    return scim_json(_list_of([discovery.resource_type(_base(request))]))


async def get_resource_type(request: web.Request) -> web.Response:
    if request.match_info["id"] != "User":
        raise ScimFailure(404, "no such resource type (Sluis provisions Users only)")
    return scim_json(discovery.resource_type(_base(request)))


def _list_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(resources), "startIndex": 1, "itemsPerPage": len(resources),
        "Resources": resources,
    }  # fmt: skip


def make_scim_app() -> web.Application:
    """The `/scim/v2` sub-application (mounted by `gateway.api.app.make_app`)."""
    app = web.Application(middlewares=[scim_middleware])
    app[RATE_LIMIT] = RateLimit()
    r = app.router
    r.add_get(BASE + "/ServiceProviderConfig", service_provider_config, allow_head=False)
    r.add_get(BASE + "/Schemas", list_schemas, allow_head=False)
    r.add_get(BASE + "/Schemas/{id}", get_schema, allow_head=False)
    r.add_get(BASE + "/ResourceTypes", list_resource_types, allow_head=False)
    r.add_get(BASE + "/ResourceTypes/{id}", get_resource_type, allow_head=False)
    r.add_get(BASE + "/Users", list_users, allow_head=False)
    r.add_post(BASE + "/Users", post_user)
    r.add_post(BASE + "/Users/.search", search_users)
    r.add_get(BASE + "/Users/{id}", get_user, allow_head=False)
    r.add_put(BASE + "/Users/{id}", put_user)
    r.add_patch(BASE + "/Users/{id}", patch_user)
    r.add_delete(BASE + "/Users/{id}", delete_user)
    r.add_post(BASE + "/.search", search_users)
    return app
