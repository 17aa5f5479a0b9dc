"""Benchmark Personio: a full sync of N employees end to end, against the connector's own
download of the same pages; and how much of Personio's rate budget the pacing spends.

The Personio emulator runs in its own process (as Personio would), the gateway's sync
engine in this one, on SQLite in a temporary directory.

Speed (`--employees`, default 100,000): the emulator's rate limits are lifted and the
connector told the budget is unlimited, so the figures are the work per record, not
Personio's budget (at 300 requests a minute a 100,000-person account takes 3.5 minutes,
whatever the gateway does). The baseline downloads every page through the connector's own
`fetch_raw` (token, `attributes[]`, paging, JSON parsing; nothing minimised or stored).

Budget (`--budget-employees`, default 30,000, 0 to skip): the emulator keeps Personio's
limits (300 requests a minute, bursts of 15 a second) and the connector its default
pacing; the run reports requests per minute against the 300 allowed, and the share of
requests answered 429 (target: at least 80% of the budget, under 1% refused).

    .venv/bin/python bench/bench_personio.py [--employees 100000] [--budget-employees 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from connectors.base import ConnectorConfig, PageRequest, SyncMode
from connectors.personio.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
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
LOGIN = {"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET}
UNLIMITED = {"requests_per_minute": 1_000_000, "burst_per_second": 100_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(people: int, port: int, *, limits: bool) -> subprocess.Popen[bytes]:
    off = "" if limits else ", per_minute=None, per_second=None"
    code = (
        "from aiohttp import web; from connectors.personio.emulator import make_app; "
        f"web.run_app(make_app(people={people}{off}), host='127.0.0.1', port={port}, "
        "print=None, access_log=None)"
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


def projector() -> Projector:
    return Projector(parse_mapping(bundled_mapping("personio").read_text(), "personio"), b"k" * 32)


async def download_only(base: str, settings: dict[str, Any]) -> tuple[int, float]:
    """The baseline: every page through the connector's own `fetch_raw`, parsed, dropped."""
    config = ConnectorConfig("personio", base, credentials=LOGIN, settings=settings)
    rows = 0
    cursor: str | None = None
    async with aiohttp.ClientSession() as session:
        connector = connector_type("personio").connector(config, projector(), session)
        start = time.perf_counter()
        while True:
            page = await connector.fetch_raw(PageRequest(SyncMode.FULL, cursor, None))
            rows += len(page.records)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return rows, time.perf_counter() - start


async def speed(employees: int) -> None:
    port = free_port()
    emulator = start_emulator(employees, port, limits=False)
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp), admin_token="b" * 32, allow_private_sources=True
            )
            services = Services.open(settings)
            now = datetime.now(UTC)
            by = Acting(SYSTEM, services.ledger("bench"))
            create_tenant(services.store, services.box, "bench", "Bench BV", now, by=by)
            create_connector(
                services.store, services.box, tenant="bench", by=by, connector_id="personio",
                type_name="personio", base_url=base, credentials=LOGIN,
                mapping_text=bundled_mapping("personio").read_text(), settings=UNLIMITED,
                now=now,
            )  # fmt: skip
            grant(services.store, by=by, connector="personio", purpose="benchmark", now=now)
            rows, raw_s = await download_only(base, UNLIMITED)
            t0 = time.perf_counter()
            full = await services.engine.sync("bench", "personio", SyncMode.FULL)
            full_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = await services.engine.sync("bench", "personio")
            again_s = time.perf_counter() - t0
            services.close()
    finally:
        emulator.terminate()
        emulator.wait()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"employees {n:,} (download-only read {rows:,}), pages of 100")
    print(f"{'stage':<30}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<30}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<30}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'no-change re-sync (incr.)':<30}{again_s:>9.2f}{'':>12}   ({again.mode})")
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


async def budget(employees: int) -> None:
    port = free_port()
    emulator = start_emulator(employees, port, limits=True)
    base = f"http://127.0.0.1:{port}"
    try:
        rows, seconds = await download_only(base, {})
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
    finally:
        emulator.terminate()
        emulator.wait()
    pages = [r for r in log if r["path"] == "/v1/company/employees"]
    refused = sum(1 for r in pages if r["status"] == 429)
    times = sorted(r["at"] for r in pages)
    busiest = max(sum(1 for t in times if s <= t < s + 60.0) for s in times)
    per_minute = len(pages) / (seconds / 60.0)
    print(f"budget: {rows:,} employees in {seconds:.1f} s, {len(pages)} list requests")
    print(f"  {per_minute:.0f} requests/min on average, {busiest} in the busiest 60 s "
          f"= {busiest / 300:.0%} of Personio's 300/min (target >= 80%)")  # fmt: skip
    print(f"  answered 429: {refused} ({refused / len(pages):.2%}; target < 1%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--employees", type=int, default=100_000)
    ap.add_argument("--budget-employees", type=int, default=30_000)
    args = ap.parse_args()
    asyncio.run(speed(args.employees))
    if args.budget_employees:
        asyncio.run(budget(args.budget_employees))


if __name__ == "__main__":
    main()
