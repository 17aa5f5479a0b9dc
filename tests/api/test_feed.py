"""The pull feed: order, paging, polling, auth scope, revocation and the ledger."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.app import make_app
from gateway.delivery.feed import decode_cursor, encode_cursor
from gateway.ledger.log import check_inclusion_proof
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.runtime.storage import DB_FILE
from gateway.store.records import NewEvent
from gateway.tenancy import create_tenant, token_hash
from tests.api.conftest import (
    ADMIN_TOKEN,
    MASTER_KEY,
    Api,
    grant,
    insert_events,
    make_connector,
    make_consumer,
    make_tenant,
    setup_feed,
    subject_id,
    transfer_rows,
    transfers,
)
from tests.principals import People, system

FEED = "/feed/v1/tenants/{}/events"


async def page(api: Api, token: str, tenant: str = "acme", **params: Any) -> dict[str, Any]:
    reply = await api.get(FEED.format(tenant), token=token, params=params or None)
    assert reply.status == 200, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = reply.body
    return body


async def drain(api: Api, token: str, limit: int, after: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    events: list[dict[str, Any]] = []
    while True:
        if after is not None:
            params["after"] = after
        body = await page(api, token, **params)
        if not body["events"]:
            return events
        assert len(body["events"]) <= limit
        events.extend(body["events"])
        after = body["next_cursor"]


def test_cursor_round_trip() -> None:
    for seq in (0, 1, 99, 10**15):
        assert decode_cursor(encode_cursor(seq, "acme"), "acme") == seq
    assert decode_cursor(None, "acme") == 0
    assert "=" not in encode_cursor(7, "acme")


async def test_feed_pages_in_order_without_gaps_or_duplicates(api: Api, services: Services) -> None:
    token, _ = await setup_feed(api)
    insert_events(services, "acme", 250, deleted_every=7)
    first = await page(api, token, limit=100)
    assert [e["seq"] for e in first["events"]] == list(range(1, 101))
    events = first["events"] + await drain(api, token, 100, first["next_cursor"])
    assert [e["seq"] for e in events] == list(range(1, 251))
    assert len({e["id"] for e in events}) == 250
    assert [e["subject_id"] for e in events] == [subject_id(n) for n in range(250)]
    deleted = [e for e in events if e["type"] == "subject.deleted"]
    assert deleted and all(e["data"] is None for e in deleted)
    upserted = events[1]
    assert upserted["type"] == "subject.upserted"
    assert upserted["data"] == {
        "first_name": "First1",
        "last_name": "Last1",
        "email": "person1@example-employer.nl",
        "job_title": "Engineer",
    }
    assert upserted["source"] == "hr" and upserted["occurred_at"].endswith("Z")


async def test_next_cursor_polls(api: Api, services: Services) -> None:
    token, _ = await setup_feed(api)
    empty = await page(api, token)
    assert empty == {"events": [], "next_cursor": encode_cursor(0, "acme"), "withheld": 0}
    insert_events(services, "acme", 3)
    body = await page(api, token, after=empty["next_cursor"])
    assert [e["seq"] for e in body["events"]] == [1, 2, 3]
    idle = await page(api, token, after=body["next_cursor"])
    assert idle["events"] == [] and idle["next_cursor"] == body["next_cursor"]
    insert_events(services, "acme", 2, start=3)
    more = await page(api, token, after=idle["next_cursor"])
    assert [e["seq"] for e in more["events"]] == [4, 5]


async def test_default_limit_is_100(api: Api, services: Services) -> None:
    token, _ = await setup_feed(api)
    insert_events(services, "acme", 150)
    assert len((await page(api, token))["events"]) == 100
    assert len((await page(api, token, limit=1000))["events"]) == 150


async def test_feed_auth(api: Api, services: Services) -> None:
    token_a, _ = await setup_feed(api, "acme")
    token_b, _ = await setup_feed(api, "globex")
    insert_events(services, "globex", 3)
    for token in (None, "wrong", token_a + "x", "x" * 5000):
        reply = await api.get(FEED.format("acme"), token=token)
        assert reply.status == 401, token
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    reply = await api.get(FEED.format("globex"), token=token_a)
    assert reply.status == 403
    assert "First" not in reply.text
    assert (await api.get(FEED.format("nobody"), token=token_a)).status == 403
    assert (await api.get(FEED.format("acme"), token=ADMIN_TOKEN)).status == 401
    assert len((await page(api, token_b, "globex"))["events"]) == 3


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"limit": "0"}, 422),
        ({"limit": "1001"}, 422),
        ({"limit": "-5"}, 422),
        ({"limit": "ten"}, 422),
        ({"limit": "1e3"}, 422),
        ([("limit", "5"), ("limit", "6")], 400),
        ({"after": "garbage!"}, 400),
        ({"after": ""}, 400),
        ({"after": base64.urlsafe_b64encode(b"v2:5").decode().rstrip("=")}, 400),
        ({"after": base64.urlsafe_b64encode(b"v1:-1").decode().rstrip("=")}, 400),
        ({"after": base64.urlsafe_b64encode(b"v1:01").decode().rstrip("=")}, 400),
        ({"after": "x" * 100}, 422),
        ({"unknown": "1"}, 422),
    ],
)
async def test_bad_feed_queries_are_problems(api: Api, params: Any, status: int) -> None:
    token, _ = await setup_feed(api)
    reply = await api.get(FEED.format("acme"), token=token, params=params)
    assert reply.status == status, reply.body


async def test_revocation_withholds_events(api: Api, services: Services) -> None:
    token, instruction = await setup_feed(api)
    await make_connector(api, id="crm")
    await grant(api, connector="crm")
    insert_events(services, "acme", 4, source="hr")
    first = await page(api, token, limit=2)
    assert [e["seq"] for e in first["events"]] == [1, 2]
    revoked = await api.delete(f"/admin/v1/tenants/acme/connectors/hr/instructions/{instruction}")
    assert revoked.status == 200
    insert_events(services, "acme", 3, source="crm", start=100)
    rest = await page(api, token, after=first["next_cursor"])
    assert [e["source"] for e in rest["events"]] == ["crm"] * 3
    assert [e["seq"] for e in rest["events"]] == [5, 6, 7]
    assert rest["withheld"] == 2
    assert decode_cursor(rest["next_cursor"], "acme") == 7
    # Withheld for good: re-reading from the start still leaves hr's events out.
    again = await page(api, token)
    assert again["withheld"] == 4 and len(again["events"]) == 3
    metrics = (await api.get("/metrics")).text
    withheld = '{connector="hr",reason="feed_withheld",tenant="acme"} 6.0'
    assert f"sluis_authorisation_refusals_total{withheld}" in metrics
    ledger = (await api.get("/admin/v1/tenants/acme/ledger")).body
    refused = [e for e in transfers(ledger) if e["direction"] == "refused"]
    assert refused[0]["connector"] == "hr"
    assert refused[0]["instruction_id"] == instruction
    assert refused[0]["counts"]["records"] == 2 and refused[0]["subject_ids"] == []
    # Not queued, but the re-grant re-emits hr's current state: polling on converges.
    regrant = await grant(api)
    assert regrant["reemitted_events"] == 4
    after = await page(api, token, after=rest["next_cursor"])
    assert [e["seq"] for e in after["events"]] == [8, 9, 10, 11]
    assert {e["subject_id"] for e in after["events"]} == {subject_id(n) for n in range(4)}
    assert {e["instruction_id"] for e in after["events"]} == {regrant["id"]}
    assert [e["seq"] for e in (await page(api, token))["events"]] == list(range(1, 12))


async def test_a_kept_page_is_checked_against_its_source_of_now(
    api: Api, services: Services
) -> None:
    """A page kept for other consumers (`FeedBlocks`) has its source's standing read in the
    same statement as the token (`FeedBlocks.source_of`, `Store.feed_access`): still, a
    revocation, a narrower mapping and a deleted connector each take effect on the next
    page, and a token of another tenant learns nothing."""
    token, instruction = await setup_feed(api)
    other = await make_consumer(api)
    insert_events(services, "acme", 20)
    first = await page(api, token, limit=10)
    assert services.feed_blocks.source_of("acme", 0, 10) == "hr"
    assert await page(api, other, limit=10) == first
    assert services.feed_blocks.hits >= 1
    c = "/admin/v1/tenants/acme/connectors/hr"
    assert (await api.delete(f"{c}/instructions/{instruction}")).status == 200
    revoked = await page(api, other, limit=10)
    assert revoked["events"] == [] and revoked["withheld"] == 10
    await grant(api)
    assert len((await page(api, other, limit=10))["events"]) == 10
    toml = (
        'connector = "afas"\n[identity]\nfields = ["Medewerker"]\nnamespace = "afas.employee"\n'
        '[fields.email]\nsource = "Email_werk"\ncategory = "user.contact.email"\n'
    )
    assert (await api.patch(c, {"mapping": {"toml": toml}})).status == 200
    unauthorised = await page(api, token, limit=10)
    assert unauthorised["events"] == [] and unauthorised["withheld"] == 10
    await grant(api)
    narrowed = (await page(api, token, limit=10))["events"]
    assert [e["seq"] for e in narrowed] == list(range(1, 11))
    assert narrowed[0]["data"] == {
        "first_name": None,
        "last_name": None,
        "email": "person0@example-employer.nl",
        "job_title": None,
    }
    await make_tenant(api, "beta")
    stranger = await make_consumer(api, "beta")
    reply = await api.get(FEED.format("acme"), token=stranger, params={"limit": 10})
    assert reply.status == 403 and "person" not in reply.text
    assert (await api.delete(c, params={"subjects": "keep"})).status in (200, 204)
    gone = await page(api, other, limit=10)
    assert gone["events"] == [] and gone["withheld"] == 10


async def test_connector_without_instruction_delivers_nothing(api: Api, services: Services) -> None:
    await make_tenant(api)
    await make_connector(api)
    token = await make_consumer(api)
    insert_events(services, "acme", 5)
    body = await page(api, token)
    assert body["events"] == [] and body["withheld"] == 5
    assert "First" not in str(body)


async def test_uncovered_fields_are_sent_as_null(api: Api, services: Services) -> None:
    await make_tenant(api)
    toml = (
        'connector = "afas"\n[identity]\nfields = ["Medewerker"]\nnamespace = "afas.employee"\n'
        '[fields.email]\nsource = "Email_werk"\ncategory = "user.contact.email"\n'
    )
    await make_connector(api, mapping={"toml": toml})
    await grant(api)
    token = await make_consumer(api)
    insert_events(services, "acme", 2)
    events = (await page(api, token))["events"]
    assert events[0]["data"] == {
        "first_name": None,
        "last_name": None,
        "email": "person0@example-employer.nl",
        "job_title": None,
    }
    ledger = (await api.get("/admin/v1/tenants/acme/ledger")).body
    assert transfers(ledger)[-1]["fields"] == {"email": "user.contact.email"}


async def test_every_served_page_is_an_outbound_ledger_entry(api: Api, services: Services) -> None:
    token, instruction = await setup_feed(api)
    consumer_id = None
    insert_events(services, "acme", 30)
    await drain(api, token, 20)
    reply = await api.get("/admin/v1/tenants/acme/ledger", params={"limit": 100})
    ledger = reply.body
    rows = transfer_rows(ledger)
    first, last = rows[0]["index"], rows[-1]["index"]
    assert ledger["size"] == last + 1
    assert ledger["checkpoint"].startswith(services.signer.origin_for("acme") + "\n")
    entries = [e["entry"] for e in rows]
    assert [e["direction"] for e in entries] == ["outbound", "outbound"]
    assert [e["counts"]["records"] for e in entries] == [20, 10]
    assert rows[0]["subject_ids"] == sorted(subject_id(n) for n in range(20))
    assert entries[0]["subjects"]["count"] == 20
    for entry in entries:
        assert entry["instruction_id"] == instruction
        assert entry["connector"] == "hr"
        assert entry["destination"].startswith("feed:con_")
        assert entry["mapping_digest"].startswith("sha256:")
        consumer_id = consumer_id or entry["destination"]
        assert entry["destination"] == consumer_id
        assert "First" not in str(entry) and "example-employer" not in str(entry)
    after = await api.get("/admin/v1/tenants/acme/ledger", params={"after": first})
    assert [e["index"] for e in after.body["entries"]] == [last]
    assert after.body["next_after"] == last
    proof = await api.get(f"/admin/v1/tenants/acme/ledger/proof/{last}")
    assert proof.status == 200
    checkpoint = check_inclusion_proof(proof.body, services.signer.public_key)
    assert checkpoint.size == last + 1
    assert (await api.get(f"/admin/v1/tenants/acme/ledger/proof/{last + 1}")).status == 404
    assert (await api.get("/admin/v1/tenants/nope/ledger")).status == 403
    assert (await api.get("/admin/v1/tenants/acme/ledger", params={"limit": 0})).status == 422
    metrics = (await api.get("/metrics")).text
    assert 'sluis_feed_events_served_total{tenant="acme"} 30.0' in metrics


async def test_concurrent_pages_are_each_on_the_ledger_when_their_response_arrives(
    api: Api, services: Services
) -> None:
    """Pages served at once are committed in groups by the committer threads while the
    route waits in its loop (`Ledger.append_grouped_later`): still, when a page's response
    arrives, its outbound entry is already on the ledger."""
    token, _ = await setup_feed(api)
    tokens = [token] + [await make_consumer(api) for _ in range(11)]
    insert_events(services, "acme", 40)
    ledger = services.ledger("acme")
    headers = {t: {"Authorization": f"Bearer {t}"} for t in tokens}

    def delivered() -> list[tuple[str, int]]:
        found = []
        for record in ledger.entries(limit=10_000):
            entry = record.entry.model_dump()
            if entry.get("direction") == "outbound":
                found.append((entry["destination"], entry["counts"]["records"]))
        return found

    async def consume(token: str) -> None:
        access = services.store.feed_access(token_hash(token))
        assert access is not None
        mine = f"feed:{access.consumer.id}"
        after: str | None = None
        for n in range(1, 5):
            params: dict[str, Any] = {"limit": 10, **({"after": after} if after else {})}
            reply = await api.get(FEED.format("acme"), params=params, headers=headers[token])
            assert reply.status == 200, reply.body
            assert len(reply.body["events"]) == 10
            assert [c for d, c in delivered() if d == mine] == [10] * n
            after = reply.body["next_cursor"]

    await asyncio.gather(*(consume(t) for t in tokens))
    entries = delivered()
    assert len(entries) == 4 * len(tokens)
    assert ledger.verify(services.signer.public_key).ok


async def test_a_page_whose_ledger_entry_cannot_be_written_is_not_sent(
    api: Api, services: Services, tmp_path: Path
) -> None:
    """The page's entry is committed before it is sent, so a ledger that refuses the write
    (here a trigger, as a full disk would) answers an error with no events, and the same
    page is served once the ledger takes writes again."""
    token, _ = await setup_feed(api)
    insert_events(services, "acme", 5)
    size = services.ledger("acme").size()
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON ledger_entries "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    # The raw client: a store that refuses writes is a 503 the OpenAPI document leaves to
    # the problem middleware, as on every route.
    refused = await api.client.get(
        FEED.format("acme"), headers={"Authorization": f"Bearer {token}"}
    )
    text = await refused.text()
    assert refused.status == 503 and refused.content_type == "application/problem+json"
    assert "events" not in orjson.loads(text) and "person" not in text
    assert services.ledger("acme").size() == size
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute("DROP TRIGGER disk_full")
    body = await page(api, token)
    assert [e["seq"] for e in body["events"]] == [1, 2, 3, 4, 5]
    assert services.ledger("acme").size() == size + 1


async def test_a_new_tenants_ledger_begins_with_who_created_it(api: Api, people: People) -> None:
    await make_tenant(api)
    body = (await api.get("/admin/v1/tenants/acme/ledger")).body
    actions = [e["entry"]["action"] for e in body["entries"]]
    # The tenant's creation by an operator, then the accounts this test's admin needed.
    assert actions[0] == "tenant.created"
    assert body["entries"][0]["entry"]["actor"] == people.account(None, "operator")
    assert transfers(body) == []
    assert (await api.get(f"/admin/v1/tenants/acme/ledger/proof/{body['size']}")).status == 404


def test_feed_rows_match_events_after(services: Services) -> None:
    create_tenant(
        services.store, services.box, "acme", "Acme", services.clock(), by=system(services, "acme")
    )
    insert_events(services, "acme", 20, deleted_every=3)
    decoded = services.store.events_after("acme", 5, 10)
    raw = services.store.feed_rows("acme", 5, 10)
    assert [r[0] for r in raw] == [e.seq for e in decoded] == list(range(6, 16))
    for (seq, kind, subject, source, wire), event in zip(raw, decoded, strict=True):
        assert (seq, kind, subject, source) == (
            event.seq,
            event.type,
            event.subject_id,
            event.source,
        )
        sent = orjson.loads(wire)
        assert (sent["id"], sent["instruction_id"]) == (event.id, event.instruction_id)
        assert sent["data"] == event.data
        assert datetime.fromisoformat(sent["occurred_at"]) == event.occurred_at


async def test_only_egress_fields_leave_whatever_is_stored(api: Api, services: Services) -> None:
    token, _ = await setup_feed(api)
    event = NewEvent(
        id="evt_extra",
        type="subject.upserted",
        subject_id=subject_id(1),
        data={"first_name": "Anna", "email": "anna@example-employer.nl", "bsn": "123456782"},
        occurred_at=datetime.now(UTC),
        source="hr",
        instruction_id="ins_x",
    )
    services.store.append_events("acme", [event])
    reply = await api.get(FEED.format("acme"), token=token)
    assert reply.body["events"][0]["data"] == {
        "first_name": "Anna",
        "last_name": None,
        "email": "anna@example-employer.nl",
        "job_title": None,
    }
    assert "123456782" not in reply.text


async def test_expired_instruction_withholds(aiohttp_client: Any, tmp_path: Path) -> None:
    now = [datetime.now(UTC)]
    services = Services.open(
        Settings(
            data_dir=tmp_path,
            admin_token=ADMIN_TOKEN,
            master_key=MASTER_KEY,
            allow_private_sources=True,
        ),
        clock=lambda: now[0],
    )
    try:
        api = Api(await aiohttp_client(make_app(services)), people=People(services))
        await make_tenant(api)
        await make_connector(api)
        until = (now[0] + timedelta(hours=1)).isoformat()
        body = {"purpose": "p", "valid_until": until}
        ins = (await api.post("/admin/v1/tenants/acme/connectors/hr/instructions", body)).body
        token = await make_consumer(api)
        insert_events(services, "acme", 2)
        assert len((await page(api, token))["events"]) == 2
        now[0] += timedelta(hours=2)
        later = await page(api, token)
        assert later["events"] == [] and later["withheld"] == 2
        listed = await api.get("/admin/v1/tenants/acme/connectors/hr/instructions")
        assert listed.body["instructions"][0]["state"] == "expired"
        refused = await api.post("/admin/v1/tenants/acme/connectors/hr/syncs")
        assert refused.status == 409 and refused.body["code"] == "expired"
        assert refused.body["instruction_id"] == ins["id"]
    finally:
        services.close()
