"""What every vendor emulator shares: a request log, a rate limit, and injectable faults.

The emulators (`connectors/<vendor>/emulator.py`) are real aiohttp apps that follow their
vendor's documented API. Tests and the demo steer them through an `EmulatorControl` kept in
the app (`app[CONTROL]`): queue faults for the next requests (a 5xx, a slow answer, a body
cut off mid-JSON, a 429, an endless body), set a rate limit that answers the way the vendor
does, and read back which requests arrived and when (to check that a client honoured
`Retry-After`).

The same knobs are served over HTTP under `/_emulator` (`add_control_routes`), for a
standalone emulator (`sluis emulator`) steered by scripts and tests in other processes:

    GET    /_emulator                 what this is, and how many people it holds
    GET    /_emulator/requests        the request log
    POST   /_emulator/faults          {"faults": [{"kind": "error", "status": 503}, ...]}
    DELETE /_emulator/faults          drop the queued faults
    PUT    /_emulator/rate_limit      {"requests": 10, "window": 10.0}; DELETE lifts it
    POST   /_emulator/people/touch    {"count": 5}: change 5 people (a new job title)
    POST   /_emulator/people/retire   {"count": 2}: 2 people leave (AFAS: employment ends;
                                      HubSpot: contacts archived)

An emulator of a vendor whose customers connect by signing in (OAuth 2.0 authorization code)
adds that vendor's authorization server with `add_authorization_routes`: an authorize
endpoint that consents at once (or refuses, when told to) and a token endpoint with one-time
codes, PKCE, rotating refresh tokens and access tokens that run out after `expires_in`.

The control surface has no authentication: an emulator holds only synthetic people and
listens on 127.0.0.1 unless told otherwise.

Faults are consumed in order, one per matching request, so a test can say "the third page
fails twice, then works".
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, get_args

import orjson
from aiohttp import web

FaultKind = Literal["error", "slow", "truncate", "rate_limit", "huge"]
#: What a "huge" fault streams: a JSON list of filler rows (valid JSON if it ends).
_FILLER: Final = b'{"filler":"' + b"x" * 1000 + b'"},'


@dataclass
class Fault:
    """One injected misbehaviour for one request (optionally only for paths with `path`)."""

    kind: FaultKind
    status: int = 503
    seconds: float = 0.0
    path: str | None = None
    #: A `Location` header for the error answer (to test that redirects are not followed).
    location: str | None = None
    #: "huge": bytes of body to stream (None: without end, until the client hangs up) and
    #: whether to announce them in `Content-Length` up front.
    size: int | None = None
    declare_length: bool = False


@dataclass
class LoggedRequest:
    at: float
    method: str
    path: str
    query: str
    status: int


@dataclass
class RateLimit:
    """At most `requests` per `window` seconds (fixed window), like vendors' burst limits."""

    requests: int
    window: float
    _started: float = 0.0
    _count: int = 0

    def admit(self, now: float) -> float | None:
        """None if admitted, else seconds until the window resets."""
        if now - self._started >= self.window:
            self._started, self._count = now, 0
        if self._count < self.requests:
            self._count += 1
            return None
        return max(0.0, self.window - (now - self._started))


TooMany = Callable[[float], web.Response]


class People(Protocol):
    """What a vendor's emulated data offers the control surface."""

    def touch(self, count: int) -> list[str]: ...
    def retire(self, count: int) -> list[str]: ...
    def size(self) -> int: ...


@dataclass
class EmulatorControl:
    """The test-facing knobs of one emulator instance."""

    too_many: TooMany
    faults: deque[Fault] = field(default_factory=deque)
    rate_limit: RateLimit | None = None
    log: list[LoggedRequest] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    #: Body bytes written by "huge" faults, to see how far a client read before it stopped.
    streamed_bytes: int = 0
    #: The vendor's data, for the HTTP control surface (touch and retire people).
    people: People | None = None
    vendor: str = ""

    def inject(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def requests_to(self, path_prefix: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.path.startswith(path_prefix)]

    def _take_fault(self, path: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.path is None or path.startswith(fault.path):
                del self.faults[i]
                return fault
        return None


CONTROL: Final = web.AppKey("emulator_control", EmulatorControl)
#: Paths that are never rate limited or faulted (health checks of the emulator itself).
_EXEMPT: Final = ("/_emulator",)


@web.middleware
async def emulator_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Log every request, enforce the rate limit and apply the next matching fault."""
    control = request.app[CONTROL]
    path = request.path
    if path.startswith(_EXEMPT):
        return await handler(request)
    now = control.clock()
    response: web.StreamResponse
    fault = control._take_fault(path)
    wait = control.rate_limit.admit(now) if control.rate_limit else None
    if wait is not None:
        response = control.too_many(wait)
    elif fault is not None and fault.kind == "rate_limit":
        response = control.too_many(fault.seconds or 1.0)
    elif fault is not None and fault.kind == "huge":
        # Logged before the body: a client that hangs up mid-stream still sent the request.
        control.log.append(LoggedRequest(now, request.method, path, request.query_string, 200))
        return await _stream_huge(request, control, fault)
    elif fault is not None and fault.kind == "error":
        headers = {"Location": fault.location} if fault.location else None
        response = web.json_response(
            {"error": "injected fault"}, status=fault.status, headers=headers
        )
    else:
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        response = await handler(request)
        if fault is not None and fault.kind == "truncate" and isinstance(response, web.Response):
            body = response.body
            if isinstance(body, bytes | bytearray):
                cut = web.Response(
                    body=bytes(body[: max(1, len(body) // 2)]),
                    status=response.status,
                    content_type="application/json",
                )
                response = cut
    control.log.append(
        LoggedRequest(now, request.method, path, request.query_string, response.status)
    )
    return response


async def _stream_huge(
    request: web.Request, control: EmulatorControl, fault: Fault
) -> web.StreamResponse:
    """A 200 whose JSON body is `fault.size` bytes long, or endless: what a runaway export
    or a hostile source sends."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    if fault.declare_length and fault.size is not None:
        response.content_length = fault.size
    await response.prepare(request)
    block = _FILLER * 64
    chunk = (b'{"rows":[' + block)[: fault.size]
    left = fault.size
    try:
        while chunk:
            await response.write(chunk)
            control.streamed_bytes += len(chunk)
            if left is not None:
                left -= len(chunk)
            chunk = block if left is None else block[:left]
    except (ConnectionError, RuntimeError):
        return response  # the client hung up: what a capped reader does
    await response.write_eof()
    return response


def new_control(too_many: TooMany) -> EmulatorControl:
    return EmulatorControl(too_many=too_many)


# --------------------------------------------------------------------------- over HTTP


class _BadControl(Exception):
    """A control request that cannot be carried out; answered with a 400."""


_FAULT_FIELDS: Final = {f.name: f.type for f in dataclasses.fields(Fault)}
_FAULT_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "status": lambda v: type(v) is int and 100 <= v <= 599,
    "seconds": lambda v: type(v) in (int, float) and 0 <= v <= 3600,
    "path": lambda v: v is None or isinstance(v, str),
    "location": lambda v: v is None or isinstance(v, str),
    "size": lambda v: v is None or (type(v) is int and v >= 0),
    "declare_length": lambda v: type(v) is bool,
}
_FAULT_KINDS: Final = frozenset(get_args(FaultKind))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise _BadControl("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadControl("the body must be a JSON object")
    return body


def _fault(spec: Any) -> Fault:
    if not isinstance(spec, dict):
        raise _BadControl("each fault must be an object")
    unknown = set(spec) - set(_FAULT_FIELDS)
    if unknown:
        raise _BadControl(f"unknown fault field {sorted(unknown)[0]!r}")
    if spec.get("kind") not in _FAULT_KINDS:
        raise _BadControl(f"kind must be one of {sorted(_FAULT_KINDS)}")
    for name, value in spec.items():
        if name != "kind" and not _FAULT_CHECKS[name](value):
            raise _BadControl(f"fault field {name!r} cannot be {value!r}")
    return Fault(**spec)


def _count(body: dict[str, Any]) -> int:
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise _BadControl("count must be a whole number of at least 1")
    return count


def _people(request: web.Request) -> People:
    people = request.app[CONTROL].people
    if people is None:
        raise _BadControl("this emulator has no people to change")
    return people


async def _info(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    people = control.people.size() if control.people is not None else 0
    return web.json_response(
        {"vendor": control.vendor, "people": people, "queued_faults": len(control.faults)}
    )


async def _requests(request: web.Request) -> web.Response:
    log = request.app[CONTROL].log
    return web.json_response({"requests": [dataclasses.asdict(r) for r in log]})


async def _post_faults(request: web.Request) -> web.Response:
    specs = (await _body(request)).get("faults")
    if not isinstance(specs, list) or not specs:
        raise _BadControl("faults must be a non-empty list")
    faults = [_fault(spec) for spec in specs]
    control = request.app[CONTROL]
    control.inject(*faults)
    return web.json_response({"queued_faults": len(control.faults)})


async def _delete_faults(request: web.Request) -> web.Response:
    request.app[CONTROL].faults.clear()
    return web.json_response({"queued_faults": 0})


async def _put_rate_limit(request: web.Request) -> web.Response:
    body = await _body(request)
    requests, window = body.get("requests"), body.get("window")
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise _BadControl("requests must be a whole number of at least 1")
    if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
        raise _BadControl("window must be a number of seconds above 0")
    request.app[CONTROL].rate_limit = RateLimit(requests=requests, window=float(window))
    return web.json_response({"requests": requests, "window": float(window)})


async def _delete_rate_limit(request: web.Request) -> web.Response:
    request.app[CONTROL].rate_limit = None
    return web.json_response({"requests": None, "window": None})


async def _touch(request: web.Request) -> web.Response:
    count = _count(await _body(request))
    try:
        return web.json_response({"changed": _people(request).touch(count)})
    except ValueError as exc:
        raise _BadControl(str(exc)) from None


async def _retire(request: web.Request) -> web.Response:
    count = _count(await _body(request))
    try:
        return web.json_response({"changed": _people(request).retire(count)})
    except ValueError as exc:
        raise _BadControl(str(exc)) from None


@web.middleware
async def _control_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except _BadControl as exc:
        return web.json_response({"error": str(exc)}, status=400)


def add_control_routes(app: web.Application) -> None:
    """Serve the control surface under `/_emulator` (a sub-app, exempt from faults)."""
    control = web.Application(middlewares=[_control_errors])
    control[CONTROL] = app[CONTROL]
    r = control.router
    r.add_get("", _info)
    r.add_get("/requests", _requests)
    r.add_post("/faults", _post_faults)
    r.add_delete("/faults", _delete_faults)
    r.add_put("/rate_limit", _put_rate_limit)
    r.add_delete("/rate_limit", _delete_rate_limit)
    r.add_post("/people/touch", _touch)
    r.add_post("/people/retire", _retire)
    app.add_subapp("/_emulator", control)


# --------------------------------------------------------------------------- authorization


#: How long an emulated authorization code can be exchanged (RFC 6749 4.1.2: "a maximum
#: authorization code lifetime of 10 minutes is RECOMMENDED").
CODE_SECONDS: Final = 600.0


@dataclass(frozen=True)
class _Code:
    redirect_uri: str
    challenge: str
    scope: str
    until: float


@dataclass
class Authorization:
    """One vendor's emulated authorization server (OAuth 2.0 authorization code, PKCE S256):
    what it issued, and the knobs a test turns."""

    client_id: str
    client_secret: str
    #: True: each refresh token works once and its use hands out the next (Nmbrs, Loket);
    #: False: a refresh token stays valid (HubSpot).
    rotate: bool = True
    #: The consent screen's answer: True sends the browser back with `error=access_denied`.
    deny: bool = False
    #: Redirect URIs registered for the client; None accepts any http(s) one.
    redirect_uris: tuple[str, ...] | None = None
    #: How long an access token works (its `expires_in`, in seconds).
    expires_in: int = 1800
    clock: Callable[[], float] = time.monotonic
    codes: dict[str, _Code] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    #: Every access token issued, with when it stops working (`clock` seconds).
    access_tokens: dict[str, float] = field(default_factory=dict)
    #: Every form the token endpoint was sent (tests check what a client sent).
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def accepts(self, access_token: str) -> bool:
        """Whether an API request's bearer token is one this server issued, still working."""
        until = self.access_tokens.get(access_token)
        return until is not None and until > self.clock()

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (tests: a token that ran out)."""
        self.access_tokens = dict.fromkeys(self.access_tokens, float("-inf"))

    def _issue(self) -> dict[str, Any]:
        access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(24)
        self.access_tokens[access] = self.clock() + self.expires_in
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


AUTHORIZATION: Final = web.AppKey("emulator_authorization", Authorization)


def _oauth_error(code: str, status: int = 400) -> web.Response:
    """An RFC 6749 5.2 error body."""
    return web.json_response(
        {"error": code, "error_description": f"emulated {code}"},
        status=status,
        headers={"Cache-Control": "no-store"},
    )


def _back(redirect_uri: str, **params: str) -> web.HTTPFound:
    sep = "&" if "?" in redirect_uri else "?"
    return web.HTTPFound(redirect_uri + sep + urllib.parse.urlencode(params))


async def _authorize(request: web.Request) -> web.StreamResponse:
    """The consent screen, consenting (or refusing, with `deny`) at once."""
    server = request.app[AUTHORIZATION]
    q = request.query
    redirect_uri = q.get("redirect_uri", "")
    registered = server.redirect_uris
    # RFC 6749 4.1.2.1: a wrong client or redirect URI is shown, never redirected to.
    if (
        q.get("client_id") != server.client_id
        or not redirect_uri.startswith(("http://", "https://"))
        or (registered is not None and redirect_uri not in registered)
    ):
        return web.Response(status=400, text="unknown client or redirect_uri")
    state = {"state": q["state"]} if "state" in q else {}
    if q.get("response_type") != "code":
        raise _back(redirect_uri, error="unsupported_response_type", **state)
    challenge = q.get("code_challenge", "")
    if q.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
        raise _back(redirect_uri, error="invalid_request", **state)
    if server.deny:
        raise _back(redirect_uri, error="access_denied", **state)
    code = secrets.token_urlsafe(24)
    server.codes[code] = _Code(
        redirect_uri, challenge, q.get("scope", ""), server.clock() + CODE_SECONDS
    )
    raise _back(redirect_uri, code=code, **state)


def _client_of(request: web.Request, form: dict[str, str]) -> tuple[str, str]:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            pair = base64.b64decode(encoded, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return "", ""
        user, _, secret = pair.partition(":")
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


async def _token(request: web.Request) -> web.Response:
    server = request.app[AUTHORIZATION]
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    server.token_requests.append(form)
    client_id, secret = _client_of(request, form)
    if not (
        hmac.compare_digest(client_id.encode(), server.client_id.encode())
        and hmac.compare_digest(secret.encode(), server.client_secret.encode())
    ):
        return _oauth_error("invalid_client", 401)
    grant = form.get("grant_type")
    if grant == "authorization_code":
        found = server.codes.pop(form.get("code", ""), None)  # one use, right or wrong
        verifier = form.get("code_verifier", "")
        if (
            found is None
            or found.until <= server.clock()
            or form.get("redirect_uri") != found.redirect_uri
            or not 43 <= len(verifier) <= 128
            or _s256(verifier) != found.challenge
        ):
            return _oauth_error("invalid_grant")
        return web.json_response(server._issue(), headers={"Cache-Control": "no-store"})
    if grant == "refresh_token":
        refresh = form.get("refresh_token", "")
        if refresh not in server.refresh_tokens:
            return _oauth_error("invalid_grant")
        answer = server._issue()
        if server.rotate:
            server.refresh_tokens.discard(refresh)
        else:
            server.refresh_tokens.discard(answer["refresh_token"])
            answer["refresh_token"] = refresh
        return web.json_response(answer, headers={"Cache-Control": "no-store"})
    return _oauth_error("unsupported_grant_type")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def add_authorization_routes(
    app: web.Application,
    client_id: str,
    client_secret: str,
    *,
    authorize_path: str = "/oauth/authorize",
    token_path: str = "/oauth/token",  # noqa: S107 - a path
    rotate: bool = True,
    redirect_uris: tuple[str, ...] | None = None,
    expires_in: int = 1800,
) -> Authorization:
    """Serve an authorization server for one registered client on the emulator:
    `GET authorize_path` consents at once (a 302 back to `redirect_uri` with `code` and
    `state`, or `error=access_denied` while `deny` is set) and `POST token_path` takes the
    `authorization_code` grant (one-time codes, PKCE S256, the same `redirect_uri`, client
    auth in the body or as Basic) and the `refresh_token` grant (rotating unless `rotate`
    is False), answering errors as RFC 6749 5.2 bodies. The vendor's API accepts the access
    tokens it issued, for `expires_in` seconds, through `Authorization.accepts` (kept as
    `app[AUTHORIZATION]`)."""
    server = Authorization(
        client_id, client_secret, rotate=rotate, redirect_uris=redirect_uris,
        expires_in=expires_in,
    )  # fmt: skip
    app[AUTHORIZATION] = server
    app.router.add_get(authorize_path, _authorize, allow_head=False)
    app.router.add_post(token_path, _token)
    return server
