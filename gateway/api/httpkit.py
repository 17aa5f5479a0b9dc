"""Small pieces the admin API and the feed share: typed app state, bearer tokens, JSON in and
out, and store calls on worker threads.

The store is synchronous SQLite, so every call goes through `asyncio.to_thread` (the event
loop never waits on disk), and its lookup errors become problems here, in one place:
`NotFound` is a 404 and `AlreadyExists` a 409, with messages that hold only ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.problems import Problem, from_validation
from gateway.runtime.services import Services
from gateway.store.records import AlreadyExists, NotFound, TenantEnded

SERVICES: Final = web.AppKey("services", Services)
#: Background sync runs started through the admin API; cancelled when the app shuts down.
SYNC_TASKS: Final = web.AppKey("sync_tasks", set[asyncio.Task[Any]])

#: Seconds a request body may take to arrive once its head is in.
BODY_TIMEOUT_SECONDS: Final = 30.0

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
    """The request's bearer token. Two `Authorization` headers are a 400: proxies and
    frameworks disagree on which one counts, and that disagreement is how a token gets
    smuggled past a check that looked at the other one."""
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        raise Problem(400, "the Authorization header is given more than once")
    header = headers[0] if headers else ""
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
    """Parse and validate a JSON body: bad JSON is a 400, a wrong shape a 422.

    The body must arrive within `BODY_TIMEOUT_SECONDS` (a client dripping it byte by byte
    holds a connection and a task), and an object may not name a key twice."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            raw = await request.read()
    except TimeoutError:
        raise Problem(
            408, "the request body did not arrive in time", slug="timeout", title="Timeout"
        ) from None
    if not raw.strip():
        if optional:
            return model()
        raise Problem(400, "a JSON body is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, "the body is not valid JSON") from None
    duplicate = duplicate_key(raw, data)
    if duplicate is not None:
        raise Problem(400, f"the body names the key {duplicate[:64]!r} twice in one object")
    # Validated as JSON, not as the parsed dict: fields marked strict then take exactly the
    # JSON type the schema names (no `false` for a number, no 3600 for a date-time).
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None


def _count_members(value: Any) -> int:
    """Members of every object in `value`; iterative, as bodies may nest ~1000 deep."""
    count, stack = 0, [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += len(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def _first_duplicate(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def duplicate_key(raw: bytes, parsed: Any) -> str | None:
    """A key some object in `raw` names twice, or None.

    JSON parsers keep the last of two equal keys silently (orjson too), so a body can say
    one thing to a validator that reads the first and another to us. orjson's result has
    one member per distinct key: if the text holds more members than that, the standard
    parser, told to refuse repeats, finds which key it was. Bodies without repeats (all of
    them, in practice) pay only for the count."""
    text = raw.decode("utf-8", errors="replace")
    if text.count(":") <= _count_members(parsed):
        return None
    try:
        json.loads(text, object_pairs_hook=_first_duplicate)
    except _DuplicateKey as dup:
        return dup.key
    except RecursionError:
        raise Problem(400, "the body is nested too deeply") from None
    except ValueError:
        return None
    return None


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
    except TenantEnded as exc:
        raise Problem(409, str(exc), slug="tenant-ended") from None


def location(request: web.Request, *parts: str) -> str:
    """An absolute path below the current request's path."""
    return "/".join([request.path.rstrip("/"), *parts])


def _forget(tasks: set[asyncio.Task[Any]], task: asyncio.Task[Any]) -> None:
    tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # The engine records failures on the run itself; this only notes that one escaped.
        logging.getLogger("sluis.http").error(
            "background sync task ended with %s", type(task.exception()).__name__
        )


def spawn(tasks: set[asyncio.Task[Any]], work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run `work` in the background, kept referenced until it ends (then dropped)."""
    task = asyncio.create_task(work)
    tasks.add(task)
    task.add_done_callback(lambda t: _forget(tasks, t))
    return task


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """Run `work` as a task for as long as the block runs (a `cleanup_ctx` entry's life),
    then cancel it and wait for it to end."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
