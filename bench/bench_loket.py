"""Benchmark Loket.nl: a full sync of N employees end to end, against the connector's own
download of the same pages; and how much of the emulator's rate budget the pacing spends.

The Loket emulator runs in its own process (as Loket would), the gateway's sync engine in
this one, on SQLite in a temporary directory. Every run is a full run (Loket has no
modification filter), so the "again" run reads everyone too. The emulator keeps its
refresh token here (`rotate=False`): the baseline and the gateway each start from it.

Speed (`--employees`, default 100,000): the emulator's rate limit is lifted, so the figures
are the work per record: three lists per employer (organisational entities, employments,
employees), 250 a page. The baseline downloads every page through the connector's own
`fetch_raw` (token, the employment maps, paging, JSON parsing; nothing minimised or
stored).

Budget (`--budget-employees`, default 30,000, 0 to skip): the emulator keeps its own limit
(100 requests per 10 seconds; Loket publishes none, so the number is the emulator's) and
the connector its default, which knows no budget until the first 429 teaches it one; the
run reports the busiest 10 seconds against the 100 allowed and the share of requests
answered 429 (target: at least 80% of the budget, under 1% refused).

    .venv/bin/python bench/bench_loket.py [--employees 100000] [--budget-employees 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import tempfile
import time
from pathlib import Path

import aiohttp
from source_kit import download_only, emulator, full_then_again, gateway_with, projector

from connectors.base import ConnectorConfig, PageRequest, SyncMode
from connectors.loket.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_REFRESH_TOKEN,
)
from connectors.registry import connector_type

LOGIN = {
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
    "refresh_token": EMULATOR_REFRESH_TOKEN,
}
WINDOW, BUDGET = 10.0, 100


async def speed(employees: int) -> None:
    unlimited = f"people={employees}, rate_limit=None, rotate=False"
    with (
        emulator("connectors.loket.emulator", unlimited) as root,
        tempfile.TemporaryDirectory() as tmp,
    ):
        base = root + "/v2"
        services = gateway_with(Path(tmp), "loket", "loket", base, LOGIN, {})
        try:
            # The sync first: the emulator's first answers build its lists, which would
            # otherwise be charged to the baseline.
            full, full_s, again, again_s = await full_then_again(services, "loket")
            rows, raw_s = await download_only("loket", base, LOGIN, {})
        finally:
            services.close()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"employees {n:,} (download-only read {rows:,}), pages of 250, 3 lists")
    print(f"{'stage':<30}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<30}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<30}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'second run (full again)':<30}{again_s:>9.2f}{n / again_s:>12,.0f}   ({again.mode})")
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


async def paced_download(base: str) -> tuple[int, float]:
    """Every page through `fetch_page` (retries and `Retry-After` included, as a sync has
    them); (records, seconds)."""
    config = ConnectorConfig("loket", base, LOGIN, {})
    rows, cursor = 0, None
    async with aiohttp.ClientSession() as session:
        connector = connector_type("loket").connector(config, projector("loket"), session)
        start = time.perf_counter()
        while True:
            page = await connector.fetch_page(PageRequest(SyncMode.FULL, cursor, None))
            rows += page.fetched
            if page.next_cursor is None:
                return rows, time.perf_counter() - start
            cursor = page.next_cursor


async def budget(employees: int) -> None:
    with emulator("connectors.loket.emulator", f"people={employees}, rotate=False") as root:
        rows, seconds = await paced_download(root + "/v2")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{root}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
    refused = sum(1 for r in log if r["status"] == 429)
    times = sorted(r["at"] for r in log if r["status"] != 429)
    busiest = max(sum(1 for t in times if s <= t < s + WINDOW) for s in times)
    # After the first 429 the connector sends in bursts, one learned budget per window:
    # the share of the budget it spends is each burst over the time to the next one.
    first_refusal = min((r["at"] for r in log if r["status"] == 429), default=times[-1])
    bursts: list[list[float]] = []
    for t in (t for t in times if t > first_refusal):
        if bursts and t - bursts[-1][-1] < 1.0:
            bursts[-1].append(t)
        else:
            bursts.append([t])
    shares = [len(a) / (b[0] - a[0]) * WINDOW / BUDGET for a, b in itertools.pairwise(bursts)]
    rate = sum(shares) / len(shares) if shares else 0.0
    print(f"budget: {rows:,} employees in {seconds:.1f} s, {len(log)} requests")
    print(f"  busiest {WINDOW:.0f} s: {busiest} admitted of the emulator's {BUDGET}")
    print(f"  after the first 429: {rate:.0%} of the budget spent per window, over "
          f"{len(shares)} windows (target >= 80%)")  # fmt: skip
    print(f"  answered 429: {refused} ({refused / len(log):.2%}; target < 1%)")


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
