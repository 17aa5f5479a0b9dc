"""Starting a sync from the console and watching it: the run page refreshes itself (a plain
`<meta http-equiv="refresh">`, no script needed) while the run is running.

Runs started here belong to the console app, whose cleanup cancels the unfinished ones at
shutdown, as the API's do; the engine marks them interrupted and the next start resumes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final

from aiohttp import web

from gateway.accounts.policy import check
from gateway.console.kit import TASKS, PageError, call, posted, render, services, signed_in, url
from gateway.store.records import NotFound, RunRecord
from gateway.sync.engine import ConnectorPaused, PushedSource, SyncBusy
from gateway.sync.instructions import InstructionRefused

log = logging.getLogger("sluis.console")

REFRESH_SECONDS: Final = 2
RUNS_SHOWN: Final = 20
STOP_TIMEOUT_SECONDS: Final = 10.0


def _spawn(tasks: set[asyncio.Task[Any]], work: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def console_syncs(app: web.Application) -> AsyncIterator[None]:
    """Cancel the console's unfinished runs at shutdown (a `cleanup_ctx`)."""
    yield
    running = app[TASKS]
    tasks = list(running)
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
        if pending:
            log.warning("%d console sync runs did not stop in time", len(pending))


async def start_sync(request: web.Request) -> web.StreamResponse:
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    principal, _ = await posted(request, back=url("t", tenant, "connectors", connector))
    check(principal, "tenant.configure", tenant)
    s = services(request)
    try:
        await call(s.store.get_connector, tenant, connector)
        run = await s.engine.start(tenant, connector)
    except NotFound:
        raise PageError(404, "connector.not_found", connector=connector) from None
    except ConnectorPaused:
        raise PageError(409, "sync.paused") from None
    except SyncBusy:
        raise PageError(409, "sync.busy") from None
    except (InstructionRefused, PushedSource) as refusal:
        raise PageError(409, "sync.refused", reason=str(refusal)) from None
    _spawn(request.config_dict[TASKS], s.engine.run(run))
    raise web.HTTPSeeOther(url("t", tenant, "connectors", connector, "runs", run.id))


async def runs_page(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    check(principal, "tenant.read", tenant)
    s = services(request)
    try:
        await call(s.store.get_connector, tenant, connector)
    except NotFound:
        raise PageError(404, "connector.not_found", connector=connector) from None
    runs = await call(s.store.list_runs, tenant, connector, RUNS_SHOWN)
    return render(
        request, "runs.html", principal=principal, tenant=tenant, connector=connector, runs=runs
    )


async def run_page(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    m = request.match_info
    check(principal, "tenant.read", m["tenant"])
    s = services(request)
    try:
        run: RunRecord = await call(s.store.get_run, m["run"])
    except NotFound:
        raise PageError(404, "error.not_found") from None
    if (run.tenant, run.connector) != (m["tenant"], m["connector"]):
        raise PageError(404, "error.not_found")
    return render(
        request,
        "run.html",
        principal=principal,
        tenant=run.tenant,
        connector=run.connector,
        run=run,
        refresh=REFRESH_SECONDS if run.status == "running" else None,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    c = "/t/{tenant}/connectors/{connector}"
    router.add_post(c + "/sync", start_sync)
    router.add_get(c + "/runs", runs_page, allow_head=False)
    router.add_get(c + "/runs/{run}", run_page, allow_head=False)
