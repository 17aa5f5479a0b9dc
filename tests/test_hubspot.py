"""HubSpot: the emulator keeps HubSpot's contract, and the connector relies only on that.

Everything runs over real HTTP against the emulator on 127.0.0.1. The checks that matter
most for privacy: the emulator never returns a property nobody asked for, the connector
asks only for mapped properties, and no sensitive value reaches a page, an error or a log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL, RateLimit
from connectors.hubspot import CONNECTOR_TYPE
from connectors.hubspot.client import HubSpotConnector, epoch_ms, mapped_properties, spell_time
from connectors.hubspot.emulator import EMULATOR_TOKEN, SEARCH_PATH, STATE, make_app
from connectors.hubspot.synthetic import SENSITIVE_PROPERTIES, contacts, mark_modified
from connectors.registry import connector_type
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from tests.contract.harness_hubspot import HARNESS
from tests.contract.suite import Run, leaked, sync

from .conftest import MAPPINGS

KEY = b"hubspot tests: a 32-byte tenant!"
MAPPED = ["email", "firstname", "jobtitle", "lastname"]
ALWAYS = {"hs_object_id", "createdate", "lastmodifieddate"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def serve(aiohttp_server: Any) -> Callable[..., Any]:
    """Start an emulator; returns (app, base URL)."""

    async def start(**options: Any) -> tuple[web.Application, str]:
        app = make_app(**options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return app, str(server.make_url("")).rstrip("/")

    return start


def connector(
    base: str, session: aiohttp.ClientSession, *, token: str = EMULATOR_TOKEN, **settings: Any
) -> HubSpotConnector:
    config = ConnectorConfig("hubspot", base, credentials={"token": token}, settings=settings)
    projector = Projector(load_mapping(MAPPINGS / "hubspot.toml"), KEY)
    return HubSpotConnector(config, projector, session, retry=FAST)


def search_body(since: str, *, limit: int = 10, after: str = "0") -> dict[str, Any]:
    return {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "limit": limit,
        "after": after,
    }


# --------------------------------------------------------------------------- data, mapping


def test_synthetic_contacts_look_like_hubspot_and_are_deterministic() -> None:
    first, again = list(contacts(200, seed=7)), list(contacts(200, seed=7))
    assert first == again
    assert [int(c["id"]) for c in first] == sorted(int(c["id"]) for c in first)
    for c in first:
        assert all(isinstance(v, str) for v in c["properties"].values())
        assert ISO_MS.fullmatch(c["updatedAt"])
        assert c["properties"]["lastmodifieddate"] == c["updatedAt"]
        assert ("archivedAt" in c) is c["archived"]
        assert set(SENSITIVE_PROPERTIES) <= set(c["properties"])
        ms = epoch_ms(c["updatedAt"])
        assert ms is not None
        assert spell_time(ms) == c["updatedAt"]  # watermarks read back exactly
        assert epoch_ms(str(ms)) == ms
    assert any(c["archived"] for c in contacts(200, seed=7, archived_share=0.1))
    assert epoch_ms("2024-05-06T09:30:12.345+02:00") == epoch_ms("2024-05-06T07:30:12.345Z")
    assert epoch_ms("last tuesday") is None


def test_bundled_mapping_and_registry_entry() -> None:
    mapping = load_mapping(MAPPINGS / "hubspot.toml")
    assert mapping.connector == "hubspot"
    assert mapping.identity.namespace == "hubspot.contact"
    assert mapping.fields["email"].required
    assert mapped_properties(mapping.source_fields) == MAPPED
    assert mapped_properties(frozenset({"id", "archived"})) == ["hs_object_id"]
    kind = connector_type("hubspot")
    assert kind is CONNECTOR_TYPE
    assert kind.connector is HubSpotConnector
    assert kind.credential_keys == ()
    assert kind.optional_credential_keys == ("token", "client_id", "client_secret")
    assert kind.authorization is not None


# --------------------------------------------------------------------------- emulator


async def test_emulator_refuses_missing_and_wrong_tokens(serve: Any, session: Any) -> None:
    _, base = await serve(people=5)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        async with session.get(f"{base}/crm/v3/objects/contacts", headers=headers) as resp:
            assert resp.status == 401
            body = await resp.json()
        assert body["status"] == "error"
        assert body["category"] == "INVALID_AUTHENTICATION"
        assert UUID.fullmatch(body["correlationId"])


async def test_emulator_returns_only_requested_properties(serve: Any, session: Any) -> None:
    _, base = await serve(people=30)
    url = f"{base}/crm/v3/objects/contacts"
    params = {"properties": "firstname,email,no_such_property"}
    async with session.get(url, params=params, headers=AUTH) as resp:
        body = await resp.json()
        headers = resp.headers
    for c in body["results"]:
        assert set(c["properties"]) == {"firstname", "email"} | ALWAYS
        assert set(c) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert headers["X-HubSpot-RateLimit-Max"] == "190"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "999999"
    async with session.get(url, headers=AUTH) as resp:
        defaults = await resp.json()
    assert len(defaults["results"]) == 10
    for c in defaults["results"]:
        assert set(c["properties"]) == {"firstname", "lastname", "email"} | ALWAYS


async def test_emulator_pages_to_the_end_and_keeps_archived_apart(serve: Any, session: Any) -> None:
    app, base = await serve(people=250, archived_share=0.1)
    state = app[STATE]

    async def walk(archived: str) -> list[str]:
        ids: list[str] = []
        params = {"limit": "500", "archived": archived}
        while True:
            url = f"{base}/crm/v3/objects/contacts"
            async with session.get(url, params=params, headers=AUTH) as resp:
                body = await resp.json()
            assert len(body["results"]) <= 100
            ids += [c["id"] for c in body["results"]]
            assert all(c["archived"] is (archived == "true") for c in body["results"])
            if "paging" not in body:
                return ids
            nxt = body["paging"]["next"]
            assert nxt["link"].startswith("http://127.0.0.1:")
            assert f"after={nxt['after']}" in nxt["link"]
            params["after"] = nxt["after"]

    active, archived = await walk("false"), await walk("true")
    assert active == [c["id"] for c in state.contacts if not c["archived"]]
    assert archived == [c["id"] for c in state.contacts if c["archived"]]
    assert archived


async def test_emulator_search_filters_sorts_and_caps_paging(serve: Any, session: Any) -> None:
    app, base = await serve(people=300, archived_share=0.1, search_cap=50)
    state = app[STATE]
    times = sorted(c["updatedAt"] for c in state.contacts if not c["archived"])
    since = times[-120]
    url = f"{base}{SEARCH_PATH}"
    for value in (since, str(epoch_ms(since))):
        async with session.post(url, json=search_body(value, limit=30), headers=AUTH) as resp:
            body = await resp.json()
        assert body["total"] == 120
        got = [c["properties"]["lastmodifieddate"] for c in body["results"]]
        assert got == times[-120:-90]
        assert body["paging"]["next"] == {"after": "30"}
        assert not any(c["archived"] for c in body["results"])
    async with session.post(url, json=search_body(since, after="50"), headers=AUTH) as resp:
        assert resp.status == 400
        error = await resp.json()
    assert error["category"] == "VALIDATION_ERROR"
    assert UUID.fullmatch(error["correlationId"])
    async with session.post(url, json=search_body(since, limit=201), headers=AUTH) as resp:
        assert resp.status == 400
    either = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "1001"}]},
            {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": "1004"}]},
        ],
        "properties": ["jobtitle"],
    }
    async with session.post(url, json=either, headers=AUTH) as resp:
        body = await resp.json()
    live = {c["id"] for c in state.contacts if not c["archived"]}
    assert {c["id"] for c in body["results"]} == {"1001", "1004"} & live
    for c in body["results"]:
        assert set(c["properties"]) == {"jobtitle"} | ALWAYS


async def test_emulator_answers_a_burst_like_hubspot(serve: Any, session: Any) -> None:
    _, base = await serve(people=5, ten_secondly=1)
    url = f"{base}/crm/v3/objects/contacts"
    async with session.get(url, headers=AUTH) as resp:
        assert resp.status == 200
    async with session.get(url, headers=AUTH) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 10
        body = await resp.json()
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
    assert body["message"] == "You have reached your ten_secondly_rolling limit."


# --------------------------------------------------------------------------- connector


async def test_full_sync_asks_only_for_mapped_properties_and_reports_leavers(
    serve: Any, session: Any
) -> None:
    app, base = await serve(people=230, archived_share=0.1)
    archived = {c["id"] for c in app[STATE].contacts if c["archived"]}
    run = await sync(connector(base, session, page_size=40))
    assert run.fetched == 230
    assert len(run.by_id()) == 230
    assert len(run.subjects) - len(run.active_ids()) == len(archived)
    listed = app[CONTROL].requests_to("/crm/v3/objects/contacts")
    assert len(listed) == 7  # 202 active and 28 archived contacts, 40 a page
    for request in listed:
        query = parse_qs(request.query)
        assert query["properties"] == [",".join(MAPPED)]
        assert query["limit"] == ["40"]
    newest = max(c["updatedAt"] for c in app[STATE].contacts if not c["archived"])
    assert run.watermark == newest


async def test_incremental_sync_picks_up_touched_contacts(serve: Any, session: Any) -> None:
    app, base = await serve(people=120, archived_share=0.0)
    hubspot = connector(base, session)
    full = await sync(hubspot)
    touched = set(app[STATE].touch(4))
    changes = await sync(hubspot, SyncMode.INCREMENTAL, since=full.watermark)
    assert changes.fetched <= 5  # the four, plus the one at the old watermark
    assert {hubspot.projector.subject_id(cid) for cid in touched} <= set(changes.by_id())
    assert changes.watermark is not None and changes.watermark > str(full.watermark)
    for body in app[STATE].search_bodies:
        assert body["properties"] == MAPPED


async def test_incremental_sync_moves_its_window_past_the_search_cap(
    serve: Any, session: Any
) -> None:
    app, base = await serve(people=100, archived_share=0.0, search_cap=20, page_cap=7)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for i, c in enumerate(app[STATE].contacts[:60]):
        mark_modified(c, start + timedelta(milliseconds=i // 3))  # ties of three
    hubspot = connector(base, session, search_cap=20)
    run = await sync(hubspot, SyncMode.INCREMENTAL, since="2029-12-31T23:59:59.000Z")
    assert len(run.by_id()) == 60
    assert all(int(b["after"]) < 20 for b in app[STATE].search_bodies)
    assert run.watermark == "2030-01-01T00:00:00.019Z"


async def test_an_edit_during_an_incremental_run_skips_nobody(serve: Any, session: Any) -> None:
    app, base = await serve(people=60, archived_share=0.0, page_cap=10)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    people = app[STATE].contacts
    for i, c in enumerate(people):
        mark_modified(c, start + timedelta(seconds=i))

    def edit_a_seen_contact(page: int) -> None:
        if page == 2:  # offset paging would now skip the contact that slides into its place
            mark_modified(people[3], start + timedelta(hours=1))

    hubspot = connector(base, session)
    since = people[0]["updatedAt"]
    run = await sync(hubspot, SyncMode.INCREMENTAL, since=since, before_page=edit_a_seen_contact)
    assert len(run.by_id()) == 60


async def test_more_ties_than_search_can_page_are_refused(serve: Any, session: Any) -> None:
    app, base = await serve(people=40, archived_share=0.0, search_cap=20, page_cap=5)
    for c in app[STATE].contacts:
        mark_modified(c, datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, search_cap=20), SyncMode.INCREMENTAL)
    assert caught.value.kind == "refused"
    assert "full sync" in str(caught.value)


async def test_bad_token_is_an_auth_error_without_hubspot_text(serve: Any, session: Any) -> None:
    app, base = await serve(people=5)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, token="pat-eu1-wrong"))
    error = caught.value
    assert (error.kind, error.status) == ("auth", 401)
    assert "INVALID_AUTHENTICATION" in str(error)
    assert UUID.search(str(error))
    assert "expired" not in str(error)
    assert len(app[CONTROL].log) == 1


def test_error_bodies_yield_codes_never_messages() -> None:
    hubspot = connector("http://127.0.0.1:9", None)  # type: ignore[arg-type]
    body = (
        b'{"status":"error","message":"Property values were not valid: jan@example.org",'
        b'"correlationId":"not a uuid <script>","category":"VALIDATION_ERROR"}'
    )
    error = hubspot.http_error(400, body, None)
    assert error.kind == "config"
    assert "VALIDATION_ERROR" in str(error)
    assert "jan@example.org" not in str(error)
    assert "script" not in str(error)
    burst = b'{"errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}'
    limited = hubspot.http_error(429, burst, None)
    assert limited.kind == "rate_limited"
    assert limited.retry_after == 10.0
    assert hubspot.http_error(429, burst, 3.0).retry_after == 3.0
    assert hubspot.http_error(502, b"<html>", None).kind == "unavailable"


async def test_a_rate_limit_is_waited_out_as_retry_after_says(serve: Any, session: Any) -> None:
    app, base = await serve(people=250, archived_share=0.0)
    control = app[CONTROL]
    clock = [0.0]
    control.clock = lambda: clock[0]
    control.rate_limit = RateLimit(requests=2, window=10.0)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    config = HARNESS.config(base)
    projector = Projector(load_mapping(HARNESS.mapping_path), KEY)
    hubspot = HubSpotConnector(config, projector, session, sleep=sleep)
    run = await sync(hubspot)
    assert len(run.by_id()) == 250
    assert slept == [10.0]
    assert hubspot.stats.rate_limited == 1
    statuses = [r.status for r in control.log]
    assert statuses.count(429) == 1


async def test_unknown_cursor_is_a_config_error(serve: Any, session: Any) -> None:
    _, base = await serve(people=5)
    hubspot = connector(base, session)
    for cursor in ("page:3", "search:abc:0", "active"):
        with pytest.raises(ConnectorError) as caught:
            await hubspot.fetch_page(PageRequest(SyncMode.FULL, cursor=cursor))
        assert caught.value.kind == "config"


async def test_nothing_sensitive_leaves_even_when_hubspot_sends_it(
    serve: Any, session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=80, archived_share=0.1)
    sensitive = HARNESS.sensitive_values(app)
    assert len(sensitive) > 100
    hubspot = connector(base, session, page_size=30)
    app[STATE].touch(3)
    full: Run = await sync(hubspot)
    changes = await sync(hubspot, SyncMode.INCREMENTAL, since="2020-01-01T00:00:00Z")
    texts = full.trace + changes.trace
    # A HubSpot that ignored `properties=` would send everything: the door still holds.
    url = f"{base}/crm/v3/objects/contacts"
    params = {"properties": ",".join((*SENSITIVE_PROPERTIES, "firstname", "email")), "limit": "100"}
    async with session.get(url, params=params, headers=AUTH) as resp:
        everything = (await resp.json())["results"]
    page = hubspot.projector.project_page(everything)
    assert "properties.phone" in page.dropped
    texts += [repr(page.subjects), repr(page.dropped), repr(page.rejected), caplog.text]
    assert leaked(sensitive, *texts) == []


def test_harness_steers_the_emulator() -> None:
    app = HARNESS.make_app(20, page_size=3)
    assert not any(c["archived"] for c in app[STATE].contacts)
    HARNESS.touch(app, 2)
    HARNESS.retire(app, 2)
    HARNESS.break_email(app, 2)
    state = app[STATE]
    assert sum(c["archived"] for c in state.contacts) == 2
    assert sum(c["properties"]["email"] is None for c in state.contacts) == 2
    assert HARNESS.control(app) is app[CONTROL]
    assert HARNESS.sensitive_fields[0].startswith("properties.")
    assert HARNESS.sensitive_values(app)


# --------------------------------------------------------------------------- vendor client


async def test_hubspots_own_client_works_against_the_emulator(serve: Any) -> None:
    """HubSpot's official Python client (hubspot-api-client), pointed at the emulator: list,
    get by id and by email, search sorted with its string sorts, and a 429 surfacing as its
    ApiException with HubSpot's rate-limit body and headers."""
    hubspot = pytest.importorskip("hubspot.crm.contacts")
    import urllib3

    app, base = await serve(people=30, archived_share=0.0)
    state = app[STATE]
    config = hubspot.Configuration(host=base)
    config.access_token = EMULATOR_TOKEN
    # urllib3 would wait out the 429's Retry-After and try again; show the 429 instead.
    config.retries = urllib3.util.Retry(total=0, respect_retry_after_header=False)

    def talk() -> dict[str, Any]:
        with hubspot.ApiClient(config) as client:
            basic, search = hubspot.BasicApi(client), hubspot.SearchApi(client)
            page = basic.get_page(limit=10, properties=["firstname", "jobtitle"])
            second = basic.get_page(limit=10, after=page.paging.next.after)
            one = basic.get_by_id(state.contacts[2]["id"], properties=["email", "jobtitle"])
            email = state.contacts[5]["properties"]["email"]
            by_email = basic.get_by_id(email, id_property="email", properties=["email"])
            newest = search.do_search(
                hubspot.PublicObjectSearchRequest(
                    sorts=["-lastmodifieddate"], properties=["lastmodifieddate"], limit=5
                )
            )
            oldest = search.do_search(
                hubspot.PublicObjectSearchRequest(sorts=["lastmodifieddate"], limit=5)
            )
            try:
                basic.get_by_id("999999")
                missing = None
            except hubspot.ApiException as exc:
                missing = exc
            app[CONTROL].rate_limit = RateLimit(requests=1, window=60.0)
            basic.get_page(limit=1)
            try:
                basic.get_page(limit=1)
                limited = None
            except hubspot.ApiException as exc:
                limited = exc
            return locals()

    seen = await asyncio.to_thread(talk)
    assert len(seen["page"].results) == 10 and seen["page"].results[0].id == "1001"
    assert seen["second"].results[0].id == state.contacts[10]["id"]
    assert seen["page"].results[0].properties["jobtitle"] is not None
    assert seen["one"].id == state.contacts[2]["id"] and seen["one"].properties["email"]
    assert seen["by_email"].id == state.contacts[5]["id"]
    stamps = [c.properties["lastmodifieddate"] for c in seen["newest"].results]
    assert stamps == sorted(stamps, reverse=True) and seen["newest"].total == 30
    oldest = [epoch_ms(c.updated_at.isoformat()) for c in seen["oldest"].results]
    assert oldest == sorted(oldest)
    assert seen["missing"].status == 404
    limited = seen["limited"]
    assert limited.status == 429
    body = json.loads(limited.body)
    assert (body["category"], body["errorType"]) == ("RATE_LIMITS", "RATE_LIMIT")
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    headers = {k.lower(): v for k, v in limited.headers.items()}
    for name in ("daily", "daily-remaining", "interval-milliseconds", "max", "remaining",
                 "secondly", "secondly-remaining"):  # fmt: skip
        assert f"x-hubspot-ratelimit-{name}" in headers, name
    assert headers["x-hubspot-ratelimit-remaining"] == "0"
    assert int(headers["retry-after"]) >= 1


async def test_get_contact_by_id(serve: Any, session: Any) -> None:
    app, base = await serve(people=10, archived_share=0.0)
    state = app[STATE]
    url = f"{base}/crm/v3/objects/contacts"
    one = state.contacts[1]["id"]
    async with session.get(f"{url}/{one}", headers=AUTH) as resp:
        assert resp.status == 200
        body = await resp.json()
        assert resp.headers["X-HubSpot-RateLimit-Daily"]
    assert body["id"] == one
    assert set(body["properties"]) == {"firstname", "lastname", "email"} | ALWAYS
    async with session.get(f"{url}/{one}?properties=jobtitle", headers=AUTH) as resp:
        assert set((await resp.json())["properties"]) == {"jobtitle"} | ALWAYS
    archived = state.archive(1)[0]
    async with session.get(f"{url}/{archived}", headers=AUTH) as resp:
        assert resp.status == 404
        assert (await resp.json())["category"] == "OBJECT_NOT_FOUND"
    async with session.get(f"{url}/{archived}?archived=true", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["archived"] is True
    async with session.get(f"{url}/{one}?idProperty=jobtitle", headers=AUTH) as resp:
        assert resp.status == 400
    async with session.get(f"{url}/{int(one) + 1}", headers=AUTH) as resp:
        assert resp.status == 404
    async with session.get(f"{url}/{one}") as resp:
        assert resp.status == 401


@pytest.mark.parametrize(
    ("sorts", "descending"),
    [
        (["lastmodifieddate"], False), (["-lastmodifieddate"], True),
        ([{"propertyName": "lastmodifieddate"}], False),
        ([{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}], True),
    ],
)  # fmt: skip
async def test_search_sorts_as_strings_or_objects(
    serve: Any, session: Any, sorts: list[Any], descending: bool
) -> None:
    _, base = await serve(people=20)
    body = {"sorts": sorts, "properties": ["lastmodifieddate"], "limit": 20}
    async with session.post(f"{base}{SEARCH_PATH}", json=body, headers=AUTH) as resp:
        assert resp.status == 200
        found = [
            epoch_ms(c["properties"]["lastmodifieddate"]) for c in (await resp.json())["results"]
        ]
    assert found == sorted(found, reverse=descending) and len(found) > 1
    for bad in (["-"], [7], [{"propertyName": "x", "direction": "UP"}]):
        async with session.post(
            f"{base}{SEARCH_PATH}", json={**body, "sorts": bad}, headers=AUTH
        ) as resp:
            assert resp.status == 400
