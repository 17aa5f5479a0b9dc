"""`sluis serve`: the gateway as a long-running service (admin API, feed, metrics, scheduler)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from gateway.api.app import AccessLogger, make_app
from gateway.api.protocol import HttpLimits, start_site
from gateway.keys.master import SecretError
from gateway.keys.signing import SigningKeyError
from gateway.runtime import heap
from gateway.runtime.config import ConfigError, Settings, load_settings
from gateway.runtime.logs import configure_logging
from gateway.runtime.services import Services, admin_token_path
from gateway.store.protocols import StoreError
from gateway.sync.scheduler import resume_context, scheduler_context
from gateway.sync.source_process import SourceWorkerFailed

log = logging.getLogger("sluis.serve")

#: Seconds between self-checks of every ledger (the first runs at start).
LEDGER_CHECK_SECONDS: Final = 24 * 3600.0


def ledger_check_context(
    services: Services, *, interval: float = LEDGER_CHECK_SECONDS
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` entry that recomputes every tenant's ledger at start and then daily.

    `sluis audit verify` is a command someone has to run; a damaged or rewritten ledger
    (a bad restore, a disk error, a hand edit of the database) should page the operator
    without that. The outcome goes to `sluis_ledger_intact{tenant}`, which an alert rule
    watches. It runs on a worker thread, one tenant after the other, off the request path;
    every replica checks. The check at start reads every entry; the daily ones go on from
    where the last one ended (a year of 15-minute syncs is ~3.5M entries: a day's are read
    in seconds, the whole log in minutes), so a rewrite of old entries is found at the
    next start (a deployment, a restart), and one of new entries the same day."""

    async def check_forever() -> None:
        resume = False
        while True:
            try:
                await asyncio.to_thread(services.verify_ledgers, resume=resume)
                resume = True
            except Exception as exc:  # the store is down: not a verdict on the ledger
                log.warning("the ledger self-check could not run (%s)", type(exc).__name__)
            await asyncio.sleep(interval)

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(check_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


#: Seconds `sluis serve` waits at start for its source workers to answer.
WORKER_START_SECONDS: Final = 30.0


def source_workers_context(
    services: Services,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` entry that starts the source worker processes with the gateway
    (`SourceWorkers.start`), before the scheduler resumes or starts a run. One that does
    not start is logged, and the gateway serves on: the feed and the admin API need no
    worker, and a run starts a worker again when it needs one."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(services.start_workers(), WORKER_START_SECONDS)
        except (SourceWorkerFailed, TimeoutError) as exc:
            log.error("the source worker processes did not start (%s)", exc or "timed out")
        yield

    return context


async def _serve(services: Services) -> None:
    """Listen until SIGINT or SIGTERM, then stop: sites first, then the app's cleanup."""
    settings = services.settings
    app = make_app(services)
    # The scheduler resumes runs a previous process left half-way; without it, resume them
    # once (a run left "running" would block its connector for good).
    app.cleanup_ctx.append(source_workers_context(services))
    app.cleanup_ctx.append(
        scheduler_context(services, tick=settings.scheduler_tick)
        if settings.scheduler
        else resume_context(services)
    )
    app.cleanup_ctx.append(ledger_check_context(services))
    limits = HttpLimits(
        header_timeout=settings.header_timeout, max_connections=settings.max_connections
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, site = await start_site(
        app, settings.host, settings.port, limits, access_log_class=AccessLogger
    )
    try:
        log.info("listening on %s", site.name)
        heap.settle()  # what starting made lives on: out of the collector's full passes
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"sluis serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        services = Services.open(settings)
    except (SecretError, SigningKeyError, StoreError, OSError) as exc:
        print(f"sluis serve: {_reason(exc)}", file=sys.stderr)
        return 2
    _announce(settings, services)
    try:
        asyncio.run(_serve(services))
    except OSError as exc:  # the port is taken, the host is not ours
        print(f"sluis serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
              file=sys.stderr)  # fmt: skip
        return 2
    finally:
        services.close()
    return 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or 'data directory'}: {exc.strerror}"
    return str(exc)


def _announce(settings: Settings, services: Services) -> None:
    if not services.accounts.bootstrap_open():
        return
    where = (
        "SLUIS_ADMIN_TOKEN"
        if settings.admin_token
        else f"the bootstrap token in {admin_token_path(settings)}"
    )
    print(
        "sluis serve: no operator has enrolled yet. Invite the first one with "
        f"{where}: POST /admin/v1/operators "
        '{"email": ..., "name": ..., "role": "operator"}, then open the invitation_url it '
        "returns; the bootstrap token stops working once an operator has enrolled.",
        file=sys.stderr,
    )
    if settings.metrics_token is None and settings.host not in {"127.0.0.1", "::1", "localhost"}:
        log.warning("/metrics is open to anyone who reaches %s; set metrics_token", settings.host)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="run the gateway (admin API, feed, metrics, scheduler)",
        description="Run the gateway. Settings come from --config and SLUIS_* variables.",
    )
    parser.add_argument("--config", metavar="FILE", help="sluis.toml (optional)")
    parser.set_defaults(run=_run)
