"""What every vendor emulator shares: a request log, a rate limit, and injectable faults.

The emulators (`connectors/<vendor>/emulator.py`) are real aiohttp apps that follow their
vendor's documented API. Tests and the demo steer them through an `EmulatorControl` kept in
the app (`app[CONTROL]`): queue faults for the next requests (a 5xx, a slow answer, a body
cut off mid-JSON, a 429), set a rate limit that answers the way the vendor does, and read
back which requests arrived and when (to check that a client honoured `Retry-After`).

Faults are consumed in order, one per matching request, so a test can say "the third page
fails twice, then works".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

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
    prefix = b'{"rows":['
    left = None if fault.size is None else fault.size - len(prefix)
    try:
        await response.write(prefix)
        while left is None or left > 0:
            chunk = _FILLER * 64 if left is None else (_FILLER * 64)[:left]
            await response.write(chunk)
            control.streamed_bytes += len(chunk)
            if left is not None:
                left -= len(chunk)
    except (ConnectionError, RuntimeError):
        return response  # the client hung up: what a capped reader does
    await response.write_eof()
    return response


def new_control(too_many: TooMany) -> EmulatorControl:
    return EmulatorControl(too_many=too_many)
