"""Interrupted runs resume side by side at start: a slow source does not hold back another.

Two connectors, each against its own AFAS emulator, are "crashed" after their first page.
A new process on the same data directory resumes both while one emulator answers its next
page only after a long delay (an injected `slow` fault): the other run must finish while the
slow one is still waiting, and with `concurrency=1` (the bound) it must wait its turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.afas.emulator import EMULATOR_TOKEN, make_app
from connectors.base import SyncMode
from connectors.emulator_kit import CONTROL, Fault
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.engine import PageHook
from gateway.sync.instructions import grant
from gateway.sync.scheduler import Scheduler
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.principals import system
from tests.test_sync import FAST, Crash

SLOW_SECONDS = 2.5


def _open(data: Path, hook: list[PageHook], concurrency: int = 4) -> Services:
    def after_page(run_id: str, pages: int) -> Any:
        return hook[0](run_id, pages) if hook else None

    settings = Settings(
        data_dir=data,
        admin_token="t" * 32,
        scheduler=False,
        allow_private_sources=True,
        resume_concurrency=concurrency,
    )
    return Services.open(settings, retry=FAST, after_page=after_page)


async def _interrupted_pair(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[Any]]
) -> tuple[dict[str, web.Application], list[PageHook]]:
    """Connectors `slow` and `quick`, each with a run left after its first page."""
    hook: list[PageHook] = []
    services = _open(tmp_path, hook)
    now = datetime.now(UTC)
    create_tenant(services.store, services.box, "acme", "Acme BV", now, by=system(services, "acme"))
    emulators: dict[str, web.Application] = {}
    for name in ("slow", "quick"):  # `slow` first: it is the first run resumed
        emulators[name] = make_app(people=300, seed=5)
        server = await aiohttp_server(emulators[name], host="127.0.0.1")
        create_connector(
            services.store,
            services.box,
            tenant="acme",
            by=system(services, "acme"),
            connector_id=name,
            type_name="afas",
            base_url=str(server.make_url("/profitrestservices")),
            credentials={"token": EMULATOR_TOKEN},
            mapping_text=bundled_mapping("afas").read_text(),
            settings={"page_size": 100},
            now=now,
        )
        grant(
            services.store,
            by=system(services, "acme"),
            connector=name,
            purpose="training",
            now=now,
        )

    def crash(run_id: str, pages: int) -> None:
        raise Crash

    hook.append(crash)
    for name in emulators:
        with pytest.raises(Crash):
            await services.engine.sync("acme", name, SyncMode.FULL)
        await asyncio.sleep(0.01)  # distinct start times: `slow` is resumed first
    hook.clear()
    services.close()
    return emulators, hook


async def _finish_times(services: Services, resume: Awaitable[Any]) -> dict[str, float]:
    """When each connector's run stopped being `running` (monotonic seconds from start)."""
    t0 = time.monotonic()
    task = asyncio.ensure_future(resume)
    done: dict[str, float] = {}
    while len(done) < 2:
        for name in ("slow", "quick"):
            last = services.store.last_run("acme", name)
            if name not in done and last is not None and last.status != "running":
                assert last.status == "succeeded", last.error
                done[name] = time.monotonic() - t0
        await asyncio.sleep(0.02)
        assert time.monotonic() - t0 < 30, "resumed runs did not finish"
    await task
    return done


@pytest.mark.parametrize("how", ["engine", "scheduler"])
async def test_a_slow_source_does_not_hold_back_another_resumed_run(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[Any]], how: str
) -> None:
    emulators, hook = await _interrupted_pair(tmp_path, aiohttp_server)
    emulators["slow"][CONTROL].inject(Fault("slow", seconds=SLOW_SECONDS))
    services = _open(tmp_path, hook)
    try:
        assert len(services.store.running_runs()) == 2
        if how == "engine":
            done = await _finish_times(services, services.engine.resume_interrupted(4))
        else:
            scheduler = Scheduler(services, tick=3600)
            loop = asyncio.ensure_future(scheduler.run_forever())
            done = await _finish_times(services, asyncio.sleep(0))
            loop.cancel()
            await scheduler.stop()
    finally:
        services.close()
    assert done["quick"] < SLOW_SECONDS <= done["slow"]
    for name in ("slow", "quick"):
        # 1 page before the crash, the 3 after it from the cursor; plus, maybe, the pages
        # that were on their way when the first process died: never committed, they are
        # asked for again. At most 3 of them: page 2 is asked for as page 1 arrives; page 3
        # as page 2 arrives, if it does before page 1 has committed; and a source worker,
        # handing over page 3, reads page 4 ahead.
        assert len(emulators[name][CONTROL].requests_to("/profitrestservices")) in range(4, 8)


async def test_resumption_is_bounded(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    emulators, hook = await _interrupted_pair(tmp_path, aiohttp_server)
    emulators["slow"][CONTROL].inject(Fault("slow", seconds=1.0))
    services = _open(tmp_path, hook, concurrency=1)
    try:
        done = await _finish_times(services, services.engine.resume_interrupted(1))
    finally:
        services.close()
    assert done["slow"] < done["quick"]


async def test_one_failing_resumption_does_not_stop_the_others(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    emulators, hook = await _interrupted_pair(tmp_path, aiohttp_server)
    emulators["slow"][CONTROL].inject(*[Fault("error", status=503)] * 10)
    services = _open(tmp_path, hook)
    try:
        finished = await services.engine.resume_interrupted()
    finally:
        services.close()
    status = {run.connector: run.status for run in finished}
    assert status == {"slow": "failed", "quick": "succeeded"}
