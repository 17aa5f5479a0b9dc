"""Benchmark a full sync of N AFAS employees into PostgreSQL against the same sync into
SQLite, in one run, from one emulator process.

Both stores get the same gateway (the sync engine in this process), the same tenant,
connector and mapping, and the same source; the connector's own keyset download is timed
too, as the baseline both are measured against. PostgreSQL is the server on 127.0.0.1:5432
(a schema of the bench's own in the `sluis_test` database, dropped afterwards).

    .venv/bin/python bench/bench_stores.py [--employees 100000] [--page-size 1000]

Target (issue #8): the PostgreSQL sync at least 0.7x as fast as the SQLite one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from bench_sync import download_only, free_port, start_emulator

from connectors.afas.emulator import EMULATOR_TOKEN
from connectors.base import SyncMode
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.records import RunRecord
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.pg import database_url, require_postgres  # noqa: E402


@contextmanager
def pg_schema() -> Iterator[str]:
    require_postgres()
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(database_url(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def prepare(services: Services, base: str, page_size: int) -> None:
    now = datetime.now(UTC)
    by = Acting(SYSTEM, services.ledger("bench"))
    create_tenant(services.store, services.box, "bench", "Bench BV", now, by=by)
    create_connector(
        services.store, services.box, tenant="bench", by=by, connector_id="afas",
        type_name="afas", base_url=base, credentials={"token": EMULATOR_TOKEN},
        mapping_text=bundled_mapping("afas").read_text(), settings={"page_size": page_size},
        now=now,
    )  # fmt: skip
    grant(services.store, by=by, connector="afas", purpose="benchmark", now=now)


async def full_sync(settings: Settings, base: str, page_size: int) -> tuple[RunRecord, float]:
    services = Services.open(settings)
    try:
        prepare(services, base, page_size)
        await services.start_workers()  # as `sluis serve` does at start
        t0 = time.perf_counter()
        run = await services.engine.sync("bench", "afas", SyncMode.FULL)
        seconds = time.perf_counter() - t0
    finally:
        services.close()
    assert run.status == "succeeded", run.error
    return run, seconds


async def bench(args: argparse.Namespace) -> None:
    port = free_port()
    emulator = start_emulator(args.employees, port)
    base = f"http://127.0.0.1:{port}/profitrestservices"
    try:
        rows, raw_s = await download_only(base, args.page_size)
        with tempfile.TemporaryDirectory() as tmp:
            common = {"admin_token": "b" * 32, "allow_private_sources": True}
            sqlite = Settings(data_dir=Path(tmp) / "lite", **common)  # type: ignore[arg-type]
            lite_run, lite_s = await full_sync(sqlite, base, args.page_size)
            with pg_schema() as url:
                pg = Settings(data_dir=Path(tmp) / "pg", database_url=url, **common)  # type: ignore[arg-type]
                pg_run, pg_s = await full_sync(pg, base, args.page_size)
    finally:
        emulator.terminate()
        emulator.wait()
    n = lite_run.counts["fetched"]
    assert pg_run.counts["fetched"] == n == rows
    print(f"employees {n:,}, page size {args.page_size}")
    print(f"{'stage':<34}{'seconds':>9}{'records/s':>12}{'x download':>12}")
    for name, s in (
        ("download only (baseline)", raw_s),
        ("full sync into SQLite", lite_s),
        ("full sync into PostgreSQL", pg_s),
    ):
        print(f"{name:<34}{s:>9.2f}{n / s:>12,.0f}{s / raw_s:>11.2f}x")
    print(f"PostgreSQL / SQLite speed: {lite_s / pg_s:.2f}x (target >= 0.7x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--employees", type=int, default=100_000)
    ap.add_argument("--page-size", type=int, default=1000)
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()
