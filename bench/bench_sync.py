"""Benchmark a full sync of N AFAS employees end to end into the feed, and a no-change re-sync.

The AFAS emulator runs in its own process (as a real source would), the gateway's sync
engine in this one, on SQLite in a temporary directory. As a same-run baseline, the bench
first just downloads every page with the connector's own requests (its `fetch_raw`: the same
keyset queries, headers and JSON parsing, but no minimisation, no change detection, no
store, no ledger), so the figures say what the gateway adds on top of reading the source.
For comparison it also times the naive `skip=` paging an earlier baseline used, which the
emulator (like AFAS) serves by scanning from the first row, so it is slower and a ratio
against it would flatter the sync.

    .venv/bin/python bench/bench_sync.py [--employees 100000] [--page-size 1000]

It also reads the CPU the emulator and the source worker processes spent on the full sync:
with the gateway's, the least time the machine's cores could do that sync in, which says
whether a sync ratio is held by the code's speed or by its CPU per record.

Targets (issue #3): full sync >= 15,000 records/s; no-change re-sync >= 5x faster than
the full one; peak RSS of the gateway process < 200 MiB. (Issue #8: a full sync at most 2x
the download.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

from connectors.afas.emulator import EMULATOR_TOKEN, token_header
from connectors.base import ConnectorConfig, PageRequest, SyncMode
from connectors.registry import connector_type
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping

REPO = Path(__file__).resolve().parents[1]
#: The gateway's own default (`Settings.source_processes`).
SOURCE_PROCESSES = Settings.model_fields["source_processes"].default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    """A live process's peak resident set (`VmHWM`), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """A live process's CPU time so far (user + system, `/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_emulator(people: int, port: int) -> subprocess.Popen[bytes]:
    code = (
        "from aiohttp import web; from connectors.afas.emulator import make_app; "
        f"web.run_app(make_app(people={people}), host='127.0.0.1', port={port}, print=None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the emulator did not start")


async def download_only(base: str, page_size: int) -> tuple[int, float]:
    """The baseline: every page through the AFAS connector's own `fetch_raw` (keyset
    paging, as the sync asks), parsed, and dropped; nothing minimised or stored."""
    config = ConnectorConfig(
        type="afas",
        base_url=base,
        credentials={"token": EMULATOR_TOKEN},
        settings={"page_size": page_size},
    )
    unused = Projector(parse_mapping(bundled_mapping("afas").read_text(), "afas"), b"k" * 32)
    rows = 0
    cursor: str | None = None
    async with aiohttp.ClientSession() as session:
        connector = connector_type("afas").connector(config, unused, session)
        # Untimed: the emulator builds its sorted order on the first keyset request, a
        # cost neither side of the comparison should carry.
        await connector.fetch_raw(PageRequest(SyncMode.FULL, None, None))
        start = time.perf_counter()
        while True:
            page = await connector.fetch_raw(PageRequest(SyncMode.FULL, cursor, None))
            rows += len(page.records)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return rows, time.perf_counter() - start


async def download_by_skip(base: str, page_size: int) -> tuple[int, float]:
    """For comparison only: `skip=` paging with plain aiohttp + orjson (the old baseline)."""
    url = f"{base}/connectors/Sluis_Medewerkers"
    headers = {"Authorization": token_header()}
    rows = skip = 0
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while True:
            params = {"skip": str(skip), "take": str(page_size), "orderbyfieldids": "Medewerker"}
            async with session.get(url, params=params, headers=headers) as r:
                page = orjson.loads(await r.read())["rows"]
            rows += len(page)
            skip += len(page)
            if len(page) < page_size:
                break
    return rows, time.perf_counter() - start


async def bench(args: argparse.Namespace) -> None:
    port = free_port()
    emulator = start_emulator(args.employees, port)
    base = f"http://127.0.0.1:{port}/profitrestservices"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp),
                admin_token="b" * 32,
                allow_private_sources=True,
                source_processes=args.source_processes,
            )
            services = Services.open(settings)
            now = datetime.now(UTC)
            by = Acting(SYSTEM, services.ledger("bench"))
            create_tenant(
                services.store,
                services.box,
                "bench",
                "Bench BV",
                now,
                by=by,
            )
            create_connector(
                services.store,
                services.box,
                tenant="bench",
                by=by,
                connector_id="afas",
                type_name="afas",
                base_url=base,
                credentials={"token": EMULATOR_TOKEN},
                mapping_text=bundled_mapping("afas").read_text(),
                settings={"page_size": args.page_size},
                now=now,
            )
            grant(
                services.store,
                by=by,
                connector="afas",
                purpose="benchmark",
                now=now,
            )
            await services.start_workers()  # as `sluis serve` does at start
            c0 = time.process_time()
            rows, raw_s = await download_only(base, args.page_size)
            raw_cpu = time.process_time() - c0
            skip_rows, skip_s = await download_by_skip(base, args.page_size)
            assert skip_rows == rows, (skip_rows, rows)
            workers = services.engine.source_workers
            others = {"emulator": emulator.pid}
            for n, pid in enumerate(workers.pids() if workers else [], 1):
                others[f"source worker {n}"] = pid
            before = {name: cpu_seconds(pid) for name, pid in others.items()}
            t0, c0 = time.perf_counter(), time.process_time()
            full = await services.engine.sync("bench", "afas", SyncMode.FULL)
            full_s, full_cpu = time.perf_counter() - t0, time.process_time() - c0
            # What the other processes spent on the same sync: with the gateway's, the CPU
            # it took, which the machine's cores bound the sync's time by from below.
            spent = {name: cpu_seconds(pid) - before[name] for name, pid in others.items()}
            # What the scheduler runs next: incremental from the watermark, nothing changed.
            t0 = time.perf_counter()
            again = await services.engine.sync("bench", "afas")
            again_s = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            full_again = await services.engine.sync("bench", "afas", SyncMode.FULL)
            full_again_s, again_cpu = time.perf_counter() - t0, time.process_time() - c0
            events = services.store.last_event_seq("bench")
            worker_rss = [peak_rss_mib(pid) for pid in (workers.pids() if workers else [])]
            services.close()
    finally:
        emulator.terminate()
        emulator.wait()
    for run in (full, again, full_again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"employees {n:,}, page size {args.page_size}, feed events {events:,}")
    print(f"{'stage':<28}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<28}{raw_s:>9.2f}{rows / raw_s:>12,.0f}   (keyset)")
    print(f"{'download by skip= (old)':<28}{skip_s:>9.2f}{rows / skip_s:>12,.0f}")
    print(f"{'full sync':<28}{full_s:>9.2f}{n / full_s:>12,.0f}   (target >= 15,000/s)")
    print(f"{'no-change re-sync (incr.)':<28}{again_s:>9.2f}{'':>12}   ({again.mode})")
    print(f"{'no-change full re-sync':<28}{full_again_s:>9.2f}{n / full_again_s:>12,.0f}")
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(
        f"gateway process CPU: download {raw_cpu:.2f} s, full sync {full_cpu:.2f} s "
        f"({full_cpu / full_s:.2f} cores), no-change full re-sync {again_cpu:.2f} s "
        f"({again_cpu / full_again_s:.2f} cores)"
    )
    total = full_cpu + sum(spent.values())
    cores = os.cpu_count() or 1
    parts = ", ".join(f"{name} {cpu:.2f} s" for name, cpu in spent.items())
    print(
        f"CPU of the full sync, all processes: {total:.2f} s (gateway {full_cpu:.2f} s, "
        f"{parts}): at that CPU no sync on {cores} cores can finish in under "
        f"{total / cores:.2f} s, {total / cores / raw_s:.2f}x the download"
    )
    print(f"re-sync speed-up over full: {full_s / again_s:.1f}x (target >= 5x)")
    print(f"no-change full re-sync speed-up over full: {full_s / full_again_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB (target < 200)")
    for n, worker in enumerate(worker_rss, 1):
        print(f"peak RSS of source worker {n}: {worker:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--employees", type=int, default=100_000)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument(
        "--source-processes",
        type=int,
        default=SOURCE_PROCESSES,
        help="fetch and minimise in this many worker processes (Settings.source_processes; "
        "0: in the gateway's process)",
    )
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()
