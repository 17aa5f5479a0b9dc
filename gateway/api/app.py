"""The gateway's HTTP application: admin API, pull feed, metrics, health and the OpenAPI
document, on one aiohttp app.

`/admin/v1` and `/feed/v1` are sub-applications, each with its own authentication (admin
token versus a feed consumer's token), so no route can be mounted without one. The root app
carries the problem middleware, so every error of every route is an RFC 9457 problem and
an unexpected exception never shows a traceback. State lives under typed `web.AppKey`s.

The app does not own `Services`: whoever opened them (the CLI, a test) closes them after the
app has shut down. The app owns the sync runs it started in the background, and its cleanup
cancels and awaits them, so the store is never closed under a running page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from prometheus_client.exposition import choose_encoder

from gateway.api.admin import make_admin_app
from gateway.api.destination_routes import push_workers
from gateway.api.feed import make_feed_app
from gateway.api.httpkit import (
    SERVICES,
    SYNC_TASKS,
    bearer_token,
    in_background,
    json_response,
    model_response,
    same_secret,
    services_of,
    unauthorized,
)
from gateway.api.ledger_routes import checkpoint_pusher
from gateway.api.models import Health
from gateway.api.openapi import document
from gateway.api.problems import Handler, Problem, problem_middleware
from gateway.api.scim import make_scim_app
from gateway.console.app import make_console_app
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.lifecycle import termination
from gateway.lifecycle.retention.job import RetentionJob
from gateway.lifecycle.retention.policy import defaults_of
from gateway.runtime.services import Services
from gateway.store import StoreError

log = logging.getLogger("sluis.http")

#: Bodies above this are refused with a 413 problem (a mapping file is a few KiB).
MAX_BODY_BYTES: Final = 256 * 1024
READY_TIMEOUT_SECONDS: Final = 2.0
STOP_TIMEOUT_SECONDS: Final = 10.0


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, route *template*, status, duration.

    aiohttp's default access log writes the request line with its query string, which can
    hold personal data (`?revoked_by=jan@acme.nl`); this one never logs a query, a header
    or a concrete path. Pass it to the runner: `web.AppRunner(app,
    access_log_class=AccessLogger)` (or `web.run_app(..., access_log_class=AccessLogger)`).
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        route = "(unmatched)"
        if isinstance(request, web.Request):
            try:
                resource = request.match_info.route.resource
            except (AssertionError, AttributeError):
                # A request aiohttp could not even parse (bad header bytes) never reached
                # routing; there is no route to name.
                resource = None
                route = "(unparsed)"
            route = resource.canonical if resource is not None else route
        self.logger.info("%s %s %s %.1fms", request.method, route, response.status, time * 1000)


async def background_syncs(app: web.Application) -> AsyncIterator[None]:
    """Cancel sync runs still going at shutdown; the engine marks them interrupted."""
    yield
    running = app[SYNC_TASKS]
    tasks = list(running)
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
        if pending:
            log.warning("%d sync runs did not stop within %ss", len(pending), STOP_TIMEOUT_SECONDS)


#: How often the app looks for terminated tenants whose grace period is over.
REAPER_INTERVAL_SECONDS: Final = 3600.0


async def tenant_reaper(app: web.Application) -> AsyncIterator[None]:
    """With the scheduler on: crypto-shred each terminated tenant once its grace period is
    over (`gateway.lifecycle.termination.destroy_due`), at start and then hourly."""
    s = app[SERVICES]
    if not s.settings.scheduler:
        yield
        return

    def acting_for(tenant: str) -> Acting:
        return Acting(SYSTEM, s.ledger(tenant))

    async def reap() -> None:
        grace = timedelta(days=s.settings.tenant_grace_days)
        while True:
            try:
                await asyncio.to_thread(termination.destroy_due, s.store, acting_for, grace,
                                        s.clock())  # fmt: skip
            except StoreError as exc:
                log.warning("tenant reaper: %s", type(exc).__name__)
            await asyncio.sleep(REAPER_INTERVAL_SECONDS)

    async with in_background(reap()):
        yield


async def retention_job(app: web.Application) -> AsyncIterator[None]:
    """With the scheduler on: the retention job (`gateway.lifecycle.retention.job`), due
    every `retention_interval` and run by one replica at a time; at shutdown a run in
    progress ends after its current batch, before the services are closed."""
    s = app[SERVICES]
    if not s.settings.scheduler:
        yield
        return
    job = RetentionJob(
        s.store,
        s.metrics,
        defaults=lambda: defaults_of(s.settings),
        acting_for=lambda tenant: Acting(SYSTEM, s.ledger(tenant)),
        clock=lambda: s.clock(),  # noqa: PLW0108 - tests may replace the clock
        owner=s.engine.replica,
        interval=s.settings.retention_interval,
    )
    async with in_background(job.run_forever()):
        yield
    await job.stop(STOP_TIMEOUT_SECONDS)


#: Seconds between rounds of indexing new subject lists; lists per transaction (a list is
#: about 1,000 index rows: a transaction of five holds the SQLite write lock ~10 ms).
INDEX_INTERVAL_SECONDS: Final = 15.0
INDEX_BATCH: Final = 5


async def ledger_indexer(app: web.Application) -> AsyncIterator[None]:
    """Index the ledger's new subject lists by id (`Services.index_ledgers`) every few
    seconds, a few lists per transaction: off the sync's page commit, which only stores its
    list; a lookup reads the lists not indexed yet directly, so it is complete meanwhile.
    Every replica may index: rows already there are skipped."""
    s = app[SERVICES]

    async def index_forever() -> None:
        while True:
            try:
                await asyncio.to_thread(s.index_ledgers, INDEX_BATCH)
            except StoreError as exc:
                log.warning("ledger indexer: %s", type(exc).__name__)
            await asyncio.sleep(INDEX_INTERVAL_SECONDS)

    async with in_background(index_forever()):
        yield


async def security_headers(request: web.Request, response: StreamResponse) -> None:
    """Nothing the gateway answers is to be sniffed as another type or kept in a cache."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")


async def healthz(request: web.Request) -> web.Response:
    return model_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    store = services_of(request).store
    try:
        await asyncio.wait_for(asyncio.to_thread(store.list_tenants), READY_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise Problem(503, "the store does not answer") from None
    return model_response(Health(status="ok"))


def metrics_handler(services: Services) -> Handler:
    """Prometheus exposition, behind `metrics_token` when one is set: the labels name
    tenants and connectors, which is more than an anonymous caller should learn.

    Collecting reads the store (ledger sizes, last successes), which waits while a page
    commits, so it runs in a worker thread: a scrape never stalls the event loop."""
    registry = services.metrics.registry
    expected = services.settings.metrics_token

    async def metrics(request: web.Request) -> StreamResponse:
        if expected is not None:
            given = bearer_token(request)
            if given is None or not same_secret(given, expected):
                raise unauthorized("metrics", "a valid metrics bearer token is required")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = await asyncio.to_thread(encode, registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return metrics


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(document())


async def worker_threads(app: web.Application) -> AsyncIterator[None]:
    """The event loop's worker threads (`asyncio.to_thread`), as many as
    `Settings.worker_thread_count` says, named `sluis-io_N`, from the app's start on (by
    default on PostgreSQL only; SQLite keeps asyncio's). Left to the loop at cleanup
    (`asyncio.run` shuts its executor down): whatever runs after the app's cleanup, such
    as closing the services, may still need one."""
    count = app[SERVICES].settings.worker_thread_count
    if count is not None:
        executor = ThreadPoolExecutor(count, thread_name_prefix="sluis-io")
        asyncio.get_running_loop().set_default_executor(executor)
    yield


def make_app(services: Services) -> web.Application:
    """The gateway's aiohttp application over opened `services`."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = services
    app[SYNC_TASKS] = set()
    app.cleanup_ctx.append(worker_threads)
    app.cleanup_ctx.append(background_syncs)
    app.cleanup_ctx.append(checkpoint_pusher)
    app.cleanup_ctx.append(tenant_reaper)
    app.cleanup_ctx.append(retention_job)
    app.cleanup_ctx.append(ledger_indexer)
    app.cleanup_ctx.append(push_workers)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics_handler(services), allow_head=False)
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.add_subapp("/admin/v1", make_admin_app())
    app.add_subapp("/feed/v1", make_feed_app())
    app.add_subapp("/scim/v2", make_scim_app())
    app.add_subapp("/console", make_console_app(services))
    return app
