"""The SCIM endpoint's limits and its second engine: throttling with Retry-After, and the
same provisioning flow, concurrent creates included, on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.app import make_app
from gateway.api.scim import RATE_LIMIT, RateLimit
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY, Api, make_consumer, read_feed
from tests.api.scim_helpers import PATCH, scim_source
from tests.api.test_scim_inbound import OKTA_CREATE
from tests.pg import database_url, fresh_schema
from tests.principals import People


async def test_a_provider_over_its_rate_is_told_when_to_come_back(
    aiohttp_client: Any, services: Services, people: People
) -> None:
    app = make_app(services)
    scim_app = next(r.get_info()["app"] for r in app.router.resources()
                    if r.get_info().get("prefix") == "/scim/v2")  # fmt: skip
    scim_app[RATE_LIMIT] = RateLimit(rate=0.5, burst=3)
    api = Api(await aiohttp_client(app), people=people)
    scim = await scim_source(api)
    statuses = [(await scim.call("GET", "/Users"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = await api.client.get(scim.base + "/Users",
                                headers={"Authorization": f"Bearer {scim.token}"})  # fmt: skip
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


def test_the_bucket_refills_at_its_rate() -> None:
    limit = RateLimit(rate=1000.0, burst=1)
    assert limit.wait_for(("t", "c")) == 0.0
    assert limit.wait_for(("t", "c")) > 0.0
    assert limit.wait_for(("t", "other")) == 0.0


@pytest.fixture
def pg_services(tmp_path: Path) -> Iterator[Services]:
    with fresh_schema() as schema:
        s = Services.open(Settings(
            data_dir=tmp_path, admin_token=ADMIN_TOKEN, master_key=MASTER_KEY, scheduler=False,
            allow_private_sources=True, database_url=database_url(schema),
        ))  # fmt: skip
        yield s
        s.close()


async def test_provisioning_on_postgresql_with_concurrent_creates(
    aiohttp_client: Any, pg_services: Services
) -> None:
    api = Api(await aiohttp_client(make_app(pg_services)), people=People(pg_services))
    scim = await scim_source(api)
    feed = await make_consumer(api)

    async def create(n: int) -> tuple[int, Any]:
        body = {**OKTA_CREATE, "userName": f"u{n}@okta.example",
                "emails": [{"value": f"u{n}@okta.example", "primary": True}]}  # fmt: skip
        return await scim.call("POST", "/Users", body)

    made = await asyncio.gather(*(create(n) for n in range(20)))
    assert [s for s, _ in made] == [201] * 20
    first = made[0][1]["id"]
    status, user = await scim.call("PATCH", f"/Users/{first}", {"schemas": [PATCH],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})  # fmt: skip
    assert status == 200 and user["active"] is False
    assert (await scim.call("DELETE", f"/Users/{made[1][1]['id']}"))[0] == 204
    status, page = await scim.call("GET", "/Users", params={"count": "100"})
    assert page["totalResults"] == 19 and len(page["Resources"]) == 19
    events = await read_feed(api, feed)
    assert len(events) == 22 and [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert sum(e["type"] == "subject.deleted" for e in events) == 2


async def test_a_body_sent_in_chunks_is_read_whole(api: Api) -> None:
    scim = await scim_source(api)
    raw = orjson.dumps(OKTA_CREATE)

    async def dribble() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 40):
            yield raw[start : start + 40]
            await asyncio.sleep(0.001)

    headers = {"Authorization": f"Bearer {scim.token}", "Content-Type": "application/scim+json"}
    resp = await api.client.post(scim.base + "/Users", data=dribble(), headers=headers)
    assert resp.status == 201, await resp.text()
    big = b'{"schemas": [], "x": "' + b"a" * 300_000 + b'"}'

    async def flood() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    resp = await api.client.post(scim.base + "/Users", data=flood(), headers=headers)
    assert resp.status == 413
    assert (await resp.json(content_type=None))["schemas"] == [
        "urn:ietf:params:scim:api:messages:2.0:Error"
    ]
