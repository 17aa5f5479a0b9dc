""" "Connect with Nmbrs" from the console, end to end: a real gateway, a browser-like client
following the pages, and Nmbrs's emulator (its identity server: the emulator kit's, with
one-time refresh tokens) on 127.0.0.1. The refresh token the connect stores is the one the
next sync uses, and the one that sync is handed in its place is stored before it is used."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.base import SyncMode
from connectors.emulator_kit import AUTHORIZATION
from connectors.nmbrs import CONNECTOR_TYPE
from connectors.nmbrs.client import OAUTH_SCOPES
from connectors.nmbrs.emulator import (
    ACCOUNT,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_SUBSCRIPTION_KEY,
)
from connectors.nmbrs.emulator import make_app as nmbrs_emulator
from gateway.accounts.principal import Principal
from gateway.api.app import AccessLogger, make_app
from gateway.ledger.audit import AuditEntry, audit_bytes
from gateway.ledger.record import Acting
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import connector_credentials, create_connector
from mappings import bundled_mapping
from tests.console.conftest import Console, World, check_accessible
from tests.console.test_connect import at_vendor, local, moving_on

PAYROLL = "/console/t/acme/connectors/payroll"


@pytest.fixture
async def nmbrs(aiohttp_server: Any) -> tuple[web.Application, str]:
    app = nmbrs_emulator(people=25, companies=2)
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def console(aiohttp_client: Any, services: Services) -> Console:
    """The gateway as `sluis serve` runs it: with its own access log, which names routes
    and never a query (where Nmbrs's code and state come back)."""
    server = TestServer(make_app(services))
    await server.start_server(access_log_class=AccessLogger)
    return Console(await aiohttp_client(server))


def acting(services: Services, world: World) -> Acting:
    return Acting(
        Principal(world.admin.account_id, "admin", "acme", "test").actor(),
        services.ledger("acme"),
    )


def add_payroll(services: Services, world: World, base: str) -> None:
    """An Nmbrs REST connector as the admin API makes it: the app's client and the
    subscription key, no refresh token (the emulator's identity server named in its
    settings, as `sluis emulator` prints them)."""
    create_connector(
        services.store, services.box, tenant="acme", connector_id="payroll", type_name="nmbrs",
        base_url=base, now=services.clock(), by=acting(services, world),
        credentials={
            "client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET,
            "subscription_key": EMULATOR_SUBSCRIPTION_KEY,
        },
        settings=CONNECTOR_TYPE.settings_for_emulator(base),
        mapping_text=bundled_mapping("nmbrs").read_text(),
    )  # fmt: skip


def stored(services: Services) -> dict[str, str]:
    return connector_credentials(services.box, services.store.get_connector("acme", "payroll"))


async def test_an_admin_connects_nmbrs_and_each_sync_keeps_the_rotated_token(
    console: Console, world: World, services: Services, nmbrs: tuple[web.Application, str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    app, base = nmbrs
    auth = app[AUTHORIZATION]
    add_payroll(services, world, base)
    await console.sign_in(world.admin)
    before = await console.get(PAYROLL)
    assert before.status == 200 and "Not connected yet" in before.html
    assert "Connect with Nmbrs" in before.html and "/console/connect/callback" in before.html
    check_accessible(before.html)

    begun = await console.client.post(
        PAYROLL + "/connect", data={"csrf": before.csrf, "code": world.admin.code()}
    )
    assert begun.status == 200, await begun.text()
    target = moving_on(await begun.text())
    query = parse_qs(urlsplit(target).query)
    assert target.startswith(base + "/connect/authorize?")
    assert query["client_id"] == [EMULATOR_CLIENT_ID]
    assert query["scope"] == [" ".join(OAUTH_SCOPES)]
    assert query["code_challenge_method"] == ["S256"]
    back = await at_vendor(target)
    code = parse_qs(urlsplit(back).query)["code"][0]
    done = await console.get(local(back))
    assert done.status == 200, done.html
    page = await console.get(moving_on(done.html))
    assert "Connected: Nmbrs gave Sluis access" in page.html, page.html

    connected = stored(services)["refresh_token"]
    assert connected == app[ACCOUNT].refresh_token and connected in auth.refresh_tokens
    record = services.store.get_connector("acme", "payroll")
    assert connected.encode() not in record.sealed_credentials
    exchange = auth.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"

    # Two runs: each trades the stored refresh token, which Nmbrs then refuses, for a new
    # one that is stored (sealed) before the run reads anything with its access token.
    grant(services.store, by=acting(services, world), connector="payroll", purpose="p",
          now=services.clock())  # fmt: skip
    first = await services.engine.sync("acme", "payroll", SyncMode.FULL)
    assert first.status == "succeeded", first.error
    assert first.counts["upserted"] > 0, first.counts
    rotated = stored(services)["refresh_token"]
    assert rotated != connected and rotated == app[ACCOUNT].refresh_token
    assert connected not in auth.refresh_tokens  # used once
    second = await services.engine.sync("acme", "payroll", SyncMode.FULL)
    assert second.status == "succeeded", second.error
    assert stored(services)["refresh_token"] == app[ACCOUNT].refresh_token != rotated
    assert [r["grant_type"] for r in auth.token_requests] == [
        "authorization_code", "refresh_token", "refresh_token",
    ]  # fmt: skip
    assert [r["refresh_token"] for r in auth.token_requests[1:]] == [connected, rotated]

    ledger = b"".join(
        audit_bytes(r.entry)
        for r in services.ledger("acme").entries(limit=10_000)
        if isinstance(r.entry, AuditEntry)
    ).decode()
    secrets = [connected, rotated, app[ACCOUNT].refresh_token, code,
               exchange["code_verifier"], EMULATOR_CLIENT_SECRET, *app[ACCOUNT].tokens]  # fmt: skip
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in ledger
        assert secret not in page.html


async def test_an_unconnected_nmbrs_connector_fails_its_sync_saying_so(
    console: Console, world: World, services: Services, nmbrs: tuple[web.Application, str]
) -> None:
    """Created without a refresh token and never connected: the run fails with a plain
    "not connected" before anything is asked of Nmbrs, and so does the live preview."""
    app, base = nmbrs
    add_payroll(services, world, base)
    grant(services.store, by=acting(services, world), connector="payroll", purpose="p",
          now=services.clock())  # fmt: skip
    run = await services.engine.sync("acme", "payroll", SyncMode.FULL)
    assert run.status == "failed"
    assert run.error is not None and "not connected" in run.error
    await console.sign_in(world.admin)
    page = await console.get(PAYROLL)
    live = await console.post(PAYROLL + "/live-preview", {"csrf": page.csrf})
    assert live.status == 502 and "not connected" in live.html, live.html
    assert app[AUTHORIZATION].token_requests == []
    assert app[ACCOUNT].refreshes == 0
