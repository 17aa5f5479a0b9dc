"""Benchmark the Salesforce connector: a full sync of N Contacts, and how much of an API
allocation it uses without being refused.

1. Full sync. The Salesforce emulator runs in its own process (as a real org would), the
   gateway's sync engine in this one, on SQLite in a temporary directory. The same-run
   baseline downloads every batch with the connector's own requests (`fetch_raw`: the
   token, the SOQL query, `nextRecordsUrl`, JSON parsing; no minimisation, no change
   detection, no store, no ledger). Then an incremental no-change re-sync. Peak RSS is the
   gateway process's.
2. API allocation. A second emulator process gives the org an allocation of `--limit`
   requests per rolling `--window` seconds (Salesforce's is 24 hours) and answers 403
   REQUEST_LIMIT_EXCEEDED beyond it; the connector reads `Sforce-Limit-Info` on every
   answer, stops at `max_api_usage` (0.9) and probes again after `limit_wait_seconds`
   (window / (limit x 0.1): never more probes than the headroom left). The bench reads the
   emulator's request log: the requests it admitted per window against the allocation,
   and the share refused.

    .venv/bin/python bench/bench_salesforce.py [--people 100000] [--batch 2000]
        [--budget-people 20000] [--limit 30] [--window 3]

Targets (issue #11): records/s beside the download-only rate; at least 80% of the
allocation used; under 1% of requests refused.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

import aiohttp
from source_kit import TENANT, download_only, emulator, full_then_again, gateway_with, projector

from connectors.base import ConnectorConfig, PageRequest, RetryPolicy, SyncMode
from connectors.registry import connector_type
from connectors.salesforce.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET

CREDENTIALS = {"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET}


async def full_sync(args: argparse.Namespace) -> None:
    settings = {"batch_size": args.batch}
    with (
        emulator("connectors.salesforce.emulator", f"people={args.people}") as base,
        tempfile.TemporaryDirectory() as tmp,
    ):
        services = gateway_with(Path(tmp), "salesforce", "crm", base, CREDENTIALS, settings)
        try:
            rows, raw_s = await download_only("salesforce", base, CREDENTIALS, settings)
            full, full_s, again, again_s = await full_then_again(services, "crm")
            events = services.store.last_event_seq(TENANT)
        finally:
            services.close()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"contacts {n:,}, batch size {args.batch}, feed events {events:,}")
    print(f"{'stage':<28}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<28}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<28}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'no-change re-sync (incr.)':<28}{again_s:>9.2f}{'':>12}   ({again.mode})")
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


async def allocation(args: argparse.Namespace) -> None:
    options = (
        f"people={args.budget_people}, batch_cap=200, api_limit={args.limit}, "
        f"limit_window={args.window}"
    )
    wait = args.window / (args.limit * 0.1)
    settings = {"batch_size": 200, "max_api_usage": 0.9, "limit_wait_seconds": wait}
    retry = RetryPolicy(attempts=50, max_seconds=3600, initial_wait=0.05, max_wait=1.0)
    with emulator("connectors.salesforce.emulator", options) as base:
        async with aiohttp.ClientSession() as session:
            config = ConnectorConfig("salesforce", base, CREDENTIALS, settings)
            connector = connector_type("salesforce").connector(
                config, projector("salesforce"), session, retry=retry
            )
            cursor, fetched = None, 0
            start = time.perf_counter()
            while True:
                page = await connector.fetch_page(PageRequest(SyncMode.FULL, cursor, None))
                fetched += page.fetched
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            elapsed = time.perf_counter() - start
            async with session.get(f"{base}/_emulator/requests") as r:
                log = (await r.json())["requests"]
    api = [e for e in log if e["path"].startswith("/services/data")]
    admitted = [e["at"] for e in api if e["status"] == 200]
    refused = sum(1 for e in api if e["status"] == 403)
    # The busiest rolling window, and the mean rate against the allocation's.
    peak = max(sum(1 for b in admitted if a <= b < a + args.window) for a in admitted)
    span = admitted[-1] - admitted[0]
    rate = (len(admitted) - 1) / span if span else float("inf")
    allowed = args.limit / args.window
    print(f"\nallocation {args.limit} requests per rolling {args.window:g} s "
          f"({allowed:.1f}/s), limit_wait_seconds {wait:.2f}, {fetched:,} contacts")  # fmt: skip
    print(f"requests answered {len(admitted)}, refused (403) {refused} "
          f"({100 * refused / max(1, len(api)):.2f}%; target < 1%)")  # fmt: skip
    print(f"busiest window {peak}/{args.limit} ({100 * peak / args.limit:.0f}%)")
    print(f"mean rate {rate:.2f}/s = {100 * rate / allowed:.0f}% of the allocation "
          f"(target >= 80%), {elapsed:.1f} s, waits {connector.paced}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--budget-people", type=int, default=20_000)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--window", type=float, default=3.0)
    ap.add_argument("--skip-full", action="store_true", help="only the allocation part")
    args = ap.parse_args()
    if not args.skip_full:
        asyncio.run(full_sync(args))
    asyncio.run(allocation(args))


if __name__ == "__main__":
    main()
