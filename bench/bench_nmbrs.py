"""Benchmark Nmbrs: a full sync of N employees (REST) end to end, against the connector's
own download of the same pages; the pacing against a rate budget; and a SOAP full sync.

The Nmbrs emulator runs in its own process (as Nmbrs would), the gateway's sync engine in
this one, on SQLite in a temporary directory. The identity server rotates refresh tokens,
so the gateway is given the one the baseline download was last handed (as the store would
hold it), and keeps the next ones sealed itself.

Speed (`--employees`, default 100,000 over `--companies`, default 4): no rate limit. A
run reads per company the functions, employments and personal info (each a full history
collection, reduced on the fly), then the employee list joined with them: four page
series per company, pages of 100. The baseline is every page through the connector's own
`fetch_raw` (token, paging, JSON parsing, the joins; nothing minimised or stored).

Budget (`--budget-employees`, default 30,000, 0 to skip; about 1,200 requests, two
minutes at 600 a minute): Nmbrs publishes no limits, so
the emulator is given one (`--budget-per-minute`, default 600 a minute) and the connector
the same figure as `requests_per_minute`; the run reports requests per minute against it
and the share answered 429 (target: at least 80% of the budget, under 1% refused).

SOAP (`--soap-employees`, default 10,000, 0 to skip): the download through zeep (one
answer per company and call, parsed strictly, reduced at once) and a gateway full sync.

    .venv/bin/python bench/bench_nmbrs.py [--employees 100000] [--companies 4]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from source_kit import emulator, full_then_again, gateway_with, projector

from connectors.base import ConnectorConfig, PageRequest, SyncMode
from connectors.nmbrs.client import NmbrsConnector
from connectors.nmbrs.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_DOMAIN,
    EMULATOR_REFRESH_TOKEN,
    EMULATOR_SUBSCRIPTION_KEY,
    EMULATOR_TOKEN,
    EMULATOR_USERNAME,
)

REST = {
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
    "refresh_token": EMULATOR_REFRESH_TOKEN,
    "subscription_key": EMULATOR_SUBSCRIPTION_KEY,
}
SOAP = {"username": EMULATOR_USERNAME, "token": EMULATOR_TOKEN, "domain": EMULATOR_DOMAIN}
MODULE = "connectors.nmbrs.emulator"


async def download(
    base: str, credentials: Mapping[str, str], settings: Mapping[str, Any]
) -> tuple[int, float, dict[str, str]]:
    """Every page through `fetch_raw`; (records, seconds, the credentials now in force)."""
    config = ConnectorConfig("nmbrs", base, dict(credentials), dict(settings))
    rows, cursor = 0, None
    async with aiohttp.ClientSession() as session:
        connector = NmbrsConnector(config, projector("nmbrs"), session)
        start = time.perf_counter()
        while True:
            page = await connector.fetch_raw(PageRequest(SyncMode.FULL, cursor, None))
            rows += len(page.records)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        seconds = time.perf_counter() - start
    kept = dict(credentials)
    if settings.get("api", "rest") == "rest":
        tokens = connector.tokens
        kept["refresh_token"] = (tokens.refresh_token if tokens is not None else None) or ""
    return rows, seconds, kept


async def speed(employees: int, companies: int) -> None:
    options = f"people={employees}, companies={companies}, per_minute=None"
    with emulator(MODULE, options) as base, tempfile.TemporaryDirectory() as tmp:
        rows, raw_s, kept = await download(base, REST, {})
        services = gateway_with(Path(tmp), "nmbrs", "nmbrs", base, kept, {})
        try:
            full, full_s, again, again_s = await full_then_again(services, "nmbrs")
        finally:
            services.close()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    print(f"REST: employees {n:,} in {companies} companies (download-only read {rows:,})")
    print(f"{'stage':<30}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<30}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<30}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'no-change re-sync (full)':<30}{again_s:>9.2f}{n / again_s:>12,.0f}   ({again.mode})")
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


async def budget(employees: int, per_minute: int) -> None:
    with emulator(MODULE, f"people={employees}, per_minute={per_minute}") as base:
        rows, seconds, _ = await download(base, REST, {"requests_per_minute": per_minute})
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/_emulator/requests") as response,
        ):
            log = (await response.json())["requests"]
    calls = [r for r in log if r["path"].startswith("/api/")]
    refused = sum(1 for r in calls if r["status"] == 429)
    times = sorted(r["at"] for r in calls)
    busiest = max(sum(1 for t in times if s <= t < s + 60.0) for s in times)
    print(f"budget: {rows:,} employees in {seconds:.1f} s, {len(calls)} API requests")
    share = busiest / per_minute
    print(f"  {len(calls) / (seconds / 60.0):.0f} requests/min on average, {busiest} in the "
          f"busiest 60 s = {share:.0%} of {per_minute}/min (target >= 80%)")  # fmt: skip
    print(f"  answered 429: {refused} ({refused / len(calls):.2%}; target < 1%)")


async def soap(employees: int) -> None:
    with emulator(MODULE, f"people={employees}") as root, tempfile.TemporaryDirectory() as tmp:
        base = root + "/soap/v3"
        rows, raw_s, _ = await download(base, SOAP, {"api": "soap"})
        services = gateway_with(Path(tmp), "nmbrs", "nmbrs", base, SOAP, {"api": "soap"})
        try:
            full, full_s, _, _ = await full_then_again(services, "nmbrs")
        finally:
            services.close()
    assert full.status == "succeeded", full.error
    n = full.counts["fetched"]
    print(f"SOAP: employees {n:,}: download only {raw_s:.2f} s ({rows / raw_s:,.0f}/s), "
          f"full sync {full_s:.2f} s ({n / full_s:,.0f}/s)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--employees", type=int, default=100_000)
    ap.add_argument("--companies", type=int, default=4)
    ap.add_argument("--budget-employees", type=int, default=30_000)
    ap.add_argument("--budget-per-minute", type=int, default=600)
    ap.add_argument("--soap-employees", type=int, default=10_000)
    args = ap.parse_args()
    if args.employees:
        asyncio.run(speed(args.employees, args.companies))
    if args.budget_employees:
        asyncio.run(budget(args.budget_employees, args.budget_per_minute))
    if args.soap_employees:
        asyncio.run(soap(args.soap_employees))


if __name__ == "__main__":
    main()
