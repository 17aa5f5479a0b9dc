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
import resource
import tempfile
from pathlib import Path

import aiohttp
from source_kit import download_only, emulator, full_then_again, gateway_with

from connectors.loket.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_REFRESH_TOKEN,
)

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
            rows, raw_s = await download_only("loket", base, LOGIN, {})
            full, full_s, again, again_s = await full_then_again(services, "loket")
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


async def budget(employees: int) -> None:
    with emulator("connectors.loket.emulator", f"people={employees}, rotate=False") as root:
        rows, seconds = await download_only("loket", root + "/v2", LOGIN, {})
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{root}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
    refused = sum(1 for r in log if r["status"] == 429)
    times = sorted(r["at"] for r in log if r["status"] != 429)
    busiest = max(sum(1 for t in times if s <= t < s + WINDOW) for s in times)
    steady = [t for t in times if t >= times[0] + 2 * WINDOW]
    rate = (len(steady) - 1) / (steady[-1] - steady[0]) * WINDOW if len(steady) > 1 else 0.0
    print(f"budget: {rows:,} employees in {seconds:.1f} s, {len(log)} requests")
    print(f"  busiest {WINDOW:.0f} s: {busiest} admitted of the emulator's {BUDGET}")
    print(f"  after the first 429: {rate:.1f} per {WINDOW:.0f} s = {rate / BUDGET:.0%} "
          "of the budget (target >= 80%)")  # fmt: skip
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
