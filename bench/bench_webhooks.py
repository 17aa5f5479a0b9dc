"""Webhook push benchmark: 100,000 events delivered to a local receiver that verifies every
signature, against the pull feed's rate in the same run.

Run from the repository root:

    .venv/bin/python bench/bench_webhooks.py                 # 100k events, batches of 1000 and 100
    .venv/bin/python bench/bench_webhooks.py --events 20000 --batch 500

The gateway runs as `sluis serve` would (its own app, its own push workers), on SQLite. The
receiver runs in its own process, as a platform's would: an aiohttp server on 127.0.0.1
that verifies each request with the `standardwebhooks` package (headers, timestamp,
HMAC-SHA256 over id.timestamp.body), parses it, and checks that the events arrive in order
with no gap. Each batch is the full production path: the authorisation of its source
checked, restricted and parked people looked up, its outbound ledger entry recorded
(a transaction and a signed checkpoint) before it is sent, then signed and POSTed, and the
destination's cursor moved in the store once the receiver answered 2xx.

The baseline in the same run is the pull feed: a consumer in its own process pages the
same 100,000 events (pages of 1,000), so the ratio says what pushing costs against pulling.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402
from bench_feed import TENANT, consume, fill  # noqa: E402
from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: E402

from gateway.api.app import make_app  # noqa: E402
from gateway.delivery.destinations import WebhookSettings, create_webhook  # noqa: E402
from gateway.ledger.audit import SYSTEM  # noqa: E402
from gateway.ledger.record import Acting  # noqa: E402
from gateway.runtime.config import Settings  # noqa: E402
from gateway.runtime.services import Services  # noqa: E402


def receive() -> None:
    """The receiver process: prints its port, reads the signing secret from stdin, serves
    until killed; `GET /count` answers how many events arrived verified and in order."""
    state = {"events": 0, "last_seq": 0, "bad": 0, "requests": 0}
    hooks: list[Webhook] = []

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            hooks[0].verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            state["bad"] += 1
            return web.Response(status=401)
        events = orjson.loads(body)["data"]["events"]
        state["requests"] += 1
        for event in events:
            if event["seq"] <= state["last_seq"]:
                continue  # a repeat of a batch (at least once): already applied
            if event["seq"] != state["last_seq"] + 1:
                state["bad"] += 1
            state["last_seq"] = event["seq"]
            state["events"] += 1
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        return web.json_response(state)

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hooks", take)
        app.router.add_get("/count", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        secret = await asyncio.to_thread(sys.stdin.readline)
        hooks.append(Webhook(secret.strip()))
        await asyncio.Event().wait()

    asyncio.run(serve())


async def push(services: Services, count: int, batch: int) -> tuple[float, dict[str, int]]:
    """Events/s from the destination's creation until the receiver has every event."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--receive",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    port = int((await proc.stdout.readline()).decode())
    by = Acting(SYSTEM, services.ledger(TENANT))
    settings = WebhookSettings(
        url=f"http://127.0.0.1:{port}/hooks", batch_size=batch, max_attempts=100
    )
    try:
        started = time.perf_counter()
        made, secret = create_webhook(
            services.store, services.box, settings, now=datetime.now(UTC), by=by
        )
        proc.stdin.write(secret.encode() + b"\n")
        await proc.stdin.drain()
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"http://127.0.0.1:{port}/count") as resp:
                    state: dict[str, int] = await resp.json()
                if state["events"] >= count or state["bad"]:
                    break
                await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        proc.kill()
        await proc.wait()
    services.store.delete_destination(TENANT, made.id)
    return count / elapsed, state


async def main(count: int, batches: list[int]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.open(
            Settings(
                data_dir=Path(tmp),
                admin_token="bench-admin-token-0123456789",
                master_key=base64.b64encode(bytes(32)).decode(),
                scheduler=False,
                allow_private_sources=True,
                push_interval=0.02,
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
        feed_url = f"http://127.0.0.1:{port}/feed/v1/tenants/{TENANT}/events"
        try:
            total, elapsed = await consume(feed_url, 1000, False, token)
            if total != count:
                raise SystemExit(f"the feed gave {total} events, not {count}")
            feed_rate = total / elapsed
            print(f"pull feed: {feed_rate:,.0f} events/s (pages of 1000, consumer process)")
            for batch in batches:
                rate, state = await push(services, count, batch)
                if state["bad"] or state["events"] != count:
                    raise SystemExit(f"the receiver saw {state}")
                print(
                    f"webhooks, batches of {batch}: {rate:,.0f} events/s "
                    f"({state['requests']} verified requests) | webhook/feed = "
                    f"{rate / feed_rate:.2f}"
                )
        finally:
            await runner.cleanup()
            size = services.ledger(TENANT).size()
            services.close()
        print(f"ledger entries: {size} (one per feed page and one per webhook batch, + audit)")
        return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        receive()
        raise SystemExit(0)
    raise SystemExit(asyncio.run(main(args.events, args.batch or [1000, 100])))
