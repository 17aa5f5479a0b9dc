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
import tempfile
from pathlib import Path

import aiohttp
from source_kit import download_only, emulator, full_then_again, gateway_with

from connectors.personio.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET

LOGIN = {"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET}
UNLIMITED = {"requests_per_minute": 1_000_000, "burst_per_second": 100_000}


async def speed(employees: int) -> None:
    unlimited = f"people={employees}, per_minute=None, per_second=None"
    with (
        emulator("connectors.personio.emulator", unlimited) as base,
        tempfile.TemporaryDirectory() as tmp,
    ):
        services = gateway_with(Path(tmp), "personio", "personio", base, LOGIN, UNLIMITED)
        try:
            rows, raw_s = await download_only("personio", base, LOGIN, UNLIMITED)
            full, full_s, again, again_s = await full_then_again(services, "personio")
        finally:
            services.close()
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
    with emulator("connectors.personio.emulator", f"people={employees}") as base:
        rows, seconds = await download_only("personio", base, LOGIN, {})
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
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
