"""Benchmark Dynamics 365 / Dataverse: a full sync of N contacts end to end, against the
connector's own download of the same pages; and how much of the service protection budget
the pacing spends.

The Dataverse emulator (with its Entra ID token endpoint) runs in its own process, as
Dataverse would, the gateway's sync engine in this one, on SQLite in a temporary directory.

Speed (`--contacts`, default 100,000): the emulator's service protection limit is lifted,
pages are the connector's default (1,000 rows), and the full sync asks for change tracking, so
the re-sync after it follows the delta link (nothing changed: one request). The baseline
downloads every page through the connector's own `fetch_raw` (token, `$select`, paging,
JSON parsing; nothing minimised or stored).

Budget (`--budget-contacts`, default 12,000, 0 to skip): Dataverse's limit is 6,000
requests per user in a 5-minute sliding window; the emulator models the same sliding
window scaled down to `--budget-requests` (60) in `--budget-window` seconds (10), so a run
takes seconds rather than many 5-minute windows, with pages of 100 rows. The connector is
told the same limit and paces to its default 90%; the run reports the busiest window
against the limit and the share of requests answered 429 (target: at least 80% of the
budget, under 1% refused).

    .venv/bin/python bench/bench_dynamics.py [--contacts 100000] [--budget-contacts 12000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
from pathlib import Path

import aiohttp
from source_kit import download_only, emulator, full_then_again, gateway_with

from connectors.dynamics.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_TENANT,
)

CREDENTIALS = {
    "tenant_id": EMULATOR_TENANT,
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
}
MODULE = "connectors.dynamics.emulator"


async def speed(contacts: int) -> None:
    options = f"people={contacts}, requests_per_window=None"
    with emulator(MODULE, options) as base, tempfile.TemporaryDirectory() as tmp:
        settings = {"authority": base}
        services = gateway_with(Path(tmp), "dynamics", "crm", base, CREDENTIALS, settings)
        try:
            rows, raw_s = await download_only("dynamics", base, CREDENTIALS, settings)
            full, full_s, again, again_s = await full_then_again(services, "crm")
        finally:
            services.close()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"contacts {n:,} (download-only read {rows:,}), pages of 1,000")
    print(f"{'stage':<30}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<30}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<30}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'no-change re-sync (delta)':<30}{again_s:>9.2f}{'':>12}   ({again.mode}, "
          f"{again.counts['fetched']} fetched)")  # fmt: skip
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


async def budget(contacts: int, limit: int, window: float) -> None:
    options = f"people={contacts}, requests_per_window={limit}, window_seconds={window}"
    with emulator(MODULE, options) as base:
        settings = {
            "authority": base,
            "page_size": 100,
            "requests_per_window": limit,
            "window_seconds": window,
        }
        rows, seconds = await download_only("dynamics", base, CREDENTIALS, settings)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
    pages = [r for r in log if r["path"].startswith("/api/data/")]
    refused = sum(1 for r in pages if r["status"] == 429)
    times = sorted(r["at"] for r in pages)
    busiest = max(sum(1 for t in times if s <= t < s + window) for s in times)
    print(f"budget: {rows:,} contacts in {seconds:.1f} s, {len(pages)} requests, "
          f"limit {limit} per {window:g} s (sliding)")  # fmt: skip
    print(f"  {busiest} requests in the busiest {window:g} s = {busiest / limit:.0%} of the "
          "limit (target >= 80%)")  # fmt: skip
    print(f"  answered 429: {refused} ({refused / len(pages):.2%}; target < 1%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--budget-contacts", type=int, default=12_000)
    ap.add_argument("--budget-requests", type=int, default=60)
    ap.add_argument("--budget-window", type=float, default=10.0)
    args = ap.parse_args()
    asyncio.run(speed(args.contacts))
    if args.budget_contacts:
        asyncio.run(budget(args.budget_contacts, args.budget_requests, args.budget_window))


if __name__ == "__main__":
    main()
