"""Benchmark Entra ID: a full sync of N users from Graph's delta query end to end, against
the connector's own download of the same pages; and how much of Graph's throttling budget
the pacing spends.

The Entra ID emulator runs in its own process (as Graph would), the gateway's sync engine
in this one, on SQLite in a temporary directory.

Speed (`--users`, default 100,000): the emulator's resource-unit limit is lifted and the
connector told the budget is unlimited, so the figures are the work per record, not
Graph's budget. The baseline downloads every page through the connector's own `fetch_raw`
(token, `$select`, nextLinks followed to the deltaLink, JSON parsing; nothing minimised or
stored). The emulator serves 100 users a delta page, so 100,000 users are 1,000 requests.

Budget (`--budget-users`, default 30,000, 0 to skip; `--budget-units`, default 100): the
emulator throttles at that many resource units per 10 seconds (Graph's budgets per app and
tenant are 3,500-8,000; a small one keeps the run short with the same arithmetic) and the
connector is told the same budget; the run reports the units spent in the busiest 10
seconds against the budget, and the share of requests answered 429 (target: at least 80%
of the budget, under 1% refused).

    .venv/bin/python bench/bench_entra.py [--users 100000] [--budget-users 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
from pathlib import Path

import aiohttp
from source_kit import download_only, emulator, full_then_again, gateway_with

from connectors.entra.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_TENANT_ID,
)

LOGIN = {
    "tenant_id": EMULATOR_TENANT_ID,
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
}
UNLIMITED = {"resource_units": 10_000_000}
MODULE = "connectors.entra.emulator"


async def speed(users: int) -> None:
    with (
        emulator(MODULE, f"people={users}, resource_units=None") as root,
        tempfile.TemporaryDirectory() as tmp,
    ):
        base = f"{root}/v1.0"
        services = gateway_with(Path(tmp), "entra", "entra", base, LOGIN, UNLIMITED)
        try:
            rows, raw_s = await download_only("entra", base, LOGIN, UNLIMITED)
            full, full_s, again, again_s = await full_then_again(services, "entra")
        finally:
            services.close()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"users {n:,} (download-only read {rows:,}), delta pages of 100")
    print(f"{'stage':<30}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<30}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<30}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'no-change re-sync (delta)':<30}{again_s:>9.2f}{'':>12}   ({again.mode})")
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


async def budget(users: int, units: int) -> None:
    with emulator(MODULE, f"people={users}, resource_units={units}") as root:
        rows, seconds = await download_only(
            "entra", f"{root}/v1.0", LOGIN, {"resource_units": units}
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{root}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
    pages = [r for r in log if r["path"].startswith("/v1.0/users/delta")]
    refused = sum(1 for r in pages if r["status"] == 429)
    # A delta page with $select costs 1 resource unit at the emulator (x-ms-resource-unit).
    times = sorted(r["at"] for r in pages if r["status"] == 200)
    busiest = max(sum(1 for t in times if s <= t < s + 10.0) for s in times)
    # Whole 10-second windows from the first request (the last, partial one left out).
    whole = int((times[-1] - times[0]) // 10.0)
    windows = [sum(1 for t in times if times[0] + 10 * k <= t < times[0] + 10 * (k + 1))
               for k in range(whole)]  # fmt: skip
    print(f"budget: {rows:,} users in {seconds:.1f} s, {len(pages)} delta requests")
    print(f"  units in the busiest 10 s: {busiest} = {busiest / units:.0%} of the {units} "
          f"allowed (target >= 80%); whole 10-s windows: {windows}")  # fmt: skip
    print(f"  answered 429: {refused} ({refused / len(pages):.2%}; target < 1%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--budget-users", type=int, default=30_000)
    ap.add_argument("--budget-units", type=int, default=100)
    args = ap.parse_args()
    asyncio.run(speed(args.users))
    if args.budget_users:
        asyncio.run(budget(args.budget_users, args.budget_units))


if __name__ == "__main__":
    main()
