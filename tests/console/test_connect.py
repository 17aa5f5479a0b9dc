""" "Connect with <vendor>" from the console, end to end: a real gateway, a browser-like client
following the pages, and HubSpot's emulator (a public app: the emulator kit's authorization
server) on 127.0.0.1. What is stored, what the ledger says, and what never shows anywhere."""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from connectors.emulator_kit import AUTHORIZATION, Authorization
from connectors.hubspot import CONNECTOR_TYPE
from connectors.hubspot.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, EMULATOR_TOKEN
from connectors.hubspot.emulator import make_app as hubspot_emulator
from gateway.accounts.principal import Principal
from gateway.api.app import AccessLogger, make_app
from gateway.ledger.audit import AuditEntry, audit_bytes
from gateway.ledger.record import Acting
from gateway.runtime.services import Services
from gateway.tenancy import connector_credentials, create_connector
from mappings import bundled_mapping
from tests.console.conftest import Clock, Console, World, check_accessible

CRM = "/console/t/acme/connectors/crm"
REFRESH = re.compile(r'http-equiv="refresh" content="0;url=([^"]+)"')


@dataclass
class Vendor:
    base: str
    auth: Authorization


@pytest.fixture
async def vendor(aiohttp_server: Any) -> Vendor:
    app = hubspot_emulator(people=30)
    server = await aiohttp_server(app, host="127.0.0.1", access_log_class=AccessLogger)
    return Vendor(str(server.make_url("")).rstrip("/"), app[AUTHORIZATION])


@pytest.fixture
async def console(aiohttp_client: Any, services: Services) -> Console:
    """The gateway as `sluis serve` runs it: with its own access log, which names routes
    and never a query (where the vendor's code and state come back)."""
    server = TestServer(make_app(services))
    await server.start_server(access_log_class=AccessLogger)
    return Console(await aiohttp_client(server))


def add_crm(services: Services, world: World, vendor: Vendor, **credentials: str) -> None:
    """A HubSpot public-app connector, made as the admin API makes it (the emulator's
    consent screen named in its settings, which the console's form does not edit)."""
    by = Acting(Principal(world.admin.account_id, "admin", "acme", "test").actor(),
                services.ledger("acme"))  # fmt: skip
    create_connector(
        services.store, services.box, tenant="acme", connector_id="crm", type_name="hubspot",
        base_url=vendor.base, now=services.clock(), by=by,
        credentials=credentials or {
            "client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET,
        },
        settings=CONNECTOR_TYPE.settings_for_emulator(vendor.base),
        mapping_text=bundled_mapping("hubspot").read_text(),
    )  # fmt: skip


def moving_on(page_html: str) -> str:
    found = REFRESH.search(page_html)
    assert found, page_html
    return html.unescape(found.group(1))


async def begin(console: Console, world: World) -> tuple[str, str]:
    """Press "Connect with HubSpot": the vendor URL the page moves on to, and the cookie."""
    page = await console.get(CRM)
    assert page.status == 200 and "Connect with HubSpot" in page.html
    resp = await console.client.post(
        CRM + "/connect", data={"csrf": page.csrf, "code": world.admin.code()}
    )
    assert resp.status == 200, await resp.text()
    cookie = resp.cookies["sluis_connect"]
    assert cookie["samesite"] == "Lax" and cookie["httponly"]
    assert cookie["path"] == "/console/connect/callback"
    return moving_on(await resp.text()), cookie.value


async def at_vendor(url: str) -> str:
    """What the admin's browser does at the vendor (a browser of its own: no console
    cookies go there); the URL the vendor sends it back to."""
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(url, allow_redirects=False) as resp,
    ):
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def stored(services: Services) -> dict[str, str]:
    return connector_credentials(services.box, services.store.get_connector("acme", "crm"))


def audit_entries(services: Services) -> list[AuditEntry]:
    return [
        r.entry
        for r in services.ledger("acme").entries(limit=1000)
        if isinstance(r.entry, AuditEntry)
    ]


async def test_an_admin_connects_and_the_source_syncs_with_what_was_stored(
    console: Console, world: World, services: Services, vendor: Vendor,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    add_crm(services, world, vendor)
    await console.sign_in(world.admin)
    before = await console.get(CRM)
    assert "Not connected yet" in before.html
    assert "/console/connect/callback" in before.html  # the redirect URI to register
    check_accessible(before.html)

    target, _ = await begin(console, world)
    query = parse_qs(urlsplit(target).query)
    assert target.startswith(vendor.base + "/oauth/authorize?")
    assert query["client_id"] == [EMULATOR_CLIENT_ID]
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["crm.objects.contacts.read"]
    assert query["redirect_uri"][0].endswith("/console/connect/callback")
    back = await at_vendor(target)
    code = parse_qs(urlsplit(back).query)["code"][0]
    done = await console.get(local(back))
    assert done.status == 200, done.html
    page = await console.get(moving_on(done.html))
    assert page.status == 200 and "Connected: the source" in page.html
    assert "Connected: HubSpot gave Sluis access" in page.html
    assert "Connect again with HubSpot" in page.html

    refresh = stored(services)["refresh_token"]
    assert refresh in vendor.auth.refresh_tokens
    assert stored(services)["client_id"] == EMULATOR_CLIENT_ID
    changed = audit_entries(services)[-1]
    assert changed.action == "connector.changed" and changed.changed == ["credentials"]
    assert changed.actor == world.admin.account_id and changed.step_up_at is not None
    exchange = vendor.auth.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    verifier = exchange["code_verifier"]

    # The source is read with the stored refresh token (the live preview: a sync's client).
    live = await console.post(CRM + "/live-preview", {"csrf": page.csrf})
    assert live.status == 200 and 'id="live-people"' in live.html, live.html
    assert vendor.auth.token_requests[-1]["grant_type"] == "refresh_token"
    access = next(iter(vendor.auth.access_tokens))

    secrets = [refresh, code, verifier, access, EMULATOR_CLIENT_SECRET]
    ledger = b"".join(audit_bytes(e) for e in audit_entries(services)).decode()
    metrics = generate_latest(services.metrics.registry).decode()
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in ledger
        assert secret not in metrics
        assert secret not in page.html and secret not in live.html


async def test_a_callback_without_this_browsers_state_changes_nothing(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor)
    await console.sign_in(world.admin)
    target, _ = await begin(console, world)
    back = await at_vendor(target)
    state = parse_qs(urlsplit(back).query)["state"][0]
    code = parse_qs(urlsplit(back).query)["code"][0]
    logged = services.ledger("acme").size()

    wrong = await console.get(f"/console/connect/callback?code={code}&state=forged-{state}")
    assert wrong.status == 400 and "did not start in this browser" in wrong.html
    missing = await console.get(f"/console/connect/callback?code={code}")
    assert missing.status == 400 and "did not start in this browser" in missing.html
    # Another browser: it began a connect of its own, then follows this browser's link.
    console.client.session.cookie_jar.clear()
    await console.sign_in(world.admin)
    await begin(console, world)
    other = await console.get(local(back))
    assert other.status == 400 and "did not start in this browser" in other.html
    # A browser that began nothing at all (the link sent to someone).
    console.client.session.cookie_jar.clear()
    victim = await console.get(local(back))
    assert victim.status == 400 and "did not start in this browser" in victim.html

    assert "refresh_token" not in stored(services)
    assert services.ledger("acme").size() == logged
    assert [r["grant_type"] for r in vendor.auth.token_requests] == []  # no code was sent


async def test_an_expired_connect_changes_nothing(
    console: Console, world: World, services: Services, vendor: Vendor, clock: Clock
) -> None:
    add_crm(services, world, vendor)
    await console.sign_in(world.admin)
    back = await at_vendor((await begin(console, world))[0])
    clock.offset += timedelta(minutes=10, seconds=1)
    late = await console.get(local(back))
    assert late.status == 400 and "took too long and expired" in late.html
    assert "refresh_token" not in stored(services)
    assert vendor.auth.token_requests == []


async def test_a_replayed_callback_or_code_changes_nothing(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor)
    await console.sign_in(world.admin)
    target, kept = await begin(console, world)
    back = await at_vendor(target)
    assert (await console.get(local(back))).status == 200
    first = stored(services)["refresh_token"]
    logged = services.ledger("acme").size()

    # The same callback again, with the state cookie put back (the browser's back button).
    console.client.session.cookie_jar.update_cookies({"sluis_connect": kept})
    again = await console.get(local(back))
    assert again.status == 409 and "finished already" in again.html
    assert len(vendor.auth.token_requests) == 1  # refused before the code went anywhere
    # The used code under a fresh connect's state: the vendor refuses it.
    fresh_target, _ = await begin(console, world)
    state = parse_qs(urlsplit(fresh_target).query)["state"][0]
    code = parse_qs(urlsplit(back).query)["code"][0]
    replayed = await console.get(f"/console/connect/callback?code={code}&state={state}")
    assert replayed.status == 400 and "did not accept the connection" in replayed.html
    assert "[error invalid_grant]" in replayed.html and code not in replayed.html
    assert stored(services)["refresh_token"] == first
    assert services.ledger("acme").size() == logged


async def test_a_denied_consent_is_a_clear_page_and_changes_nothing(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor)
    vendor.auth.deny = True
    await console.sign_in(world.admin)
    logged = services.ledger("acme").size()
    back = await at_vendor((await begin(console, world))[0])
    assert "error=access_denied" in back
    denied = await console.get(local(back))
    assert denied.status == 403 and "Access was not granted at the vendor" in denied.html
    assert "refresh_token" not in stored(services)
    assert services.ledger("acme").size() == logged


async def test_only_an_admin_connects(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor)
    for person in (world.viewer, world.auditor):
        await console.sign_in(person)
        page = await console.get(CRM)
        assert page.status == 200 and 'id="connect-form"' not in page.html
        assert "Not connected yet" in page.html
        refused = await console.client.post(
            CRM + "/connect", data={"csrf": page.csrf, "code": person.code()}
        )
        assert refused.status == 403 and "sluis_connect" not in refused.cookies
    # An admin who began, but whose account was disabled before the vendor sent them back.
    await console.sign_in(world.admin)
    back = await at_vendor((await begin(console, world))[0])
    operator = Principal(world.operator.account_id, "operator", None, "test")
    services.accounts.disable(operator, world.admin.account_id)
    gone = await console.get(local(back))
    assert gone.status == 403
    assert "refresh_token" not in stored(services)
    assert vendor.auth.token_requests == []


async def test_connect_needs_a_fresh_code_and_a_client_id(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor)
    await console.sign_in(world.admin)
    page = await console.get(CRM)
    no_code = await console.client.post(CRM + "/connect", data={"csrf": page.csrf})
    assert no_code.status == 422 and "sluis_connect" not in no_code.cookies
    bad_csrf = await console.client.post(
        CRM + "/connect", data={"csrf": "nope", "code": world.admin.code()}
    )
    assert bad_csrf.status == 403


async def test_a_private_app_connector_shows_no_connect(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor, token=EMULATOR_TOKEN)
    await console.sign_in(world.admin)
    page = await console.get(CRM)
    assert page.status == 200 and 'id="connect-form"' not in page.html
    refused = await console.client.post(
        CRM + "/connect", data={"csrf": page.csrf, "code": world.admin.code()}
    )
    assert refused.status == 422 and "client ID and secret" in await refused.text()


async def test_a_connector_not_yet_connected_fails_its_sync_saying_so(
    console: Console, world: World, services: Services, vendor: Vendor
) -> None:
    add_crm(services, world, vendor)
    await console.sign_in(world.admin)
    page = await console.get(CRM)
    live = await console.post(CRM + "/live-preview", {"csrf": page.csrf})
    assert live.status == 502 and "not connected" in live.html, live.html
    assert vendor.auth.token_requests == []
