"""The gateway's side of its source worker processes (`gateway.sync.source_worker`).

With `source_processes = N` (N > 0), the sync engine fetches and minimises every page in
one of N worker processes instead of its own: a run opens a `RemoteConnector`, which the
engine drives exactly like an in-process connector (`fetch_page`, `aclose`, `stats`).
Raw vendor records then never enter the process that serves the feed and holds the keys
to the store, and parsing them no longer takes the GIL from feed pages and page commits.

Workers start with `sluis serve` (`SourceWorkers.start`), or elsewhere on first use, on
the event loop that uses them, and are started again when one has died (a run that was on
it fails with the reason; the next run gets a new one). A worker exits by itself when the
gateway goes away (its socket closes).

Not a sandbox: a worker runs as the same user. It is started without the gateway's
settings and secrets in its environment (`worker_environment`), and is handed per run only
what that run needs (the source's credentials, the tenant's subject key, the mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, cast, get_args

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    ConnectorStats,
    ErrorKind,
    KeepCredentials,
    MinimisedPage,
    PageRequest,
    RetryPolicy,
)
from gateway.sync.source_frames import FrameError, encode, page_of, read_frame

log = logging.getLogger("sluis.sync")

_KINDS: Final = frozenset(get_args(ErrorKind))


class SourceWorkerFailed(Exception):
    """The worker process failed (it stopped, or a fetch raised what no connector should);
    the message names the kind of failure only."""


#: Environment variables a worker does not get: the gateway's own settings and secrets
#: (`SLUIS_*`: the master key, the admin and metrics tokens, the database URL) and libpq's.
_WITHHELD: Final = ("SLUIS_", "PG")


def worker_environment() -> dict[str, str]:
    """The gateway's environment less its settings and secrets: a worker parses what
    sources send, and needs none of them (what a run needs is handed over per run)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(_WITHHELD)}


class _Link:
    """One worker process and the stream to it, on one event loop."""

    def __init__(self, log_format: str, log_level: str) -> None:
        parent, child = socket.socketpair()
        try:
            worker = "gateway.sync.source_worker"
            options = ["--log-format", log_format, "--log-level", log_level]
            self.process = subprocess.Popen(  # noqa: S603 (our own module, fixed arguments)
                [sys.executable, "-m", worker, "--fd", str(child.fileno()), *options],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                env=worker_environment(),
            )
        finally:
            child.close()
        self._socket = parent
        self.loop = asyncio.get_running_loop()
        self.runs: dict[str, RemoteConnector] = {}
        self._waiting: dict[tuple[str, object], asyncio.Future[dict[str, Any]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._ready: asyncio.Task[None] = asyncio.ensure_future(self._connect())
        self._reading: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._pings = itertools.count(1)
        self.alive = True

    async def _connect(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=self._socket, limit=2**20)
        self._reading = asyncio.ensure_future(self._read(reader))

    async def send(self, message: dict[str, Any]) -> None:
        """To the worker; `SourceWorkerFailed` if it has stopped, also when that shows
        only as the socket reset under this write (the reader has not seen it yet)."""
        await self._ready
        if not self.alive or self._writer is None:
            raise SourceWorkerFailed("the source worker process stopped")
        try:
            self._writer.write(encode(message))
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise SourceWorkerFailed("the source worker process stopped") from None

    def expect(self, run_id: str, key: object) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._waiting[(run_id, key)] = future
        return future

    async def ping(self) -> None:
        """Once the worker answers: it has started (imported what it runs) and reads.
        Each ping has its own number (answers are matched by it, under no run)."""
        number = next(self._pings)
        answered = self.expect("", number)
        try:
            await self.send({"op": "ping", "run": "", "id": number})
            await answered
        finally:
            self.forget("", number)

    def forget(self, run_id: str, key: object) -> None:
        self._waiting.pop((run_id, key), None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        why = "the source worker process stopped"
        try:
            while (message := await read_frame(reader)) is not None:
                self._route(message)
        except FrameError as exc:
            why = f"the source worker process sent a bad message ({exc})"
            log.error("%s", why)
        except OSError:
            pass  # it stopped (killed, crashed): the connection was reset
        finally:
            self.alive = False
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(SourceWorkerFailed(why))
            self._waiting.clear()

    def _route(self, message: dict[str, Any]) -> None:
        op, run_id = message.get("op"), str(message.get("run", ""))
        if op == "call":
            task = asyncio.ensure_future(self._answer(run_id, message))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            return
        key = "close" if op == "closed" else 0 if op == "opened" else message.get("id")
        future = self._waiting.pop((run_id, key), None)
        if future is not None and not future.done():
            future.set_result(message)

    async def _answer(self, run_id: str, message: dict[str, Any]) -> None:
        run = self.runs.get(run_id)
        ok = run is not None and await run.answer(message)
        with contextlib.suppress(SourceWorkerFailed, OSError, ConnectionError):
            await self.send({"op": "answer", "run": run_id, "call": message["call"], "ok": ok})

    def close(self) -> None:
        """Stop the worker. From its own running loop the stream is closed as usual;
        otherwise (the loop has ended, as when `sluis serve` closes its services after the
        server stopped, or another loop calls) the socket is closed directly, since a
        transport can only be closed through its loop."""
        self.alive = False
        try:
            own_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            own_loop = False
        if own_loop and self._reading is not None:
            self._reading.cancel()
        if own_loop and self._writer is not None:
            self._writer.close()
        else:
            self._socket.close()
        self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


class SourceWorkers:
    """`count` worker processes, started by `start` or on first use; a run goes to the least
    busy."""

    def __init__(self, count: int, *, log_format: str = "text", log_level: str = "INFO") -> None:
        self.count = count
        self.log_format, self.log_level = log_format, log_level
        self._links: list[_Link] = []
        self._run_numbers = itertools.count(1)

    def _link(self) -> _Link:
        loop = asyncio.get_running_loop()
        if any(link.loop is not loop for link in self._links):
            # Started by another event loop (a test's, a CLI command's): theirs is gone.
            self.close()
        for link in self._links:
            if not (link.alive or link.runs):
                link.close()  # it died: reap the process rather than leave a zombie
        self._links = [link for link in self._links if link.alive or link.runs]
        while len(self._links) < self.count:
            self._links.append(_Link(self.log_format, self.log_level))
        alive = [link for link in self._links if link.alive]
        if not alive:
            link = _Link(self.log_format, self.log_level)
            self._links.append(link)
            return link
        return min(alive, key=lambda link: len(link.runs))

    async def start(self) -> None:
        """Start the workers now, not at first use, and wait until each answers.

        `sluis serve` does at start: a process's first run then does not wait for a
        worker to start (0.3 s of a 2-core machine for Python and the gateway's imports,
        a tenth of a 100,000-record sync), and a worker that cannot start is reported
        when the gateway starts rather than by the first run. Raises
        `SourceWorkerFailed` if one stopped before it answered."""
        self._link()
        await asyncio.gather(*(link.ping() for link in self._links))

    async def open(
        self,
        config: ConnectorConfig,
        mapping_text: str,
        subject_key: bytes,
        *,
        retry: RetryPolicy | None,
        allow_private: bool,
        before_attempt: Callable[[], Awaitable[None]],
        keep_credentials: KeepCredentials | None,
        limit: int | None = None,
    ) -> RemoteConnector:
        """A connector for one run, built in a worker. Raises ConnectorError as building
        one in-process would (a refused address, a setting that cannot work). `limit`:
        minimise at most that many records of a page (a preview's `BoundedDoor`)."""
        link = self._link()
        run_id = f"r{next(self._run_numbers)}"
        remote = RemoteConnector(link, run_id, before_attempt, keep_credentials)
        link.runs[run_id] = remote
        opened = link.expect(run_id, 0)
        try:
            await link.send({
                "op": "open", "run": run_id, "type": config.type, "base_url": config.base_url,
                "credentials": dict(config.credentials), "settings": dict(config.settings),
                "mapping": mapping_text, "key": subject_key.hex(),
                "retry": None if retry is None else vars(retry), "allow_private": allow_private,
                "limit": limit,
            })  # fmt: skip
            reply = await opened
        except BaseException:
            link.forget(run_id, 0)
            link.runs.pop(run_id, None)
            raise
        if reply.get("op") != "opened":
            link.runs.pop(run_id, None)
            raise remote.failure(reply)
        return remote

    def pids(self) -> list[int]:
        """The worker processes running now (for benches and operators' tools)."""
        return [link.process.pid for link in self._links if link.process.poll() is None]

    def close(self) -> None:
        for link in self._links:
            link.close()
        self._links = []


class RemoteConnector:
    """A run's connector living in a worker: what the engine calls, forwarded."""

    def __init__(
        self,
        link: _Link,
        run_id: str,
        before_attempt: Callable[[], Awaitable[None]],
        keep_credentials: KeepCredentials | None,
    ) -> None:
        self._link, self._run = link, run_id
        self._before_attempt, self._keep = before_attempt, keep_credentials
        self._fetches = itertools.count(1)
        #: What the gateway raised when the worker asked it something: raised again here.
        self._refusal: BaseException | None = None
        self.stats = ConnectorStats()
        #: From the worker's projector, once closed (`Projector.records_seen`, ...).
        self.records_seen = 0
        self.unseen_source_fields: list[str] = []
        #: With a `limit`: records of the page minimised, and whether it held more.
        self.read = 0
        self.more = False

    async def answer(self, message: dict[str, Any]) -> bool:
        """Run the gateway's side of a call the connector made; False stops its fetch."""
        try:
            if message.get("what") == "before_attempt":
                await self._before_attempt()
            elif message.get("what") == "keep_credentials" and self._keep is not None:
                credentials = message.get("credentials")
                if not isinstance(credentials, Mapping):
                    raise SourceWorkerFailed("rotated credentials of the wrong shape")
                await self._keep({str(k): str(v) for k, v in credentials.items()})
            elif message.get("what") != "keep_credentials":
                raise SourceWorkerFailed("an unknown call")
        except Exception as exc:  # raised again from fetch_page, in the engine's task
            self._refusal = exc
            return False
        return True

    async def fetch_page(self, request: PageRequest) -> MinimisedPage:
        fetch_id = next(self._fetches)
        replied = self._link.expect(self._run, fetch_id)
        try:
            await self._link.send({
                "op": "fetch", "run": self._run, "id": fetch_id, "mode": request.mode.value,
                "cursor": request.cursor, "since": request.since,
            })  # fmt: skip
            reply = await replied
        except SourceWorkerFailed:
            self._link.forget(self._run, fetch_id)
            raise
        except asyncio.CancelledError:
            self._link.forget(self._run, fetch_id)
            with contextlib.suppress(SourceWorkerFailed, OSError, ConnectionError):
                await asyncio.shield(
                    self._link.send({"op": "cancel", "run": self._run, "id": fetch_id})
                )
            raise
        if reply.get("op") == "page":
            return page_of(reply.get("page") or {})
        raise self.failure(reply)

    def failure(self, reply: dict[str, Any]) -> BaseException:
        """The exception a non-page reply stands for."""
        if reply.get("op") == "refused" and self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            return refusal
        kind, message = reply.get("kind"), str(reply.get("message", ""))[:2000]
        if reply.get("op") == "error" and kind in _KINDS:
            status = reply.get("status")
            code = status if type(status) is int else None
            return ConnectorError(cast("ErrorKind", kind), message, status=code)
        if reply.get("op") == "cancelled":
            return asyncio.CancelledError()
        return SourceWorkerFailed(f"the source worker failed ({message or reply.get('op')})")

    async def aclose(self) -> None:
        link = self._link
        try:
            if link.alive:
                closed = link.expect(self._run, "close")
                try:
                    await link.send({"op": "close", "run": self._run})
                    reply = await asyncio.wait_for(closed, timeout=30)
                except (SourceWorkerFailed, OSError, ConnectionError, TimeoutError):
                    link.forget(self._run, "close")
                    return
                self._take_report(reply)
        finally:
            link.runs.pop(self._run, None)

    def _take_report(self, reply: dict[str, Any]) -> None:
        stats = reply.get("stats") or {}
        with contextlib.suppress(TypeError, ValueError):
            self.stats = ConnectorStats(
                requests=int(stats.get("requests", 0)),
                retries=int(stats.get("retries", 0)),
                rate_limited=int(stats.get("rate_limited", 0)),
                waited_seconds=float(stats.get("waited_seconds", 0.0)),
            )
            self.records_seen = int(reply.get("records_seen", 0))
            self.unseen_source_fields = [str(name) for name in reply.get("unseen") or []]
            self.read = int(reply.get("read", 0))
            self.more = bool(reply.get("more", False))
