"""Feed benchmark: a consumer pages through 100,000 events over real HTTP on 127.0.0.1.

Run from the repository root:

    .venv/bin/python bench/bench_feed.py              # 100k events, limit=1000, 3 passes
    .venv/bin/python bench/bench_feed.py --in-process # consumer in the gateway's own process
    .venv/bin/python bench/bench_feed.py --events 20000 --passes 1

Each page is the full production path: the consumer's token looked up by hash, the
instruction of every source connector checked (revocation), one store query, the JSON built
with orjson, and one outbound ledger entry appended (hashing, an Ed25519-signed checkpoint,
a SQLite transaction) before the response is sent. By default the consumer runs in its own
process, as a platform would; `--in-process` puts it on the gateway's event loop, so its
JSON parsing competes with the server for one interpreter (a floor, not a forecast). The
consumer checks that the pages have no gap and no duplicate.

The baseline in the same run is the raw store read (`events_after`, same page size, no
HTTP, no checks, no ledger), so the ratio is the price of the HTTP surface plus the
per-page checks and ledger append. Target: >= 50,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

from gateway.api.app import make_app  # noqa: E402
from gateway.ledger.audit import SYSTEM  # noqa: E402
from gateway.ledger.record import Acting  # noqa: E402
from gateway.runtime.config import Settings  # noqa: E402
from gateway.runtime.services import Services  # noqa: E402
from gateway.store.records import NewEvent  # noqa: E402
from gateway.sync.instructions import grant  # noqa: E402
from gateway.tenancy import create_connector, create_consumer, create_tenant  # noqa: E402
from mappings import bundled_mapping  # noqa: E402

TENANT = "bench"
TARGET = 50_000


def fill(services: Services, count: int) -> tuple[str, str]:
    """A tenant, a granted connector, a consumer, and `count` events; returns (token, id)."""
    store, box, now = services.store, services.box, datetime.now(UTC)
    by = Acting(SYSTEM, services.ledger(TENANT))
    create_tenant(store, box, TENANT, "Bench BV", now, by=by)
    create_connector(
        store,
        box,
        by=by,
        tenant=TENANT,
        connector_id="hr",
        type_name="afas",
        base_url="http://127.0.0.1:9/profitrestservices",
        credentials={"token": "x"},
        mapping_text=bundled_mapping("afas").read_text(encoding="utf-8"),
        now=now,
    )
    instruction = grant(store, by=by, connector="hr", purpose="bench", now=now)
    consumer, token = create_consumer(store, tenant=TENANT, name="bench", now=now, by=by)
    batch = []
    for n in range(count):
        batch.append(
            NewEvent(
                id=f"evt_{uuid.uuid4().hex}",
                type="subject.upserted",
                subject_id=uuid.UUID(int=n).hex,
                data={
                    "first_name": f"First{n}",
                    "last_name": f"van der Last{n}",
                    "email": f"first{n}.last@example-employer.nl",
                    "job_title": "Software Engineer",
                },
                occurred_at=now,
                source="hr",
                instruction_id=instruction.id,
            )
        )
        if len(batch) == 5000:
            store.append_events(TENANT, batch)
            batch = []
    store.append_events(TENANT, batch)
    return token, consumer.id


def baseline(services: Services, limit: int) -> tuple[int, float]:
    seq, total, started = 0, 0, time.perf_counter()
    while rows := services.store.events_after(TENANT, seq, limit):
        total += len(rows)
        seq = rows[-1].seq
    return total, time.perf_counter() - started


async def page_through(url: str, token: str, limit: int) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {token}"}
    cursor: str | None = None
    total, last_seq = 0, 0
    async with aiohttp.ClientSession(headers=headers) as session:
        started = time.perf_counter()
        while True:
            params = {"limit": str(limit), **({"after": cursor} if cursor else {})}
            async with session.get(url, params=params) as resp:
                resp.raise_for_status()
                body = orjson.loads(await resp.read())
            events = body["events"]
            if not events:
                break
            if events[0]["seq"] != last_seq + 1 or events[-1]["seq"] != last_seq + len(events):
                raise SystemExit("feed pages have a gap or a duplicate")
            last_seq = events[-1]["seq"]
            total += len(events)
            cursor = body["next_cursor"]
        return total, time.perf_counter() - started


async def consume(url: str, limit: int, in_process: bool, token: str) -> tuple[int, float]:
    if in_process:
        return await page_through(url, token, limit)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--consume",
        url,
        "--limit",
        str(limit),
        env={**os.environ, "SLUIS_BENCH_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit("the consumer process failed")
    result = json.loads(out)
    return int(result["events"]), float(result["seconds"])


async def main(count: int, limit: int, passes: int, in_process: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.open(
            Settings(
                data_dir=Path(tmp),
                admin_token="bench-admin-token-0123456789",
                master_key=base64.b64encode(bytes(32)).decode(),
                scheduler=False,
            )
        )
        t0 = time.perf_counter()
        token, _ = fill(services, count)
        print(f"filled {count:,} events in {time.perf_counter() - t0:.1f}s")
        runner = web.AppRunner(make_app(services), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/feed/v1/tenants/{TENANT}/events"
        where = "same process" if in_process else "own process"
        best = 0.0
        try:
            for n in range(1, passes + 1):
                base_total, base_time = baseline(services, limit)
                total, elapsed = await consume(url, limit, in_process, token)
                if total != count or base_total != count:
                    raise SystemExit(f"expected {count} events, got {total} / {base_total}")
                rate, base_rate = total / elapsed, base_total / base_time
                best = max(best, rate)
                print(
                    f"pass {n}: feed {rate:,.0f} events/s ({elapsed:.2f}s, "
                    f"{count // limit} pages of {limit}, consumer in {where}) | raw store "
                    f"events_after {base_rate:,.0f} events/s | feed/raw = {rate / base_rate:.2f}"
                )
        finally:
            await runner.cleanup()
            ledger_size = services.ledger(TENANT).size()
            services.close()
        print(f"ledger entries: {ledger_size} (setup's audit entries, then one per page served)")
        verdict = "meets" if best >= TARGET else "MISSES"
        print(f"best feed rate {best:,.0f} events/s: {verdict} the target of {TARGET:,}/s")
        return 0 if best >= TARGET else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="consumer on the same loop")
    parser.add_argument("--consume", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        token = os.environ["SLUIS_BENCH_TOKEN"]
        total, seconds = asyncio.run(page_through(args.consume, token, args.limit))
        print(json.dumps({"events": total, "seconds": seconds}))
        sys.exit(0)
    sys.exit(asyncio.run(main(args.events, args.limit, args.passes, args.in_process)))
