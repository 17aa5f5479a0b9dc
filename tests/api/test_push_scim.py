"""SCIM push end to end: a SCIM destination made through the admin API, the app's own push
worker, and a real SCIM server (`scim2-server`, its own process on 127.0.0.1) as the
platform's. People become Users, leavers inactive, erased people deleted (with the
destination's receipt); on the ledger; nothing after a revocation; the platform's token
replaced; bad requests refused with problems."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.runtime.services import Services
from tests.api.conftest import (
    Api,
    insert_events,
    setup_feed,
    subject_id,
    transfers,
)
from tests.api.test_push import push_settings, until
from tests.scim_server import ScimServer, scim_server

T = "/admin/v1/tenants/acme"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(push_settings(tmp_path, push_timeout=2.0))
    yield s
    s.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ScimServer]:
    with scim_server(token="platform-token-1", extra=["--bearer-token", "platform-token-2"]) as s:
        yield s


class Users:
    """The platform's users, read as its own admin would."""

    def __init__(self, server: ScimServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.headers = {"Authorization": f"Bearer {server.token}"}
        self.now: dict[str, dict[str, Any]] = {}

    async def read(self) -> dict[str, dict[str, Any]]:
        async with self.session.get(
            self.server.base_url + "/Users", params={"count": "1000"}, headers=self.headers
        ) as resp:
            body = await resp.json(content_type=None)
        self.now = {u["externalId"]: u for u in body.get("Resources", []) if "externalId" in u}
        return self.now

    async def clear(self) -> None:
        async with self.session.get(
            self.server.base_url + "/Users", params={"count": "1000"}, headers=self.headers
        ) as resp:
            body = await resp.json(content_type=None)
        for user in body.get("Resources", []):
            async with self.session.delete(
                f"{self.server.base_url}/Users/{user['id']}", headers=self.headers
            ):
                pass


@pytest.fixture
async def users(server: ScimServer) -> AsyncIterator[Users]:
    async with aiohttp.ClientSession() as session:
        u = Users(server, session)
        await u.clear()
        yield u
        await u.clear()


async def _wait_for(users: Users, check: Any) -> None:
    """Poll the platform until `check(users)` holds."""
    for _ in range(300):
        if check(await users.read()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the platform never got there: {sorted(users.now)}")


async def _scim_destination(api: Api, server: ScimServer, **options: Any) -> dict[str, Any]:
    made = await api.post(
        f"{T}/destinations",
        {"kind": "scim", "url": server.base_url, "token": server.token, **options},
    )
    assert made.status == 201, made.body
    body: dict[str, Any] = made.body
    return body


async def test_people_become_users_leavers_inactive_and_the_ledger_says_so(
    api: Api, services: Services, server: ScimServer, users: Users
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 12)
    dest = await _scim_destination(api, server, batch_size=5)
    assert dest["kind"] == "scim" and dest["secret"] is None and dest["thin"] is False
    await _wait_for(users, lambda now: len(now) == 12)
    one = users.now[subject_id(1)]
    assert one["userName"] == "person1@example-employer.nl"
    assert one["name"] == {"givenName": "First1", "familyName": "Last1"}
    assert one["title"] == "Engineer" and one["active"] is True
    # Leavers (a subject.deleted) stay, inactive.
    insert_events(services, "acme", 3, deleted_every=1)
    await _wait_for(users, lambda now: [now[subject_id(n)]["active"] for n in range(4)]
                    == [False, False, False, True])  # fmt: skip
    d = f"{T}/destinations/{dest['id']}"
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 15)
    page = (await api.get(d)).body
    assert (page["lag"], page["dead_letters"], page["failure"]) == (0, 0, None)
    assert "token" not in page and "secret" not in page
    ledger = await api.get(f"{T}/ledger", params={"limit": 1000})
    out = [e for e in transfers(ledger.body) if e["destination"] == f"scim:{dest['id']}"]
    assert {e["direction"] for e in out} == {"outbound"}
    assert sum(e["counts"]["records"] for e in out) == 15


async def test_an_erasure_deletes_the_user_and_comes_back_as_a_receipt(
    api: Api, services: Services, server: ScimServer, users: Users
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 3)
    dest = await _scim_destination(api, server)
    await _wait_for(users, lambda now: len(now) == 3)
    erased = await api.post(f"{T}/subjects/erase", {"subject_ids": [subject_id(1)]})
    assert erased.status == 200, erased.body
    await _wait_for(users, lambda now: sorted(now) == sorted([subject_id(0), subject_id(2)]))
    await until(lambda: services.store.get_destination("acme", dest["id"]).failure is None)

    async def receipted() -> bool:
        rows = (await api.get(f"{T}/suppressions")).body["suppressions"]
        return [r["consumer_id"] for r in rows[0]["receipts"]] == [f"scim:{dest['id']}"]

    for _ in range(200):
        if await receipted():
            break
        await asyncio.sleep(0.05)
    assert await receipted()


async def test_nothing_reaches_the_platform_after_a_revocation(
    api: Api, services: Services, server: ScimServer, users: Users
) -> None:
    _, instruction = await setup_feed(api)
    insert_events(services, "acme", 2)
    dest = await _scim_destination(api, server)
    await _wait_for(users, lambda now: len(now) == 2)
    revoked = await api.delete(f"{T}/connectors/hr/instructions/{instruction}")
    assert revoked.status == 200, revoked.body
    insert_events(services, "acme", 3, start=5)
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 5)
    await asyncio.sleep(0.2)
    assert sorted(await users.read()) == sorted([subject_id(0), subject_id(1)])
    ledger = await api.get(f"{T}/ledger", params={"limit": 1000})
    mine = [e for e in transfers(ledger.body) if e["destination"] == f"scim:{dest['id']}"]
    assert [e["direction"] for e in mine][-1] == "refused"


async def test_the_platforms_token_is_replaced_and_a_wrong_one_fails_with_a_code(
    api: Api, services: Services, server: ScimServer, users: Users
) -> None:
    await setup_feed(api)
    made = await api.post(
        f"{T}/destinations", {"kind": "scim", "url": server.base_url, "token": "not-the-token"}
    )
    assert made.status == 201, made.body
    d = f"{T}/destinations/{made.body['id']}"
    insert_events(services, "acme", 1)
    # 401 is refused for good: the batch becomes a dead letter, with the status as reason.
    await until(lambda: services.store.get_destination("acme", made.body["id"]).after_seq == 1)
    letters = (await api.get(d + "/dead-letters")).body["dead_letters"]
    assert [x["reason"] for x in letters] == ["status-401"]
    # The platform's admin issues a token; ours is replaced (no secret comes back).
    replaced = await api.post(d + "/secret", {"token": "platform-token-2"})
    assert replaced.status == 200, replaced.body
    assert replaced.body["secret"] is None
    assert (await api.post(d + "/dead-letters/replay")).status == 200
    await _wait_for(users, lambda now: subject_id(0) in now)


async def test_bad_scim_destinations_are_refused_with_problems(
    api: Api, server: ScimServer
) -> None:
    await setup_feed(api)
    base = {"kind": "scim", "url": server.base_url}
    for body in (
        base,  # no token
        {**base, "token": "short"},
        {**base, "token": "has spaces in it"},
        {**base, "token": "platform-token-1", "thin": True},
        {"url": server.base_url, "token": "platform-token-1"},  # a webhook takes no token
        {**base, "token": "platform-token-1", "kind": "ftp"},
    ):
        refused = await api.post(f"{T}/destinations", body)
        assert refused.status == 422, body
        assert refused.body["status"] == 422
        assert "platform-token-1" not in str(refused.body)
    made = await _scim_destination(api, server, from_start=False)
    d = f"{T}/destinations/{made['id']}"
    assert (await api.patch(d, {"thin": True})).status == 422
    assert (await api.post(d + "/secret", {"overlap_seconds": 60})).status == 422  # no token
    webhook = await api.post(f"{T}/destinations", {"url": "http://127.0.0.1:9/hooks"})
    w = f"{T}/destinations/{webhook.body['id']}"
    assert (await api.post(w + "/secret", {"token": "platform-token-1"})).status == 422
