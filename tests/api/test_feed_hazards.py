"""Feed hazards that used to look like "nothing new" forever: a cursor beyond the head, a
cursor of another tenant's feed, and events withheld during a revocation, after which a
consumer polling through the gap must still end with the source's current state."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from gateway.delivery.feed import encode_cursor
from gateway.runtime.services import Services
from tests.api.conftest import Api, insert_events, setup_feed
from tests.api.test_lifecycle import apply, drain, full_sync
from tests.api.test_syncs import afas_connector

afas_emulator = pytest.importorskip("connectors.afas.emulator")

FEED = "/feed/v1/tenants/{}/events"
C = "/admin/v1/tenants/acme/connectors/hr"


def v1(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


async def test_a_cursor_beyond_the_head_is_a_problem_naming_the_head(
    api: Api, services: Services
) -> None:
    token, _ = await setup_feed(api)
    empty = await api.get(FEED.format("acme"), token=token, params={"after": v1(5)})
    assert empty.status == 409
    assert empty.body["type"] == "urn:sluis:problem:cursor-beyond-head"
    assert empty.body["head_cursor"] == encode_cursor(0, "acme")
    insert_events(services, "acme", 3)
    for cursor in (encode_cursor(10, "acme"), v1(4)):
        ahead = await api.get(FEED.format("acme"), token=token, params={"after": cursor})
        assert ahead.status == 409, ahead.body
        assert "newest event is 3" in ahead.body["detail"]
        assert ahead.body["head_cursor"] == encode_cursor(3, "acme")
    at_head = await api.get(
        FEED.format("acme"), token=token, params={"after": ahead.body["head_cursor"]}
    )
    assert at_head.status == 200 and at_head.body["events"] == []
    assert at_head.body["next_cursor"] == ahead.body["head_cursor"]


async def test_v1_cursors_within_range_are_still_accepted(api: Api, services: Services) -> None:
    token, _ = await setup_feed(api)
    insert_events(services, "acme", 3)
    reply = await api.get(FEED.format("acme"), token=token, params={"after": v1(2)})
    assert reply.status == 200
    assert [e["seq"] for e in reply.body["events"]] == [3]
    assert reply.body["next_cursor"] == encode_cursor(3, "acme")


async def test_a_cursor_of_another_tenant_is_a_problem(api: Api, services: Services) -> None:
    acme, _ = await setup_feed(api, "acme")
    globex, _ = await setup_feed(api, "globex")
    insert_events(services, "acme", 5)
    insert_events(services, "globex", 5)
    theirs = (await api.get(FEED.format("globex"), token=globex, params={"limit": 2})).body
    mixed = await api.get(FEED.format("acme"), token=acme, params={"after": theirs["next_cursor"]})
    assert mixed.status == 409
    assert mixed.body["type"] == "urn:sluis:problem:cursor-other-tenant"
    assert "another tenant" in mixed.body["detail"]
    assert "globex" not in mixed.text


async def test_a_consumer_polling_through_a_revocation_converges_to_the_source(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=80)
    env = emulator[afas_emulator.ENVIRONMENT]
    first_grant = (await api.post(f"{C}/instructions", {"purpose": "lms"})).body
    token = (await api.post("/admin/v1/tenants/acme/consumers", {"name": "lms"})).body["token"]
    assert (await full_sync(api))["status"] == "succeeded"
    held: dict[str, Any] = {}
    events, cursor = await drain(api, token)
    apply(held, events, "hr")

    # Changes synced but not yet read when the instruction is revoked: withheld for good.
    env.touch(6)
    env.retire(2)
    assert (await full_sync(api))["counts"]["upserted"] > 0
    await api.delete(f"{C}/instructions/{first_grant['id']}")
    gap, cursor = await drain(api, token, cursor)
    assert gap == []
    polled = await api.get(FEED.format("acme"), token=token, params={"after": cursor})
    assert polled.body["withheld"] == 0  # the cursor moved past them already
    # The source changes while nothing may be fetched.
    env.touch(5)
    env.retire(3)
    del env.people[:2]
    env.version += 1
    refused = await api.post(f"{C}/syncs", {"mode": "full"})
    assert refused.status == 409 and refused.body["code"] == "revoked"

    regrant = await api.post(f"{C}/instructions", {"purpose": "lms"})
    assert regrant.status == 201 and regrant.body["reemitted_events"] > 0
    assert (await full_sync(api))["status"] == "succeeded"
    rest, cursor = await drain(api, token, cursor)
    apply(held, rest, "hr")

    # The source's current minimised state, as a fresh connector of the same source sees it
    # (same tenant key and identity namespace, so the same subject ids).
    await api.post(
        "/admin/v1/tenants/acme/connectors",
        {
            "id": "mirror",
            "type": "afas",
            "base_url": (await api.get(C)).body["base_url"],
            "credentials": {"token": afas_emulator.EMULATOR_TOKEN},
            "mapping": "afas",
            "settings": {"page_size": 50},
        },
    )
    mirror = "/admin/v1/tenants/acme/connectors/mirror"
    await api.post(f"{mirror}/instructions", {"purpose": "check"})
    assert (await full_sync(api, mirror))["status"] == "succeeded"
    everything, _ = await drain(api, token)
    expected: dict[str, Any] = {}
    apply(expected, everything, "mirror")
    assert len(expected) > 50
    assert held == expected
