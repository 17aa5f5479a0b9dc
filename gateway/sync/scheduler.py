"""Runs each authorised connector on its interval, one run per connector at a time.

The scheduler only starts what an active instruction covers: a connector without one is
simply not due (starting it would only log a refusal every interval). Runs that a previous
process left half-way are resumed first, several at a time (`resume_concurrency`), each
as its own task, so that one slow source does not hold back the others. Every tick reads
the schedule from the store, so connectors added, re-authorised or revoked through the
admin API take effect without a restart. A run that fails does not stop the loop; its error
is on the run record. A connector its admin paused is not due either.

Several replicas can each run a scheduler on one PostgreSQL store with no leader: starting
a run inserts it, and the database admits one running run per connector, so the replica
that loses the race just moves on; every tick also claims runs whose owner stopped renewing
its lease (a replica that died) and carries them on from their last committed page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from aiohttp import web

from connectors.base import SyncMode
from connectors.registry import connector_type
from gateway.runtime.config import Settings
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord
from gateway.sync.engine import ConnectorPaused, SyncBusy, SyncEngine
from gateway.sync.instructions import InstructionRefused, require_active

log = logging.getLogger("sluis.scheduler")
TICK_SECONDS: Final = 5.0
#: Incremental runs see changes but not people deleted at the source (or, for HubSpot,
#: archived): a full sync at least this often catches them.
FULL_SYNC_EVERY: Final = timedelta(hours=24)


class Services(Protocol):
    """What the scheduler uses of the gateway's services (`gateway.runtime.services`, which
    sits above sync/ and is passed in, never imported)."""

    @property
    def store(self) -> Store: ...
    @property
    def engine(self) -> SyncEngine: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def settings(self) -> Settings: ...


class Scheduler:
    def __init__(
        self,
        services: Services,
        *,
        tick: float = TICK_SECONDS,
        full_every: timedelta = FULL_SYNC_EVERY,
    ) -> None:
        self.services = services
        self.tick = tick
        self.full_every = full_every
        self._running: dict[tuple[str, str], asyncio.Task[object]] = {}

    def due(self, record: ConnectorRecord, now: datetime) -> bool:
        """Whether a connector should start a run now (interval elapsed, authorised)."""
        if record.paused_at is not None or connector_type(record.type).pushed:
            return False
        store = self.services.store
        last = store.last_run(record.tenant, record.id)
        if last is not None and last.status == "running":
            return False
        if last is not None and now - last.started_at < timedelta(seconds=record.interval_seconds):
            return False
        try:
            require_active(store, record.tenant, record.id, record.mapping_digest, now)
        except InstructionRefused:
            return False
        return True

    def mode_for(self, record: ConnectorRecord, now: datetime) -> SyncMode | None:
        """FULL when no full sync succeeded within `full_every`, else the engine's choice
        (incremental once there is a watermark)."""
        for run in self.services.store.list_runs(record.tenant, record.id, limit=100):
            if run.mode == SyncMode.FULL.value and run.status == "succeeded":
                return None if now - run.started_at < self.full_every else SyncMode.FULL
        return SyncMode.FULL

    async def run_forever(self) -> None:
        gate = asyncio.Semaphore(self.services.settings.resume_concurrency)
        for run in await self.services.engine.claim_orphans(starting=True):
            self._spawn((run.tenant, run.connector), self.services.engine.resume(run, gate))
        while True:
            await self.tick_once(gate)
            await asyncio.sleep(self.tick)

    async def tick_once(self, gate: asyncio.Semaphore | None = None) -> None:
        engine = self.services.engine
        if self.services.store.shared:
            gate = gate or asyncio.Semaphore(self.services.settings.resume_concurrency)
            for run in await engine.claim_orphans():
                if (run.tenant, run.connector) in self._running:
                    continue  # still ours: the task running it carries on, lease renewed
                log.info("scheduler: taking over run %s of %s/%s", run.id, run.tenant,
                         run.connector)  # fmt: skip
                self._spawn((run.tenant, run.connector), engine.resume(run, gate))
        now = self.services.clock()
        records = await asyncio.to_thread(self.services.store.list_connectors)
        for record in records:
            key = (record.tenant, record.id)
            if key in self._running:
                continue
            if not await asyncio.to_thread(self.due, record, now):
                continue
            mode = await asyncio.to_thread(self.mode_for, record, now)
            try:
                run = await self.services.engine.start(record.tenant, record.id, mode)
            except (ConnectorPaused, InstructionRefused, SyncBusy) as exc:
                log.info("scheduler: %s/%s not started: %s", record.tenant, record.id, exc)
                continue
            self._spawn(key, self.services.engine.run(run))

    def _spawn(self, key: tuple[str, str], coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def scheduler_context(
    services: Services, *, tick: float = TICK_SECONDS
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp `cleanup_ctx` entry that runs the scheduler for the app's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        scheduler = Scheduler(services, tick=tick)
        loop_task = asyncio.create_task(scheduler.run_forever())
        yield
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
        await scheduler.stop()

    return context


def resume_context(services: Services) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` entry that only resumes interrupted runs (scheduler switched off)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        concurrency = services.settings.resume_concurrency
        task = asyncio.create_task(services.engine.resume_interrupted(concurrency))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
