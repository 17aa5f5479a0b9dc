"""Feed under load: 1 and 64 concurrent consumers paging over real HTTP, on SQLite or
PostgreSQL, with and without a sync running; each against a static body in the same run.

Run from the repository root:

    .venv/bin/python bench/bench_feed_load.py                       # SQLite
    .venv/bin/python bench/bench_feed_load.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_feed_load.py --consumers 1 64 --seconds 8 --no-sync
    .venv/bin/python bench/bench_feed_load.py --consumers 1 --commit-records 100
    .venv/bin/python bench/bench_feed_load.py --database-url ... --sync-process

The gateway (feed route, store, ledger, and for the sync rows a full AFAS sync after
another into new connectors of the same tenant) runs in this process, as `sluis serve`
does; with `--sync-process` the syncs run in a second process on the same database, as a
replica that only syncs beside one that only serves would (PostgreSQL). The consumers
run in their own process (one asyncio loop, one connection each), as platforms would:
each pages with `limit` from the start of the feed, and from the start again when it
reaches the head, for `--seconds` after a warm-up. Each page is timed from request to
last byte.

The baseline, measured in the same run with the same consumer code: an aiohttp route
serving a static body the size of a feed page (one full page as this gateway produced
it), so `feed/static` is the share of what aiohttp and this client can move that the feed
reaches. Issue #8's targets: with 64 consumers p99 < 100 ms and events/s >= 10% of the
static ceiling; a running sync adds at most 2x to feed p99.

With `--database-url` (a server URL) the bench creates a database of its own on that
server and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

TENANT = "bench"


# ---------------------------------------------------------------------------- the consumers


async def _consumer(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    limit: int,
    start_at: float,
    stop_at: float,
    latencies: list[float],
    counts: list[int],
) -> None:
    """Pages from the start, and from the start again at the head; records pages begun
    after `start_at` that end before `stop_at`."""
    headers = {"Authorization": f"Bearer {token}"}
    cursor: str | None = None
    while True:
        params = {"limit": str(limit), **({"after": cursor} if cursor else {})}
        t0 = time.perf_counter()
        if t0 >= stop_at:
            return
        async with session.get(url, params=params, headers=headers) as resp:
            if resp.status != 200:
                raise SystemExit(f"HTTP {resp.status}: {(await resp.read())[:300]!r}")
            body = await resp.read()
        t1 = time.perf_counter()
        # The cursor is the page's one field after the events: found, not parsed, so the
        # client's own JSON work does not eat the server's share of the two cores.
        at = body.rfind(b'"next_cursor":"')
        end = body.index(b'"', at + 15)
        new_cursor = body[at + 15 : end].decode()
        served = body.count(b'"seq":')
        cursor = None if served == 0 or new_cursor == cursor else new_cursor
        if t0 >= start_at and t1 <= stop_at:
            latencies.append(t1 - t0)
            counts.append(served)


async def load(url: str, tokens: list[str], limit: int, warmup: float, seconds: float) -> dict:
    conn = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    latencies: list[float] = []
    counts: list[int] = []
    async with aiohttp.ClientSession(connector=conn) as session:
        now = time.perf_counter()
        start_at, stop_at = now + warmup, now + warmup + seconds
        await asyncio.gather(
            *(
                _consumer(session, url, t, limit, start_at, stop_at, latencies, counts)
                for t in tokens
            )
        )
    return {"latencies": latencies, "events": sum(counts), "pages": len(counts)}


def run_consumers(url: str, tokens: list[str], args: argparse.Namespace) -> dict:
    """The consumers in their own process (see the module docstring)."""
    import subprocess

    cmd = [sys.executable, __file__, "--consume", url, "--limit", str(args.limit)]
    cmd += ["--warmup", str(args.warmup), "--seconds", str(args.seconds)]
    proc = subprocess.run(
        cmd,
        input=json.dumps(tokens).encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the consumer process failed: {proc.stderr.decode()[-2000:]}")
    return json.loads(proc.stdout)


async def run_consumers_async(url: str, tokens: list[str], args: argparse.Namespace) -> dict:
    return await asyncio.to_thread(run_consumers, url, tokens, args)


@dataclass
class Figures:
    pages: int
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, result: dict, seconds: float) -> Figures:
        lat = sorted(result["latencies"])
        if not lat:
            raise SystemExit("no page finished inside the measured window")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return cls(
            result["pages"], result["events"], seconds, statistics.median(lat) * 1e3, p99 * 1e3
        )

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds


# ---------------------------------------------------------------------------- the gateway


@contextmanager
def fresh_database(server_url: str | None) -> Iterator[str | None]:
    """A database of this run's own on the server (dropped afterwards), or None (SQLite)."""
    if server_url is None:
        yield None
        return
    import psycopg
    from psycopg import sql

    name = f"sluis_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def static_app(body: bytes) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    app = web.Application()
    app.router.add_get("/feed", page)
    return app


class Syncs:
    """Full AFAS syncs one after another, each into a new connector of the bench tenant
    (so each writes `people` new feed events), until stopped."""

    #: Connectors made so far, across instances (names must stay unique in the tenant).
    made = 0

    def __init__(self, services: object, people: int, prefix: str = "sync") -> None:
        from bench_sync import free_port, start_emulator

        self.prefix = prefix
        port = free_port()
        self.proc = start_emulator(people, port)
        self.base = f"http://127.0.0.1:{port}/profitrestservices"
        self.services = services
        self.records = 0
        self.runs = 0

    async def loop(self, stop: asyncio.Event) -> None:
        from connectors.afas.emulator import EMULATOR_TOKEN
        from connectors.base import SyncMode
        from gateway.ledger.audit import SYSTEM
        from gateway.ledger.record import Acting
        from gateway.runtime.services import Services
        from gateway.sync.instructions import grant
        from gateway.tenancy import create_connector
        from mappings import bundled_mapping

        s = self.services
        assert isinstance(s, Services)
        mapping = bundled_mapping("afas").read_text()
        while not stop.is_set():
            Syncs.made += 1
            name, now = f"{self.prefix}{Syncs.made}", datetime.now(UTC)
            by = Acting(SYSTEM, s.ledger(TENANT))

            def setup(name: str = name, now: datetime = now, by: Acting = by) -> None:
                create_connector(
                    s.store, s.box, tenant=TENANT, by=by, connector_id=name, type_name="afas",
                    base_url=self.base, credentials={"token": EMULATOR_TOKEN},
                    mapping_text=mapping, settings={"page_size": 1000}, now=now,
                )  # fmt: skip
                grant(s.store, by=by, connector=name, purpose="bench", now=now)

            await asyncio.to_thread(setup)
            run = await s.engine.sync(TENANT, name, SyncMode.FULL)
            if run.status != "succeeded":
                raise SystemExit(f"the sync failed: {run.error}")
            self.records += run.counts.get("fetched", 0)
            self.runs += 1

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


async def bench(args: argparse.Namespace) -> int:
    from bench_feed import fill

    from gateway.api.app import make_app
    from gateway.ledger.audit import SYSTEM
    from gateway.ledger.record import Acting
    from gateway.runtime import heap
    from gateway.runtime.services import Services
    from gateway.tenancy import create_consumer

    failed = False
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.database_url) as url:
        services = Services.open(
            _settings(Path(tmp), url, args.commit_records, args.source_processes)
        )
        backend = "PostgreSQL" if url else "SQLite"
        try:
            t0 = time.perf_counter()
            first, _ = fill(services, args.events)
            by = Acting(SYSTEM, services.ledger(TENANT))
            now = datetime.now(UTC)
            tokens = [first] + [
                create_consumer(services.store, tenant=TENANT, name=f"c{n}", now=now, by=by)[1]
                for n in range(1, max(args.consumers))
            ]
            print(f"{backend}: filled {args.events:,} events in {time.perf_counter() - t0:.1f}s")
            async with serving(make_app(services)) as port:
                heap.settle()  # as `sluis serve` does once listening
                feed_url = f"http://127.0.0.1:{port}/feed/v1/tenants/{TENANT}/events"
                async with aiohttp.ClientSession() as session:
                    headers = {"Authorization": f"Bearer {first}"}
                    params = {"limit": str(args.limit)}
                    async with session.get(feed_url, params=params, headers=headers) as r:
                        page_body = await r.read()
                async with serving(static_app(page_body)) as static_port:
                    static_url = f"http://127.0.0.1:{static_port}/feed"
                    print(
                        f"page: limit {args.limit}, {len(page_body):,} bytes; "
                        f"{args.seconds:g}s measured after {args.warmup:g}s warm-up"
                    )
                    header = (
                        f"{'case':<34}{'pages/s':>9}{'events/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
                        f"{'feed/static':>13}{'p99/static':>11}"
                    )
                    print(header)
                    quiet: dict[int, Figures] = {}
                    blocks = services.feed_blocks
                    for n in args.consumers:
                        static = Figures.of(
                            await run_consumers_async(static_url, tokens[:n], args), args.seconds
                        )
                        before = (blocks.hits, blocks.misses, blocks.shared)
                        feed = Figures.of(
                            await run_consumers_async(feed_url, tokens[:n], args), args.seconds
                        )
                        quiet[n] = feed
                        _row(f"static body, {n} consumer(s)", static, None)
                        _row(f"feed, {n} consumer(s)", feed, static)
                        print(
                            f"{'':<34}kept pages: {blocks.hits - before[0]:,} served, "
                            f"{blocks.misses - before[1]:,} missed ({blocks.shared - before[2]:,}"
                            " of them waited for another's read)"
                        )
                        if n == 64:
                            ok = (
                                feed.p99_ms < 100 and feed.events_per_s >= 0.1 * static.events_per_s
                            )
                            failed |= not ok
                    if not args.no_sync:
                        for n in args.consumers:
                            if args.sync_process:
                                busy, runs, records = await _feed_beside_a_worker(
                                    Path(tmp), url, feed_url, tokens[:n], args
                                )
                            else:
                                busy, runs, records = await _feed_beside_a_sync(
                                    services, feed_url, tokens[:n], args
                                )
                            base = quiet[n]
                            where = "sync process" if args.sync_process else "sync"
                            _row(f"feed + {where}, {n} consumer(s)", busy, None)
                            print(
                                f"{'':<34}p99 with sync / without: "
                                f"{busy.p99_ms / base.p99_ms:.2f}x  ({runs} syncs, "
                                f"{records:,} records)"
                            )
                            failed |= busy.p99_ms > 2 * base.p99_ms
        finally:
            services.close()
    print("targets (64 consumers: p99 < 100 ms, >= 10% of static; sync <= 2x p99):",
          "MISSED" if failed else "met")  # fmt: skip
    return 1 if failed else 0


async def _feed_beside_a_sync(
    services: object, feed_url: str, tokens: list[str], args: argparse.Namespace
) -> tuple[Figures, int, int]:
    """The feed while this process also runs syncs (as one `sluis serve` does)."""
    syncs = Syncs(services, args.sync_people)
    stop = asyncio.Event()
    task = asyncio.create_task(syncs.loop(stop))
    try:
        await asyncio.sleep(1.0)  # the first sync under way
        busy = Figures.of(await run_consumers_async(feed_url, tokens, args), args.seconds)
    finally:
        stop.set()
        try:
            with suppress(asyncio.CancelledError):
                await task
        finally:
            syncs.close()
    return busy, syncs.runs, syncs.records


async def _feed_beside_a_worker(
    data_dir: Path, url: str | None, feed_url: str, tokens: list[str], args: argparse.Namespace
) -> tuple[Figures, int, int]:
    """The feed while another process on the same database runs syncs: a replica that
    only serves beside one that only syncs (`scheduler = false` on the first)."""
    import signal
    import subprocess

    cmd = [sys.executable, __file__, "--sync-worker", str(data_dir)]
    cmd += ["--sync-people", str(args.sync_people)]
    cmd += ["--commit-records", str(args.commit_records)] if args.commit_records else []
    cmd += ["--database-url", url] if url else []
    worker = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    try:
        await asyncio.sleep(3.0)  # the worker up and its first sync under way
        busy = Figures.of(await run_consumers_async(feed_url, tokens, args), args.seconds)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=300)
    if worker.returncode != 0:
        raise SystemExit("the sync worker failed")
    done = json.loads(out)
    return busy, done["runs"], done["records"]


async def sync_worker(
    data_dir: Path, url: str | None, people: int, commit_records: int | None
) -> dict[str, int]:
    """Full syncs into new connectors of the bench tenant until SIGTERM."""
    import signal

    from gateway.runtime.services import Services

    services = Services.open(_settings(data_dir, url, commit_records))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    syncs = Syncs(services, people, prefix="worker")
    try:
        await syncs.loop(stop)
    finally:
        syncs.close()
        services.close()
    return {"runs": syncs.runs, "records": syncs.records}


def _settings(
    data_dir: Path, url: str | None, commit_records: int | None, source_processes: int = 1
) -> Any:
    from gateway.runtime.config import COMMIT_RECORDS, Settings

    return Settings(
        data_dir=data_dir,
        database_url=url,
        admin_token="bench-admin-token-0123456789",
        master_key=base64.b64encode(bytes(32)).decode(),
        scheduler=False,
        allow_private_sources=True,
        commit_records=commit_records or COMMIT_RECORDS,
        source_processes=source_processes,
    )


def _row(name: str, f: Figures, static: Figures | None) -> None:
    ratio = f"{f.events_per_s / static.events_per_s:>12.1%}" if static else f"{'':>12}"
    p99 = f"{f.p99_ms / static.p99_ms:>10.1f}x" if static else ""
    print(
        f"{name:<34}{f.pages_per_s:>9,.0f}{f.events_per_s:>11,.0f}{f.p50_ms:>9.1f}"
        f"{f.p99_ms:>9.1f} {ratio}{p99}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--consumers", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--sync-people", type=int, default=20_000)
    parser.add_argument("--no-sync", action="store_true", help="skip the rows with a sync")
    parser.add_argument(
        "--commit-records", type=int, default=None,
        help="people per sync transaction (the commit_records setting; default 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--sync-process", action="store_true",
        help="run the syncs in another process on the same database (a sync-only replica)",
    )  # fmt: skip
    parser.add_argument(
        "--source-processes", type=int, default=1,
        help="fetch and minimise the syncs' pages in this many worker processes (the "
        "source_processes setting; 0: in the gateway's process)",
    )  # fmt: skip
    parser.add_argument("--consume", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--sync-worker", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sync_worker:
        done = asyncio.run(
            sync_worker(
                Path(args.sync_worker), args.database_url, args.sync_people, args.commit_records
            )
        )
        print(json.dumps(done))
        return 0
    if args.consume:
        tokens = json.loads(sys.stdin.read())
        result = asyncio.run(load(args.consume, tokens, args.limit, args.warmup, args.seconds))
        print(json.dumps(result))
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
