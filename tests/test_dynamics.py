"""Dynamics 365 / Dataverse: the emulator keeps the Web API's contract, and the connector
relies only on that.

Everything runs over real HTTP against the emulator on 127.0.0.1. What the contract suite
cannot know: `$select` of only the mapped columns, `@odata.nextLink` followed verbatim and
only within the environment, the delta links of change tracking (changes, deactivations and
`$deletedEntity` rows; an expired token), Entra ID's token endpoint (expiry, refusals and
the address rules), the service protection limit, Dataverse's error bodies and hostile
answers, and a whole gateway sync that keeps no sensitive value.

Marked "invented" below: behaviour the emulator had to choose where Microsoft documents
nothing public (see `connectors/dynamics/emulator.py`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.dynamics.client import WATERMARK_PREFIX, DynamicsConnector, select_list
from connectors.dynamics.emulator import (
    API,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_TENANT,
    ENVIRONMENT,
    make_app,
)
from connectors.dynamics.synthetic import SENSITIVE_FIELDS
from connectors.emulator_kit import CONTROL, Fault
from connectors.netguard import PublicOnlyConnector
from gateway.minimise.mapping import load_mapping, parse_mapping
from gateway.minimise.projector import UNNAMED_FIELD, Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.contract.harness_dynamics import HARNESS
from tests.contract.suite import leaked, sync
from tests.principals import system

KEY = b"dynamics tests: 32-byte tenant k"
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)
CREDENTIALS = {
    "tenant_id": EMULATOR_TENANT,
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
}
SELECT = "contactid,emailaddress1,firstname,jobtitle,lastname,statecode"
CONTACTS = f"{API}/contacts"
TOKEN = f"/{EMULATOR_TENANT}/oauth2/v2.0/token"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def serve(aiohttp_server: Any) -> Callable[..., Any]:
    """Start an emulator; returns (app, base URL)."""

    async def start(**options: Any) -> tuple[web.Application, str]:
        options.setdefault("people", 250)
        options.setdefault("inactive_share", 0.0)
        app = make_app(**options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return app, str(server.make_url("")).rstrip("/")

    return start


def connector(
    base: str,
    session: aiohttp.ClientSession,
    *,
    mapping: str | None = None,
    credentials: dict[str, str] | None = None,
    retry: RetryPolicy = FAST,
    **settings: Any,
) -> DynamicsConnector:
    settings.setdefault("authority", base)
    config = ConnectorConfig(
        "dynamics", base, credentials=credentials or CREDENTIALS, settings=settings
    )
    text = mapping or bundled_mapping("dynamics").read_text()
    return DynamicsConnector(config, Projector(parse_mapping(text), KEY), session, retry=retry)


async def bearer(session: aiohttp.ClientSession, base: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": EMULATOR_CLIENT_ID,
        "client_secret": EMULATOR_CLIENT_SECRET,
        "scope": f"{base}/.default",
    }
    async with session.post(f"{base}{TOKEN}", data=form) as response:
        body = await response.json()
    assert response.status == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == body["ext_expires_in"]
    return str(body["access_token"])


def api_requests(app: web.Application) -> list[Any]:
    return app[CONTROL].requests_to(API)


# --------------------------------------------------------------------------- the emulator


async def test_the_emulator_answers_as_dataverse_does(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=5)
    async with session.get(f"{base}{CONTACTS}") as response:
        assert response.status == 401 and await response.read() == b""
        assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    headers = {
        "Authorization": f"Bearer {await bearer(session, base)}",
        "Prefer": "odata.maxpagesize=2, odata.track-changes",
    }
    seen: list[str] = []
    url = f"{base}{CONTACTS}?$select=firstname,emailaddress1"
    while True:
        async with session.get(url, headers=headers) as response:
            body = await response.json()
        assert response.headers["OData-Version"] == "4.0"
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=2, odata.track-changes"
        assert int(response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) > 0
        for row in body["value"]:
            assert set(row) == {"@odata.etag", "contactid", "firstname", "emailaddress1"}
            seen.append(row["contactid"])
        if "@odata.nextLink" not in body:
            break
        url = body["@odata.nextLink"]
        token = urllib.parse.parse_qs(URL(url).raw_query_string)["$skiptoken"][0]
        assert token.startswith('<cookie pagenumber="') and 'istracking="True"' in token
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen)
    delta = body["@odata.deltaLink"]
    assert "$deltatoken=" in delta and delta.startswith(f"{base}{CONTACTS}?")
    # Dataverse refuses $skip, and names an unknown column in a 400 with its error body.
    for query, status in (("$skip=2", 400), ("$select=firstname,shoesize", 400)):
        async with session.get(f"{base}{CONTACTS}?{query}", headers=headers) as response:
            error = (await response.json())["error"]
            assert response.status == status and error["code"].startswith("0x")
    # A tracked query may not filter or order (invented: the code).
    async with session.get(f"{base}{CONTACTS}?$orderby=lastname", headers=headers) as response:
        assert response.status == 400
    # Entra ID's refusals: the documented `error` codes, AADSTS numbers in the text.
    refusals = {
        "wrong": ("invalid_client", 401),
        "scope": ("invalid_scope", 400),
    }
    for case, (code, status) in refusals.items():
        form = {
            "grant_type": "client_credentials",
            "client_id": EMULATOR_CLIENT_ID,
            "client_secret": "nope" if case == "wrong" else EMULATOR_CLIENT_SECRET,
            "scope": "https://elsewhere.crm4.dynamics.com/.default"
            if case == "scope"
            else f"{base}/.default",
        }
        async with session.post(f"{base}{TOKEN}", data=form) as response:
            body = await response.json()
        assert response.status == status and body["error"] == code
        assert body["error_description"].startswith("AADSTS")


async def test_the_service_protection_limit_is_a_sliding_window_with_retry_after(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=3, requests_per_window=3, window_seconds=60)
    headers = {"Authorization": f"Bearer {await bearer(session, base)}"}
    statuses = []
    for _ in range(4):
        async with session.get(f"{base}{CONTACTS}", headers=headers) as response:
            statuses.append(response.status)
            body = await response.json()
    assert statuses == [200, 200, 200, 429]
    assert body["error"]["code"] == "0x80072322"
    assert 0 < int(response.headers["Retry-After"]) <= 60


# --------------------------------------------------------------------------- reading


async def test_the_select_names_only_mapped_columns_and_next_links_are_followed_verbatim(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250)
    client = connector(base, session, page_size=100)
    links: list[str] = []
    cursor = None
    while True:
        page = await client.fetch_page(PageRequest(SyncMode.FULL, cursor))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        links.append(cursor.split("|", 3)[3])
    logged = api_requests(app)
    assert len(logged) == 3 and len(links) == 2
    for request in logged:
        assert urllib.parse.parse_qs(request.query)["$select"] == [SELECT]
    for link, request in zip(links, logged[1:], strict=True):
        url = URL(link, encoded=True)
        assert (request.path, request.query) == (url.path, url.query_string)
        assert "$skiptoken" in url.query
    assert page.watermark is not None and page.watermark.startswith(WATERMARK_PREFIX)
    # Everything but the mapped columns was dropped, and counted by name only.
    # (`@odata.etag` is no name fit for a report: it is counted as an unnamed field.)
    assert set(page.dropped) == {UNNAMED_FIELD}


async def test_a_next_link_is_sent_byte_for_byte(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    """A stand-in whose paging cookie is spelled as Dataverse spells its own (mixed-case
    escapes, a double-escaped inner cookie, bare `=` and `/`): the second request's target
    is exactly the link's path and query, not a re-escaped copy."""
    cookie = (
        "%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221"
        "%2522%253e%253ccontactid%2520last%253d%2522%257bD5026A4D%257d%2522%2520%252f%253e"
        "%253c%252fcookie%253e%22%20istracking=%22False%22%20/%3E"
    )
    link = f"{CONTACTS}?$select={SELECT}&$skiptoken={cookie}"
    seen: list[str] = []

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "token_type": "Bearer"})

    async def page(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        row = {"contactid": f"id-{len(seen)}", "emailaddress1": "a@example.nl", "statecode": 0}
        body: dict[str, Any] = {"value": [row]}
        if len(seen) == 1:
            body["@odata.nextLink"] = f"{request.url.origin()}{link}"
        return web.json_response(body)

    app = web.Application()
    app.router.add_post(TOKEN, token)
    app.router.add_get(CONTACTS, page)
    server = await aiohttp_server(app, host="127.0.0.1")
    run = await sync(connector(str(server.make_url("")).rstrip("/"), session))
    assert run.fetched == 2 and seen[1] == link


def test_a_mapping_cannot_widen_or_bend_the_select() -> None:
    assert select_list(frozenset({"firstname", "@removed", "_parentcustomerid_value"})) == [
        "_parentcustomerid_value",
        "contactid",
        "firstname",
    ]
    for name in ("*", "firstname,birthdate", "$filter", "FirstName", "a b", "x)&$expand=y"):
        with pytest.raises(ConnectorError) as caught:
            select_list(frozenset({name}))
        assert caught.value.kind == "config"


async def test_incremental_runs_follow_the_delta_link_with_changes_and_deletions(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=300)
    env = app[ENVIRONMENT]
    client = connector(base, session, page_size=100)
    full = await sync(client)
    assert full.fetched == 300 and full.watermark is not None
    before = full.by_id()

    touched = env.touch(3)
    retired = env.retire(2)
    deleted = env.delete(2)
    calls = len(api_requests(app))
    changes = await sync(client, SyncMode.INCREMENTAL, since=full.watermark)
    assert changes.fetched == 7 and changes.rejected == []
    assert len(api_requests(app)) == calls + 1
    delta = api_requests(app)[-1]
    assert "$deltatoken" in urllib.parse.parse_qs(delta.query)
    got = changes.by_id()
    ids = {c: Projector(load_mapping(bundled_mapping("dynamics")), KEY).subject_id(c) for c in
           touched + retired + deleted}  # fmt: skip
    for contact in touched:
        subject = got[ids[contact]]
        assert subject["active"] and subject["job_title"] != before[ids[contact]]["job_title"]
    for contact in retired:
        assert got[ids[contact]]["active"] is False
    for contact in deleted:
        # Reported by its key alone: a leaver with nothing else.
        assert got[ids[contact]] == {
            "subject_id": ids[contact],
            "first_name": None,
            "last_name": None,
            "email": None,
            "job_title": None,
            "active": False,
        }
    assert changes.watermark not in (None, full.watermark)
    quiet = await sync(client, SyncMode.INCREMENTAL, since=changes.watermark)
    assert quiet.fetched == 0 and quiet.watermark is not None
    assert client.restarts == 0


async def test_a_delta_pages_changes_first_then_deletions(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Dataverse answers new or updated rows first, then the deleted ones; with two rows a
    page the delta spans three pages across that boundary and loses nothing."""
    app, base = await serve(people=40)
    env = app[ENVIRONMENT]
    client = connector(base, session, page_size=2)
    full = await sync(client)
    env.delete(2)
    env.touch(3)
    changes = await sync(client, SyncMode.INCREMENTAL, since=full.watermark)
    assert changes.pages == 3 and changes.fetched == 5
    assert [s["active"] for s in changes.subjects] == [True, True, True, False, False]
    assert [s["email"] is None for s in changes.subjects] == [False] * 3 + [True] * 2


async def test_an_expired_delta_token_reads_everyone_again(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Invented: the 410 Gone (documented for Business Central, not for Dataverse)."""
    app, base = await serve(people=250)
    client = connector(base, session, page_size=100)
    full = await sync(client)
    app[ENVIRONMENT].expire_delta_tokens()
    again = await sync(client, SyncMode.INCREMENTAL, since=full.watermark)
    assert again.fetched == 250 and client.restarts == 1
    assert [r.status for r in api_requests(app)].count(410) == 1
    assert again.watermark is not None and again.watermark != full.watermark
    quiet = await sync(client, SyncMode.INCREMENTAL, since=again.watermark)
    assert quiet.fetched == 0


async def test_a_delta_link_for_other_columns_or_not_ours_is_not_followed(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=50)
    client = connector(base, session)
    full = await sync(client)
    assert full.watermark is not None
    other = full.watermark.replace("statecode", "statecode,birthdate")
    for since in (other, "2026-01-01T00:00:00Z", "delta:https://evil.example/api/data/v9.2/x"):
        run = await sync(client, SyncMode.INCREMENTAL, since=since)
        assert run.fetched == 50
        last = api_requests(app)[-1]
        assert "$deltatoken" not in urllib.parse.parse_qs(last.query)
        assert "birthdate" not in last.query
    assert client.restarts == 3


async def test_without_change_tracking_every_run_reads_everyone(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=120)
    client = connector(base, session, page_size=50, change_tracking=False)
    full = await sync(client)
    assert full.fetched == 120 and full.watermark is None
    again = await sync(client, SyncMode.INCREMENTAL, since="delta:/api/data/v9.2/contacts?x=1")
    assert again.fetched == 120 and client.restarts == 0
    for request in api_requests(app):
        assert "$deltatoken" not in urllib.parse.parse_qs(request.query)
    with pytest.raises(ConnectorError) as caught:
        connector(base, session, change_tracking="yes")
    assert caught.value.kind == "config"


async def test_a_next_link_elsewhere_or_repeated_stops_the_run(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    """A stand-in for a Dataverse whose nextLink points at another host, another path, or
    at the page just read: the bearer token must not follow it, and paging must end."""
    trap_hits: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        trap_hits.append(request.headers.get("Authorization", ""))
        return web.json_response({"value": []})

    trap_app = web.Application()
    trap_app.router.add_route("*", "/{tail:.*}", trap)
    trap_server = await aiohttp_server(trap_app, host="127.0.0.1")
    elsewhere = str(trap_server.make_url(f"{CONTACTS}?$skiptoken=x"))

    for link in (elsewhere, "{base}/api/data/v9.2/systemusers?$skiptoken=1", "{base}{here}"):

        async def token(request: web.Request) -> web.Response:
            return web.json_response({"access_token": "t", "token_type": "Bearer"})

        async def page(request: web.Request, link: str = link) -> web.Response:
            here = request.rel_url.raw_path_qs
            base = str(request.url.origin())
            row = {"contactid": "1", "emailaddress1": "a@example.nl", "statecode": 0}
            next_link = link.format(base=base, here=here)
            return web.json_response({"value": [row], "@odata.nextLink": next_link})

        app = web.Application()
        app.router.add_post(TOKEN, token)
        app.router.add_get(CONTACTS, page)
        server = await aiohttp_server(app, host="127.0.0.1")
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(str(server.make_url("")).rstrip("/"), session))
        assert caught.value.kind == "refused"
    assert trap_hits == []


# --------------------------------------------------------------------------- tokens


async def test_a_token_that_ran_out_is_replaced_once(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250)
    env = app[ENVIRONMENT]
    run = await sync(
        connector(base, session, page_size=100),
        before_page=lambda n: env.expire_tokens() if n == 1 else None,
    )
    assert run.fetched == 250 and env.issued == 2
    assert [r.status for r in api_requests(app)] == [200, 401, 200, 200]


async def test_a_token_is_renewed_before_it_expires(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    # A token that lives less than the connector's one-minute margin is fetched anew for
    # every request, and none is ever refused.
    app, base = await serve(people=250, token_ttl=30)
    run = await sync(connector(base, session, page_size=100))
    assert run.fetched == 250 and app[ENVIRONMENT].issued == 3
    assert {r.status for r in app[CONTROL].log} == {200}


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"client_secret": "dyn~wrong"}, "invalid_client"),
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, "unauthorized_client"),
        ({"tenant_id": "other.onmicrosoft.com"}, "invalid_request"),
    ],
)
async def test_token_refusals_name_the_oauth_error_only(
    serve: Callable[..., Any],
    session: aiohttp.ClientSession,
    credentials: dict[str, str],
    code: str,
) -> None:
    app, base = await serve(people=3)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, credentials={**CREDENTIALS, **credentials}))
    error = str(caught.value)
    assert caught.value.kind == "auth" and f"[error {code}]" in error
    assert "AADSTS" not in error and "Trace" not in error and "0000-0000" not in error
    assert len(app[CONTROL].log) == 1


async def test_an_app_that_is_no_application_user_is_told_so(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Invented: the 403's error code."""
    _, base = await serve(people=3, application_user=False)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session))
    assert caught.value.kind == "auth" and "application user" in str(caught.value)
    assert "0x80072560" in str(caught.value) and "member" not in str(caught.value)


async def test_the_token_endpoint_is_held_to_the_address_rules(
    serve: Callable[..., Any],
) -> None:
    app, base = await serve(people=3)
    # Through the gateway's public-only session, the token request to the loopback
    # emulator never leaves: no byte reaches it.
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(base, guarded))
        assert caught.value.kind == "config" and "allow_private_sources" in str(caught.value)
        assert app[CONTROL].log == []
        # An authority on a private address is refused when the connector is built, even
        # with a public environment URL (which the gateway's own check saw).
        for authority in ("http://169.254.169.254", "https://127.0.0.1:8443", "https://10.0.0.8"):
            with pytest.raises(ConnectorError) as caught:
                connector("https://acme.crm4.dynamics.com", guarded, authority=authority)
            assert caught.value.kind == "config" and "authority" in str(caught.value)
        connector("https://acme.crm4.dynamics.com", guarded, authority="https://login.example.com")
    async with aiohttp.ClientSession() as plain:
        for authority in (
            "http://login.example.com",
            "ftp://x",
            "https://u:p@x.example",
            "https://x.example/y",
        ):
            with pytest.raises(ConnectorError) as caught:
                connector("https://acme.crm4.dynamics.com", plain, authority=authority)
            assert caught.value.kind == "config"


# --------------------------------------------------------------------------- limits


async def test_pacing_keeps_under_the_service_protection_limit(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """A limit of 5 requests in any 1.5 seconds: the connector, told so, spends 90% of it
    (4 a window) and is never answered 429 (the emulator counts a true sliding window)."""
    app, base = await serve(people=500, requests_per_window=5, window_seconds=1.5)
    client = connector(base, session, page_size=50, requests_per_window=5, window_seconds=1.5)
    run = await sync(client)
    assert run.fetched == 500
    log = api_requests(app)
    assert len(log) == 10 and {r.status for r in log} == {200}
    assert client.remaining is not None and client.stats.rate_limited == 0


async def test_a_429_waits_for_retry_after(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    # Another integration used the application user's budget: the connector, unaware,
    # meets the limit once and waits as long as Dataverse says.
    app, base = await serve(people=300, requests_per_window=2, window_seconds=1.0)
    client = connector(base, session, page_size=100)
    run = await sync(client)
    assert run.fetched == 300 and client.stats.rate_limited >= 1
    log = api_requests(app)
    first = next(i for i, r in enumerate(log) if r.status == 429)
    assert log[first + 1].at - log[first].at >= 1.0


# --------------------------------------------------------------------------- hostile


async def test_malformed_rows_are_quarantined_with_a_reason(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250)
    rows = list(app[ENVIRONMENT].rows.values())
    rows[3]["emailaddress1"] = "geen-email"
    rows[7]["firstname"] = {"nested": "object"}
    rows[9]["statecode"] = [1]
    run = await sync(connector(base, session))
    assert run.fetched == 250 and len(run.subjects) == 247
    assert sorted(run.rejected) == [
        "email: not a valid email address",
        "first_name: source firstname is an object, expected text",
        "leaver field statecode: is a list, expected text",
    ]


async def test_dataverse_error_bodies_are_reduced_to_their_code(
    serve: Callable[..., Any], session: aiohttp.ClientSession, aiohttp_server: Any
) -> None:
    # An unknown column: Dataverse's 400 quotes it; the connector names only the code.
    _, base = await serve(people=3)
    mapping = bundled_mapping("dynamics").read_text().replace('"jobtitle"', '"new_shoe"')
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, mapping=mapping))
    assert caught.value.kind == "config" and "0x80060888" in str(caught.value)
    assert "new_shoe" not in str(caught.value)

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "token_type": "Bearer"})

    async def broken(request: web.Request) -> web.Response:
        error = {"code": "0x80040216", "message": "Lotte de Graaf, BSN 123456782, failed"}
        return web.json_response({"error": error}, status=500)

    stand_in = web.Application()
    stand_in.router.add_post(TOKEN, token)
    stand_in.router.add_get(CONTACTS, broken)
    server = await aiohttp_server(stand_in, host="127.0.0.1")
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(str(server.make_url("")).rstrip("/"), session))
    error = str(caught.value)
    assert caught.value.kind == "unavailable" and "0x80040216" in error
    assert "Lotte" not in error and "123456782" not in error


@pytest.mark.parametrize("size", [200_000, None])
async def test_a_huge_or_endless_page_is_cut_off(
    serve: Callable[..., Any], session: aiohttp.ClientSession, size: int | None
) -> None:
    app, base = await serve(people=3)
    client = connector(base, session, max_response_bytes=64 * 1024)
    await client.tokens.bearer()
    app[CONTROL].inject(Fault("huge", size=size, path=CONTACTS))
    with pytest.raises(ConnectorError) as caught:
        await sync(client)
    assert caught.value.kind == "too_large"
    # Loopback socket buffers hold some megabytes past the reader; an endless body ends.
    assert app[CONTROL].streamed_bytes < 16 * 1024 * 1024
    assert len(api_requests(app)) == 1, "an oversized page must not be fetched again"


async def test_an_answer_without_a_value_list_is_retried_then_malformed(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    calls: list[str] = []

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "token_type": "Bearer"})

    async def odd(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"@odata.context": "x", "value": {"not": "a list"}})

    app = web.Application()
    app.router.add_post(TOKEN, token)
    app.router.add_get(CONTACTS, odd)
    server = await aiohttp_server(app, host="127.0.0.1")
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(str(server.make_url("")).rstrip("/"), session))
    assert caught.value.kind == "malformed" and len(calls) == FAST.attempts


async def test_nothing_sensitive_in_pages_errors_or_logs(
    caplog: pytest.LogCaptureFixture, serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=300)
    sensitive = HARNESS.sensitive_values(app)
    assert {"governmentid", "spousesname", "emailaddress2"} <= set(SENSITIVE_FIELDS)
    client = connector(base, session, page_size=100)
    full = await sync(client)
    app[ENVIRONMENT].touch(3)
    app[ENVIRONMENT].delete(2)
    changes = await sync(client, SyncMode.INCREMENTAL, since=full.watermark)
    assert leaked(sensitive, *full.trace, *changes.trace, caplog.text) == []
    # Not one sensitive column was even asked for.
    for request in api_requests(app):
        assert not set(urllib.parse.parse_qs(request.query)["$select"][0].split(",")) & set(
            SENSITIVE_FIELDS
        )


async def test_a_gateway_sync_stores_and_logs_no_sensitive_value(
    serve: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole gateway (engine, store, ledger) on SQLite: after a full sync and an
    incremental one with changes, deactivations and deletions, not one sensitive value is
    in the data directory's files (WAL included) or the logs."""
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=400, page_cap=150)
    env = app[ENVIRONMENT]
    sensitive = HARNESS.sensitive_values(app)
    data = tmp_path / "data"
    services = Services.open(
        Settings(data_dir=data, admin_token="s" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    try:
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="crm",
            type_name="dynamics", base_url=base, credentials=CREDENTIALS, now=now,
            settings={"authority": base},
            mapping_text=bundled_mapping("dynamics").read_text(),
        )  # fmt: skip
        grant(services.store, by=by, connector="crm", purpose="p", now=now)
        full = await services.engine.sync("acme", "crm", SyncMode.FULL)
        env.touch(3)
        env.retire(2)
        env.delete(2)
        changes = await services.engine.sync("acme", "crm", SyncMode.INCREMENTAL)
        record = services.store.get_connector("acme", "crm")
    finally:
        services.close()
    assert full.status == changes.status == "succeeded", (full.error, changes.error)
    assert full.counts["upserted"] == 400 and changes.counts["fetched"] == 7
    assert changes.counts["deleted"] == 4 and changes.counts["upserted"] == 3
    assert record.watermark is not None and record.watermark.startswith(WATERMARK_PREFIX)
    assert not [v for v in sensitive if v in caplog.text]
    for path in sorted(data.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            assert not [v for v in sensitive if v.encode() in blob], path.name


# --------------------------------------------------------------------------- fidelity


def _tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A throwaway certificate for 127.0.0.1, and the file a client trusts it by."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


async def test_microsofts_dataverse_client_reads_the_emulator(
    aiohttp_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Microsoft's own Python SDK (PowerPlatform-Dataverse-Client, with azure-identity's
    ClientSecretCredential, i.e. MSAL, for the token) reads the emulator as it reads an
    environment: it discovers the tenant's OpenID configuration, asks the token endpoint
    for `<environment>/.default`, resolves `contact` through EntityDefinitions and pages
    along `@odata.nextLink`. It insists on https, so the emulator serves TLS here."""
    from azure.identity import ClientSecretCredential
    from PowerPlatform.Dataverse.client import DataverseClient

    context, cert = _tls(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    app = make_app(people=120, inactive_share=0.0, page_cap=50)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=context)
    base = f"https://127.0.0.1:{server.port}"

    def read() -> list[dict[str, Any]]:
        credential = ClientSecretCredential(
            EMULATOR_TENANT, EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET,
            authority=base, disable_instance_discovery=True,
        )  # fmt: skip
        with DataverseClient(base, credential) as client:
            result = client.records.list(
                "contact", select=["firstname", "lastname", "emailaddress1"], page_size=50
            )
            return [dict(record) for record in result]

    rows = await asyncio.to_thread(read)
    assert len(rows) == 120
    assert len({r["contactid"] for r in rows}) == 120
    env = app[ENVIRONMENT]
    assert {r["emailaddress1"] for r in rows} == {r["emailaddress1"] for r in env.rows.values()}
    assert not set().union(*(r.keys() for r in rows)) & set(SENSITIVE_FIELDS)
    pages = [r for r in api_requests(app) if r.path == CONTACTS]
    assert len(pages) == 3 and {r.status for r in app[CONTROL].log} == {200}
    assert env.issued == 1
