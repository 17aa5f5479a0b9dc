"""Inbound SCIM benchmark: an identity provider creates 10,000 users over real HTTP.

Run from the repository root:

    .venv/bin/python bench/bench_scim_inbound.py                    # 10,000 users, 8 at once
    .venv/bin/python bench/bench_scim_inbound.py --users 2000 --concurrency 4
    .venv/bin/python bench/bench_scim_inbound.py --unlimited  # without the per-connector rate limit

The client is an aiohttp session in the gateway's process on 127.0.0.1, sending Entra ID's
create body (enterprise extension, phone numbers, addresses and all) `--concurrency` at a
time. Microsoft asks SCIM applications to take 25 requests a second per provisioning job
and documents no concurrency; 8 requests in flight is the assumption here (a 429 is
honoured with its Retry-After, as Entra ID does). Each create is the whole production
path: the token checked against its sealed hash, the instruction read, the door and the
mapping, the guard, change detection, and one transaction with the subject, its feed
event and an inbound ledger entry (hashing, an Ed25519-signed checkpoint).

The baseline in the same run is a trivial aiohttp route on the same loop that parses the
same bodies and answers 201, so the ratio is the price of everything Sluis does per user.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from aiohttp import web  # noqa: E402

from gateway.api.app import make_app  # noqa: E402
from gateway.api.scim import RATE_LIMIT, RATE_PER_SECOND, RateLimit  # noqa: E402
from gateway.ledger.audit import SYSTEM  # noqa: E402
from gateway.ledger.record import Acting  # noqa: E402
from gateway.runtime.config import Settings  # noqa: E402
from gateway.runtime.services import Services  # noqa: E402
from gateway.sync.instructions import grant  # noqa: E402
from gateway.tenancy import create_connector, create_tenant, issue_scim_token  # noqa: E402
from mappings import bundled_mapping  # noqa: E402

TENANT = "bench"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def body(n: int) -> bytes:
    return orjson.dumps({
        "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": f"ext-{n}", "userName": f"user{n}@contoso.example", "active": True,
        "emails": [{"primary": True, "type": "work", "value": f"user{n}@contoso.example"}],
        "name": {"givenName": f"Given{n}", "familyName": f"Family{n}", "formatted": "x"},
        "title": "Trainer", "phoneNumbers": [{"type": "mobile", "value": "+31 6 12345678"}],
        "addresses": [{"type": "work", "streetAddress": "Damrak 1", "locality": "Amsterdam"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": str(n), "costCenter": "4130", "department": "HR"},
    })  # fmt: skip


def setup(services: Services) -> str:
    store, box, now = services.store, services.box, datetime.now(UTC)
    by = Acting(SYSTEM, services.ledger(TENANT))
    create_tenant(store, box, TENANT, "Bench BV", now, by=by)
    record, _ = create_connector(
        store, box, tenant=TENANT, connector_id="entra", type_name="scim", base_url="",
        credentials={}, mapping_text=bundled_mapping("scim").read_text(), now=now, by=by,
    )  # fmt: skip
    grant(store, by=by, connector="entra", purpose="bench", now=now)
    return issue_scim_token(store, box, record, now=now, by=by)


async def drive(url: str, token: str, users: int, concurrency: int) -> tuple[float, int]:
    """Create `users` users, `concurrency` at a time; (seconds, 429s honoured)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    queue = iter(range(users))
    throttled = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal throttled
        for n in queue:
            while True:
                async with session.post(url, data=body(n), headers=headers) as resp:
                    await resp.read()
                    if resp.status == 429:
                        throttled += 1
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    if resp.status != 201:
                        raise SystemExit(f"user {n}: HTTP {resp.status}")
                    break

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started, throttled


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def unthrottled(app: web.Application) -> web.Application:
    """The gateway's app with its SCIM rate limit lifted, to measure what lies behind it."""
    for resource in app.router.resources():
        if resource.get_info().get("prefix") == "/scim/v2":
            resource.get_info()["app"][RATE_LIMIT] = RateLimit(rate=1e9, burst=1e9)
    return app


async def main(users: int, concurrency: int, unlimited: bool) -> None:
    async def accept(request: web.Request) -> web.Response:
        orjson.loads(await request.read())
        return web.Response(status=201, body=b"{}", content_type="application/scim+json")

    baseline = web.Application()
    baseline.router.add_post("/Users", accept)
    runner, port = await serve(baseline)
    base_s, _ = await drive(f"http://127.0.0.1:{port}/Users", "x", users, concurrency)
    await runner.cleanup()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), admin_token="a" * 32, scheduler=False,
            master_key=base64.b64encode(os.urandom(32)).decode(),
        )  # fmt: skip
        services = Services.open(settings)
        token = await asyncio.to_thread(setup, services)
        app = make_app(services)
        runner, port = await serve(unthrottled(app) if unlimited else app)
        path = f"/scim/v2/tenants/{TENANT}/connectors/entra/Users"
        sluis_s, throttled = await drive(f"http://127.0.0.1:{port}{path}", token, users,
                                         concurrency)  # fmt: skip
        await runner.cleanup()
        size = services.store.ledger.head(TENANT)
        services.close()
    limit = "none" if unlimited else f"{RATE_PER_SECOND:.0f}/s"
    print(f"users: {users}, concurrency: {concurrency}, rate limit: {limit}")
    print(f"baseline (parse and 201): {users / base_s:,.0f} users/s ({base_s:.1f} s)")
    print(f"sluis SCIM create:        {users / sluis_s:,.0f} users/s ({sluis_s:.1f} s), "
          f"{throttled} answered 429, ledger size {size.size if size else 0}")  # fmt: skip
    print(f"ratio: {base_s / sluis_s:.2f} of the baseline; Entra ID's guidance: 25 requests/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--unlimited", action="store_true", help="lift the SCIM rate limit")
    args = parser.parse_args()
    asyncio.run(main(args.users, args.concurrency, args.unlimited))
