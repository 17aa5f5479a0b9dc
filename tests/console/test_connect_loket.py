""" "Connect with Loket" from the console, end to end: a real gateway, a browser-like client
following the pages, and Loket's emulator (the emulator kit's authorization server at
`/authorize` and `/token`, refresh tokens rotating) on 127.0.0.1. A Loket connector is
created with the app's client id and secret only; until an admin connects it, its runs
fail saying so without a request to Loket; after, it syncs with the refresh token the
connect stored, and keeps each rotated one sealed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.base import SyncMode
from connectors.emulator_kit import AUTHORIZATION, CONTROL, Authorization
from connectors.loket import CONNECTOR_TYPE
from connectors.loket.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
from connectors.loket.emulator import make_app as loket_emulator
from gateway.accounts.principal import Principal
from gateway.api.app import AccessLogger, make_app
from gateway.ledger.audit import audit_bytes
from gateway.ledger.record import Acting
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import connector_credentials, create_connector
from mappings import bundled_mapping
from tests.console.conftest import Console, World, check_accessible
from tests.console.test_connect import at_vendor, audit_entries, local, moving_on
from tests.contract.harness_loket import sensitive_values

PAYROLL = "/console/t/acme/connectors/payroll"


@dataclass
class Loket:
    app: web.Application
    base: str

    @property
    def auth(self) -> Authorization:
        return self.app[AUTHORIZATION]


@pytest.fixture
async def loket(aiohttp_server: Any) -> Loket:
    app = loket_emulator(people=40, employers=2, leaver_share=0.1)
    server = await aiohttp_server(app, host="127.0.0.1", access_log_class=AccessLogger)
    return Loket(app, str(server.make_url("/v2")))


@pytest.fixture
async def console(aiohttp_client: Any, services: Services) -> Console:
    """The gateway as `sluis serve` runs it, with its own access log."""
    server = TestServer(make_app(services))
    await server.start_server(access_log_class=AccessLogger)
    return Console(await aiohttp_client(server))


def add_payroll(services: Services, world: World, loket: Loket) -> Acting:
    """A Loket connector as the admin API makes it: the app's id and secret, and the
    emulator's authorize and token endpoints in its settings (the registry's
    `emulator_settings`, as the demo gives them)."""
    by = Acting(Principal(world.admin.account_id, "admin", "acme", "test").actor(),
                services.ledger("acme"))  # fmt: skip
    create_connector(
        services.store, services.box, tenant="acme", connector_id="payroll", type_name="loket",
        base_url=loket.base, now=services.clock(), by=by,
        credentials={"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET},
        settings={**CONNECTOR_TYPE.settings_for_emulator(loket.base), "page_size": 10},
        mapping_text=bundled_mapping("loket").read_text(),
    )  # fmt: skip
    grant(services.store, by=by, connector="payroll", purpose="payroll accounts",
          now=services.clock())  # fmt: skip
    return by


def stored(services: Services) -> dict[str, str]:
    return connector_credentials(services.box, services.store.get_connector("acme", "payroll"))


async def begin(console: Console, world: World) -> str:
    """Press "Connect with Loket": the URL of Loket's consent screen the page moves on to."""
    page = await console.get(PAYROLL)
    assert page.status == 200 and "Connect with Loket" in page.html
    resp = await console.client.post(
        PAYROLL + "/connect", data={"csrf": page.csrf, "code": world.admin.code()}
    )
    assert resp.status == 200, await resp.text()
    assert "sluis_connect" in resp.cookies
    return moving_on(await resp.text())


async def test_an_admin_connects_loket_and_it_syncs_keeping_each_rotated_token(
    console: Console, world: World, services: Services, loket: Loket, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    add_payroll(services, world, loket)
    await console.sign_in(world.admin)
    before = await console.get(PAYROLL)
    assert "Not connected yet" in before.html and "Connect with Loket" in before.html
    assert "/console/connect/callback" in before.html  # the redirect URI to register
    check_accessible(before.html)

    target = await begin(console, world)
    root = loket.base.removesuffix("/v2")
    assert target.startswith(root + "/authorize?")
    query = parse_qs(urlsplit(target).query)
    assert query["client_id"] == [EMULATOR_CLIENT_ID] and query["scope"] == ["all"]
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    back = await at_vendor(target)
    code = parse_qs(urlsplit(back).query)["code"][0]
    done = await console.get(local(back))
    assert done.status == 200, done.html
    page = await console.get(moving_on(done.html))
    assert page.status == 200 and "Connected: Loket gave Sluis access" in page.html
    assert "Connect again with Loket" in page.html

    first = stored(services)["refresh_token"]
    assert first in loket.auth.refresh_tokens
    exchange = loket.auth.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["client_secret"] == EMULATOR_CLIENT_SECRET  # in the form body
    verifier = exchange["code_verifier"]
    changed = audit_entries(services)[-1]
    assert changed.action == "connector.changed" and changed.changed == ["credentials"]
    assert changed.actor == world.admin.account_id

    # Two syncs: each trades the newest refresh token, which Loket then refuses again.
    loket.app[CONTROL].log.clear()
    full = await services.engine.sync("acme", "payroll", SyncMode.FULL)
    assert full.status == "succeeded", full.error
    assert full.counts["fetched"] == 40
    kept = stored(services)["refresh_token"]
    assert kept != first and kept in loket.auth.refresh_tokens
    assert first not in loket.auth.refresh_tokens  # used once: gone
    again = await services.engine.sync("acme", "payroll", SyncMode.FULL)
    assert again.status == "succeeded", again.error
    newest = stored(services)["refresh_token"]
    assert newest not in (kept, first) and kept not in loket.auth.refresh_tokens
    record = services.store.get_connector("acme", "payroll")
    assert newest.encode() not in record.sealed_credentials
    refreshes = [f for f in loket.auth.token_requests if f["grant_type"] == "refresh_token"]
    assert [f["refresh_token"] for f in refreshes] == [first, kept]

    secrets = [first, kept, newest, code, verifier, EMULATOR_CLIENT_SECRET,
               *loket.auth.access_tokens]  # fmt: skip
    ledger = b"".join(audit_bytes(e) for e in audit_entries(services)).decode()
    for secret in secrets:
        assert secret not in caplog.text and secret not in ledger
        assert secret not in page.html
    personal = {v for v in sensitive_values(loket.app) if len(v) >= 6}
    assert not [v for v in personal if v in caplog.text]
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            assert not [s for s in secrets if s.encode() in blob], path.name


async def test_a_loket_connector_not_connected_fails_its_sync_without_asking_loket(
    console: Console, world: World, services: Services, loket: Loket
) -> None:
    add_payroll(services, world, loket)
    run = await services.engine.sync("acme", "payroll", SyncMode.FULL)
    assert run.status == "failed" and run.error is not None
    assert "not connected" in run.error and "Connect" in run.error
    await console.sign_in(world.admin)
    page = await console.get(PAYROLL)
    live = await console.post(PAYROLL + "/live-preview", {"csrf": page.csrf})
    assert live.status == 502 and "not connected" in live.html, live.html
    assert loket.app[CONTROL].log == [] and loket.auth.token_requests == []
    assert "refresh_token" not in stored(services)


async def test_a_refused_consent_at_loket_changes_nothing(
    console: Console, world: World, services: Services, loket: Loket
) -> None:
    add_payroll(services, world, loket)
    loket.auth.deny = True
    await console.sign_in(world.admin)
    logged = services.ledger("acme").size()
    back = await at_vendor(await begin(console, world))
    assert "error=access_denied" in back
    denied = await console.get(local(back))
    assert denied.status == 403 and "Access was not granted at the vendor" in denied.html
    assert "refresh_token" not in stored(services)
    assert services.ledger("acme").size() == logged
    assert loket.auth.token_requests == []
