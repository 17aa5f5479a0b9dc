"""The SCIM push sender against a real SCIM server (`scim2-server`, its own process on
127.0.0.1): what each event does to the platform's users, how existing users are found and
linked, ETags, servers without PATCH, rate limits, and what is never sent or kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.delivery.push import Batch, Outcome
from gateway.delivery.scim_push import ScimSender, ServerTraits
from tests.scim_server import ScimServer, scim_server
from tests.support import free_port

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ANN = "a" * 32
BOB = "b" * 32
ANN_DATA = {
    "first_name": "Ann",
    "last_name": "Jansen",
    "email": "ann@example.nl",
    "job_title": "Teacher",
}


def _event(kind: str, subject: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "subject_id": subject, "data": data, "seq": 1, "id": "ev"}


def _batch(*events: dict[str, Any]) -> Batch:
    body = orjson.dumps({"type": "subject.events", "data": {"events": list(events)}})
    return Batch("acme", "dst_1", "msg_1", body, tuple(range(1, len(events) + 1)))


@pytest.fixture(scope="module")
def server() -> Iterator[ScimServer]:
    with scim_server() as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Platform:
    """The test's own view of the SCIM server, as the platform's admin would have it."""

    def __init__(self, server: ScimServer, session: aiohttp.ClientSession) -> None:
        self.url = server.base_url
        self.session = session
        self.headers = {"Authorization": f"Bearer {server.token}"}

    async def users(self) -> list[dict[str, Any]]:
        async with self.session.get(
            self.url + "/Users", params={"count": "1000"}, headers=self.headers
        ) as resp:
            assert resp.status == 200
            body = await resp.json(content_type=None)
        return list(body.get("Resources", []))

    async def by_external(self, subject: str) -> dict[str, Any] | None:
        found = [u for u in await self.users() if u.get("externalId") == subject]
        assert len(found) <= 1
        return found[0] if found else None

    async def create(self, user: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(
            self.url + "/Users", json={"schemas": [USER], **user}, headers=self.headers
        ) as resp:
            assert resp.status == 201
            return dict(await resp.json(content_type=None))

    async def patch(self, user_id: str, path: str, value: object) -> None:
        body = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": path, "value": value}],
        }
        async with self.session.patch(
            f"{self.url}/Users/{user_id}", json=body, headers=self.headers
        ) as resp:
            assert resp.status in (200, 204)

    async def clear(self) -> None:
        for user in await self.users():
            async with self.session.delete(
                f"{self.url}/Users/{user['id']}", headers=self.headers
            ) as resp:
                assert resp.status == 204


@pytest.fixture
async def platform(server: ScimServer, session: aiohttp.ClientSession) -> AsyncIterator[Platform]:
    p = Platform(server, session)
    await p.clear()
    yield p
    await p.clear()


def _sender(server: ScimServer, session: aiohttp.ClientSession, **kw: Any) -> ScimSender:
    return ScimSender(server.base_url, server.token, session=session, allow_private=True, **kw)


async def test_a_person_is_created_updated_deactivated_and_erased(
    server: ScimServer, session: aiohttp.ClientSession, platform: Platform
) -> None:
    sender = _sender(server, session)
    done = await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    assert done == Outcome("delivered", "ok")
    user = await platform.by_external(ANN)
    assert user is not None
    assert user["userName"] == "ann@example.nl"
    assert user["emails"] == [{"value": "ann@example.nl", "type": "work", "primary": True}]
    assert user["name"] == {"givenName": "Ann", "familyName": "Jansen"}
    assert user["title"] == "Teacher" and user["active"] is True
    # Nothing Sluis does not manage is sent.
    assert set(user) <= {"schemas", "id", "externalId", "meta", "userName", "name", "title",
                         "active", "emails"}  # fmt: skip

    moved = dict(ANN_DATA, job_title="Head of year", email="ann.jansen@example.nl")
    assert (await sender.send(_batch(_event("subject.upserted", ANN, moved)))).kind == "delivered"
    user = await platform.by_external(ANN)
    assert user is not None and user["title"] == "Head of year"
    assert user["userName"] == "ann.jansen@example.nl" and len(await platform.users()) == 1

    assert (await sender.send(_batch(_event("subject.deleted", ANN)))).kind == "delivered"
    user = await platform.by_external(ANN)
    assert user is not None and user["active"] is False  # a leaver is kept, inactive

    back = await sender.send(_batch(_event("subject.upserted", ANN, moved)))
    assert back.kind == "delivered"
    user = await platform.by_external(ANN)
    assert user is not None and user["active"] is True

    assert (await sender.send(_batch(_event("subject.erased", ANN)))).kind == "delivered"
    assert await platform.by_external(ANN) is None
    # Erasing again, or deactivating someone never provisioned, is done at once.
    again = _batch(_event("subject.erased", ANN), _event("subject.deleted", BOB))
    assert (await sender.send(again)).kind == "delivered"


async def test_a_new_sender_finds_its_users_by_external_id(
    server: ScimServer, session: aiohttp.ClientSession, platform: Platform
) -> None:
    first = _sender(server, session)
    assert (await first.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))).kind == "delivered"
    # A restarted worker remembers nothing: the externalId filter finds the user.
    later = _sender(server, session)
    renamed = dict(ANN_DATA, last_name="de Vries")
    assert (await later.send(_batch(_event("subject.upserted", ANN, renamed)))).kind == "delivered"
    users = await platform.users()
    assert len(users) == 1 and users[0]["name"]["familyName"] == "de Vries"


async def test_an_existing_user_with_the_same_user_name_is_linked_not_duplicated(
    server: ScimServer, session: aiohttp.ClientSession, platform: Platform
) -> None:
    mine = await platform.create({"userName": "ann@example.nl", "displayName": "Ann (manual)"})
    sender = _sender(server, session)
    assert (
        await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    ).kind == "delivered"
    users = await platform.users()
    assert len(users) == 1
    assert users[0]["id"] == mine["id"] and users[0]["externalId"] == ANN
    # PATCH changes only what Sluis manages: the platform's own attribute stays.
    assert users[0]["displayName"] == "Ann (manual)"


async def test_a_user_changed_meanwhile_is_read_again_and_updated(
    gate: tuple[_Gate, str], session: aiohttp.ClientSession, platform: Platform
) -> None:
    g, url = gate
    sender = ScimSender(url, "scim-test-token", session=session, allow_private=True)
    assert (
        await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    ).kind == "delivered"
    assert sender._traits == ServerTraits(patch=True, etag=True)
    user = await platform.by_external(ANN)
    assert user is not None
    # The platform edits the user: the version the sender holds is now stale.
    await platform.patch(user["id"], "displayName", "Ann J.")
    g.seen.clear()
    changed = dict(ANN_DATA, job_title="Mentor")
    assert (await sender.send(_batch(_event("subject.upserted", ANN, changed)))).kind == "delivered"
    path = f"/v2/Users/{user['id']}"
    # Refused with 412 (If-Match), read again, sent again.
    assert g.seen == [f"PATCH {path}", f"GET {path}", f"PATCH {path}"]
    user = await platform.by_external(ANN)
    assert user is not None and user["title"] == "Mentor" and user["displayName"] == "Ann J."


async def test_a_user_removed_on_the_platform_is_created_again(
    server: ScimServer, session: aiohttp.ClientSession, platform: Platform
) -> None:
    sender = _sender(server, session)
    assert (
        await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    ).kind == "delivered"
    await platform.clear()
    assert (
        await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    ).kind == "delivered"
    assert await platform.by_external(ANN) is not None


async def test_fields_no_longer_covered_are_left_as_the_platform_has_them(
    server: ScimServer, session: aiohttp.ClientSession, platform: Platform
) -> None:
    sender = _sender(server, session)
    assert (
        await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    ).kind == "delivered"
    narrowed = {"first_name": "Anna", "last_name": None, "email": None, "job_title": None}
    assert (
        await sender.send(_batch(_event("subject.upserted", ANN, narrowed)))
    ).kind == "delivered"
    user = await platform.by_external(ANN)
    assert user is not None
    assert user["name"] == {"givenName": "Anna", "familyName": "Jansen"}
    assert user["userName"] == "ann@example.nl" and user["title"] == "Teacher"
    # Without an email a new user cannot be made: refused for good, with a reason code.
    refused = await sender.send(_batch(_event("subject.upserted", BOB, narrowed)))
    assert refused == Outcome("rejected", "no-user-name")


async def test_each_persons_events_stay_in_order_in_a_batch(
    server: ScimServer, session: aiohttp.ClientSession, platform: Platform
) -> None:
    sender = _sender(server, session, in_flight=8)
    people = [f"{i:032x}" for i in range(1, 25)]
    events = []
    for n, sid in enumerate(people):
        data = dict(ANN_DATA, email=f"p{n}@example.nl", job_title="first")
        events.append(_event("subject.upserted", sid, data))
    for n, sid in enumerate(people):
        data = dict(ANN_DATA, email=f"p{n}@example.nl", job_title="second")
        events.append(_event("subject.upserted", sid, data))
    events += [_event("subject.deleted", sid) for sid in people[:5]]
    assert (await sender.send(_batch(*events))).kind == "delivered"
    users = {u["externalId"]: u for u in await platform.users()}
    assert len(users) == len(people)
    assert all(users[sid]["title"] == "second" for sid in people)
    assert [users[sid]["active"] for sid in people[:6]] == [False] * 5 + [True]


async def test_a_server_without_patch_gets_its_user_read_and_put_back(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": False},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": 100},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [],
    }
    path = tmp_path / "spc.json"
    path.write_text(json.dumps(config))
    with scim_server(extra=["--service-provider-config", str(path)]) as srv:
        platform = Platform(srv, session)
        made = await platform.create({"userName": "ann@example.nl", "displayName": "kept"})
        sender = _sender(srv, session)
        assert (
            await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
        ).kind == "delivered"
        assert sender._traits == ServerTraits(patch=False, etag=False)
        assert (await sender.send(_batch(_event("subject.deleted", ANN)))).kind == "delivered"
        user = await platform.by_external(ANN)
        assert user is not None and user["id"] == made["id"]
        assert user["active"] is False and user["displayName"] == "kept"
        assert user["title"] == "Teacher"


class _Gate:
    """A real HTTP hop in front of the SCIM server that answers some requests itself."""

    def __init__(self, upstream: str, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.upstream = upstream
        self.answers = answers
        self.seen: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.path}")
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.Response(status=status, headers=headers, text="no")
        async with (
            aiohttp.ClientSession() as s,
            s.request(
                request.method,
                self.upstream + request.path_qs[len("/v2") :],
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                allow_redirects=False,
            ) as resp,
        ):
            body = await resp.read()
            keep = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() in ("etag", "content-type", "location")
            }
            return web.Response(status=resp.status, body=body, headers=keep)


@pytest.fixture
async def gate(server: ScimServer) -> AsyncIterator[tuple[_Gate, str]]:
    g = _Gate(server.base_url, [])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", g.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield g, f"http://127.0.0.1:{port}/v2"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "7"}, Outcome("retry", "status-429", 7.0)),
        (503, {}, Outcome("retry", "status-503", None)),
        (500, {}, Outcome("retry", "status-500", None)),
        (401, {}, Outcome("rejected", "status-401", None)),
        (302, {"Location": "http://127.0.0.1:1/"}, Outcome("rejected", "redirect-302", None)),
    ],
)
async def test_answers_are_retried_or_refused_with_a_reason_code(
    gate: tuple[_Gate, str],
    session: aiohttp.ClientSession,
    platform: Platform,
    status: int,
    headers: dict[str, str],
    expected: Outcome,
) -> None:
    g, url = gate
    sender = ScimSender(url, "scim-test-token", session=session, allow_private=True)
    # The first call is the discovery; the answer is given to the user search after it.
    g.answers = [(404, {}), (status, headers)]
    outcome = await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    assert outcome == expected
    assert "ann" not in outcome.reason
    # The same batch again, the server well again: delivered, once.
    again = await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    assert again.kind == "delivered"
    assert len([u for u in await platform.users() if u.get("externalId") == ANN]) == 1


async def test_a_private_address_is_refused_unless_allowed(session: aiohttp.ClientSession) -> None:
    sender = ScimSender("http://127.0.0.1:9/v2", "t", session=session)
    outcome = await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    assert outcome == Outcome("rejected", "refused-address")


async def test_an_unreachable_server_is_worth_another_attempt(
    session: aiohttp.ClientSession,
) -> None:
    sender = ScimSender(
        f"http://127.0.0.1:{free_port()}/v2", "t", session=session, allow_private=True
    )
    outcome = await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
    assert outcome == Outcome("retry", "network")


async def _streaming_server(body: bytes) -> tuple[web.AppRunner, str]:
    """A SCIM server that answers every search with `body`, sent in small pieces with
    pauses (a large answer arrives over many reads)."""

    async def search(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/scim+json"})
        await resp.prepare(request)
        for start in range(0, len(body), 16 * 1024):
            await resp.write(body[start : start + 16 * 1024])
            await asyncio.sleep(0.001)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v2/Users", search)
    app.router.add_get("/v2/ServiceProviderConfig", lambda _: web.Response(status=404))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v2"


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        (300_000, Outcome("rejected", "several-users")),
        (2_000_000, Outcome("rejected", "answer-too-large")),
    ],
)
async def test_a_large_answer_is_read_whole_and_an_endless_one_is_cut_off(
    session: aiohttp.ClientSession, padding: int, expected: Outcome
) -> None:
    many = [{"schemas": [USER], "id": f"u{i}", "userName": f"u{i}@example.nl",
             "displayName": "x" * 100} for i in range(padding // 150)]  # fmt: skip
    body = orjson.dumps(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(many),
            "itemsPerPage": len(many),
            "startIndex": 1,
            "Resources": many,
        }
    )
    runner, url = await _streaming_server(body)
    try:
        sender = ScimSender(url, "t", session=session, allow_private=True)
        # Two users answer for one externalId: read whole, that is refused by name; past
        # the cap the answer is not read further.
        outcome = await sender.send(_batch(_event("subject.upserted", ANN, ANN_DATA)))
        assert outcome == expected
    finally:
        await runner.cleanup()
