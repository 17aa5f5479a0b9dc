"""The gateway's HTTP/1.1 connection layer: limits on what a client may hold open, problem
bodies for requests nobody could parse, and quiet logs. Every command that serves HTTP
(`sluis serve`, `sluis demo`, `sluis emulator`) starts its sites through `start_site`.

aiohttp's defaults suit a friendly network, not the internet:

- A connection may take an hour to send its request head. `header_timeout` becomes
  aiohttp's `keepalive_timeout`, whose timer starts when a connection opens and again when a
  response ends and is *not* moved by incoming bytes: a request head not complete by then
  (one header byte every 5 s) is dropped, and so is an idle keep-alive connection.
- There is no cap on open connections, so slow clients use up the file descriptors and
  the accept loop fails. `GatewaySite` answers connections over `max_connections` with a
  fixed 503 problem and closes them at once.
- Each failed `accept()` (EMFILE) logs a traceback through asyncio, once per attempt;
  `AcceptErrorLimiter` logs one line per interval with a count.
- A malformed request gets a `text/plain` 400 that quotes the offending bytes back (a 1 MB
  header included) and a logged traceback; `ProblemRequestHandler` answers with a problem
  body that quotes nothing and logs one line.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler

from gateway.api.problems import PROBLEM_JSON, problem_type

log = logging.getLogger("sluis.http")
ACCESS_LOG: Final = logging.getLogger("aiohttp.access")

#: Errors of `accept()` that mean "out of resources", which asyncio retries after a second.
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Backlog of the listening socket: asyncio accepts up to this many connections in one go,
#: before any of them (over the cap or not) can be closed again.
BACKLOG: Final = 128
#: File descriptors kept free when the connection cap is fitted under the process's limit:
#: one accept burst, plus the store, connector sessions and logs. With the default cap of
#: 512 a common `ulimit -n` of 1024 needs no fitting.
FD_RESERVE: Final = BACKLOG + 64


@dataclass(frozen=True)
class HttpLimits:
    """What one client connection may use. Defaults are those of `sluis serve`."""

    #: Seconds to send a complete request head, from connect or from the previous response.
    header_timeout: float = 15.0
    #: Open connections at most; more are answered 503 and closed.
    max_connections: int = 512
    #: Longest request line and longest header field, in bytes.
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64
    #: Seconds between two log lines about refused connections or failed accepts.
    log_interval: float = 60.0


class RateLimitedLog:
    """One line per interval about a repeating event, with how often it happened."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger, self._interval = logger, interval
        self._last = -float("inf")
        self._suppressed = 0

    def event(self, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d more since the last report)"
            args = (*args, self._suppressed)
        self._last, self._suppressed = now, 0
        self._logger.log(level, message, *args)


def _problem_bytes(status: int, detail: str) -> bytes:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return orjson.dumps(
        {"type": problem_type(status), "title": title, "status": status, "detail": detail}
    )


_REFUSAL_BODY: Final = _problem_bytes(503, "the gateway has too many open connections")
_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: " + PROBLEM_JSON.encode() + b"\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + _REFUSAL_BODY
)


class _Refusal(asyncio.Protocol):
    """A connection over the cap: a fixed 503, then closed; nothing is read or parsed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler with problem bodies for requests it could not parse."""

    def __init__(self, *args: Any, on_lost: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_lost = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            on_lost, self._on_lost = self._on_lost, _nothing
            on_lost()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # `message` and the exception text quote the request's bytes: neither is logged or
        # sent. The exception's type says enough (BadStatusLine, LineTooLong, ...).
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("error handling a request: %s", kind)
        elif isinstance(exc, BadHttpMethod):
            log.debug("refused a request that is not HTTP: %s", kind)
        else:
            log.info("refused a malformed HTTP request: %d %s", status, kind)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already started; the connection is dropped")
        detail = (
            "the gateway failed to handle this request"
            if status >= 500
            else "the request could not be parsed as HTTP/1.1"
        )
        resp = web.Response(
            status=status,
            body=_problem_bytes(status, detail),
            content_type=PROBLEM_JSON,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
        )
        resp.force_close()
        return resp


def _nothing() -> None:
    return None


class GatewayRunner(web.AppRunner):
    """An `AppRunner` whose connection settings (`handler_kwargs`) `GatewaySite` reuses."""

    def __init__(
        self,
        app: web.Application,
        limits: HttpLimits,
        *,
        access_log_class: type[AbstractAccessLogger] | None = None,
        access_log: logging.Logger | None = ACCESS_LOG,
    ) -> None:
        self.limits = limits
        self.handler_kwargs: dict[str, Any] = {
            "keepalive_timeout": limits.header_timeout,
            "max_line_size": limits.max_line_size,
            "max_field_size": limits.max_field_size,
            "max_headers": limits.max_headers,
            "access_log": access_log,
        }
        if access_log_class is not None:
            self.handler_kwargs["access_log_class"] = access_log_class
        super().__init__(app, **self.handler_kwargs)


class GatewaySite(web.BaseSite):
    """A TCP site that caps open connections and builds `ProblemRequestHandler`s."""

    def __init__(self, runner: GatewayRunner, host: str, port: int, *, backlog: int = BACKLOG):
        super().__init__(runner, backlog=backlog)
        self._gateway_runner = runner
        self._host, self._port = host, port
        self._open = 0
        self._cap = runner.limits.max_connections
        self._refusals = RateLimitedLog(log, runner.limits.log_interval)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        if self._server is not None:
            sockets = getattr(self._server, "sockets", None) or ()
            for sock in sockets:
                return int(sock.getsockname()[1])
        return self._port

    @property
    def open_connections(self) -> int:
        return self._open

    def _lost(self) -> None:
        self._open -= 1

    def _protocol(self) -> asyncio.BaseProtocol:
        if self._open >= self._cap:
            self._refusals.event(
                logging.WARNING,
                "refused a connection: %d connections are open (max_connections)",
                self._open,
            )
            return _Refusal()
        server = self._gateway_runner.server
        assert server is not None
        self._open += 1
        return ProblemRequestHandler(
            server,
            loop=asyncio.get_running_loop(),
            on_lost=self._lost,
            **self._gateway_runner.handler_kwargs,
        )

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self._host, self._port, backlog=self._backlog
        )


class AcceptErrorLimiter:
    """An event-loop exception handler: failed `accept()`s (out of file descriptors) are
    logged once per interval with a count and no traceback; anything else goes to the
    handler that was there before."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        self._log = RateLimitedLog(log, interval)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            self._log.event(
                logging.ERROR,
                "cannot accept connections: %s; lower max_connections or raise the "
                "file-descriptor limit (ulimit -n)",
                exc.strerror,
            )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def install(self) -> None:
        self._loop.set_exception_handler(self)

    def uninstall(self) -> None:
        self._loop.set_exception_handler(self._previous)


def fit_to_fd_limit(limits: HttpLimits) -> HttpLimits:
    """`limits` with `max_connections` lowered under the process's file-descriptor limit,
    so that the cap, not `accept()`, is what turns connections away."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return limits
    if soft == resource.RLIM_INFINITY or limits.max_connections + FD_RESERVE <= soft:
        return limits
    fitted = max(1, soft - FD_RESERVE)
    log.warning(
        "max_connections %d is over the file-descriptor limit %d; using %d",
        limits.max_connections,
        soft,
        fitted,
    )
    return HttpLimits(**{**limits.__dict__, "max_connections": fitted})


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    limits: HttpLimits | None = None,
    *,
    access_log_class: type[AbstractAccessLogger] | None = None,
    access_log: logging.Logger | None = ACCESS_LOG,
) -> tuple[GatewayRunner, GatewaySite]:
    """Set up `app` and listen on host:port (0 = any free port); `runner.cleanup()` stops it.

    Installs the accept-error limiter on the running loop (once per loop)."""
    limits = fit_to_fd_limit(limits or HttpLimits())
    loop = asyncio.get_running_loop()
    if not isinstance(loop.get_exception_handler(), AcceptErrorLimiter):
        AcceptErrorLimiter(loop, limits.log_interval).install()
    runner = GatewayRunner(app, limits, access_log_class=access_log_class, access_log=access_log)
    await runner.setup()
    site = GatewaySite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site
