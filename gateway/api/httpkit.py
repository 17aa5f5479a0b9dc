"""Small pieces the admin API and the feed share: typed app state, bearer tokens, JSON in and
out, and store calls on worker threads.

The store is synchronous SQLite, so every call goes through `asyncio.to_thread` (the event
loop never waits on disk), and its lookup errors become problems here, in one place:
`NotFound` is a 404 and `AlreadyExists` a 409, with messages that hold only ids.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.problems import Problem, from_validation
from gateway.runtime.services import Services
from gateway.store.records import AlreadyExists, NotFound

SERVICES: Final = web.AppKey("services", Services)
#: Background sync runs started through the admin API; cancelled when the app shuts down.
SYNC_TASKS: Final = web.AppKey("sync_tasks", set[asyncio.Task[Any]])

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_JSON_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def services_of(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)


def json_response(
    value: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(value), status=status, content_type="application/json", headers=headers
    )


def model_response(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Serialise through the response model, so what is sent is what the schema says."""
    return json_response(model.model_dump(mode="json"), status, headers)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison (no early exit that would leak a matching prefix)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def unauthorized(realm: str, detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


async def read_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Parse and validate a JSON body: bad JSON is a 400, a wrong shape a 422."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return model()
        raise Problem(400, "a JSON body is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, "the body is not valid JSON") from None
    return validate(model, data)


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc, prefix) from None


def query_params(request: web.Request, model: type[M]) -> M:
    """Validate the query string; a parameter given twice is a 400 rather than a guess."""
    query = request.query
    for key in query:
        if len(query.getall(key)) > 1:
            raise Problem(400, f"query parameter {key[:64]} is given more than once")
    return validate(model, dict(query))


async def store_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call on a worker thread; lookup errors become 404/409 problems."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except NotFound as exc:
        raise Problem(404, f"not found: {exc}") from None
    except AlreadyExists as exc:
        raise Problem(409, str(exc)) from None


def location(request: web.Request, *parts: str) -> str:
    """An absolute path below the current request's path."""
    return "/".join([request.path.rstrip("/"), *parts])
