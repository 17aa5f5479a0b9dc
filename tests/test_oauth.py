"""`connectors.oauth.Tokens` against a real token endpoint on 127.0.0.1, and the gateway's
keeping of a rotated refresh token (`credentials_keeper`) in a real store."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import Connector, ConnectorConfig, ConnectorError
from connectors.hubspot import HubSpotConnector
from connectors.netguard import PublicOnlyConnector
from connectors.oauth import Client, Tokens
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.tenancy import (
    connector_credentials,
    create_connector,
    create_tenant,
    credentials_keeper,
)
from mappings import bundled_mapping

KEY = b"k" * 32
SECRET = "s3cr&t=value"


@dataclass
class Endpoint:
    """A token endpoint that rotates refresh tokens and can be told to misbehave."""

    forms: list[dict[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    issued: int = 0
    expires_in: Any = 3600
    refresh: str = "r-0"
    answer: Callable[[], web.Response] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.forms.append(form)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.answer is not None:
            return self.answer()
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") != self.refresh:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "token r-x for eva@example.nl"},
                    status=400,
                )
            self.refresh = f"r-{self.issued + 1}"
        self.issued += 1
        body: dict[str, Any] = {
            "access_token": f"a-{self.issued}",
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }
        if form.get("grant_type") == "refresh_token":
            body["refresh_token"] = self.refresh
        return web.json_response(body)


@pytest.fixture
async def endpoint(aiohttp_server: Any) -> tuple[Endpoint, str]:
    ep = Endpoint()
    app = web.Application()
    app.router.add_post("/oauth/token", ep.handle)

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.example/token")

    app.router.add_post("/moved", moved)
    server = await aiohttp_server(app)
    return ep, str(server.make_url("/oauth/token"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def probe(session: aiohttp.ClientSession, kept: list[dict[str, str]] | None = None) -> Connector:
    """A real connector (HubSpot's), whose `send` the tokens go through."""

    async def keep(changed: Any) -> None:
        assert kept is not None
        kept.append(dict(changed))

    return HubSpotConnector(
        ConnectorConfig(type="hubspot", base_url="http://127.0.0.1:9", credentials={"token": "x"}),
        Projector(load_mapping(bundled_mapping("hubspot")), KEY),
        session,
        keep_credentials=keep if kept is not None else None,
    )


async def test_client_credentials_in_the_body_give_a_reused_token(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    ep, url = endpoint
    tokens = Tokens(probe(session), url, Client("app", SECRET), scope="https://graph/.default")
    assert await tokens.bearer() == "a-1"
    assert await tokens.bearer() == "a-1"
    assert ep.forms == [
        {
            "grant_type": "client_credentials",
            "scope": "https://graph/.default",
            "client_id": "app",
            "client_secret": SECRET,
        }
    ]
    assert ep.authorizations == [None]


async def test_basic_client_auth_form_encodes_both_parts(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    ep, url = endpoint
    tokens = Tokens(probe(session), url, Client("app:1", SECRET, auth="basic"))
    await tokens.bearer()
    assert "client_secret" not in ep.forms[0]
    header = ep.authorizations[0]
    assert header is not None and header.startswith("Basic ")
    assert base64.b64decode(header[6:]).decode() == "app%3A1:s3cr%26t%3Dvalue"


async def test_a_token_is_fetched_again_near_its_end(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    ep, url = endpoint
    ep.expires_in = "61"  # some providers send it as a string
    tokens = Tokens(probe(session), url, Client("app", SECRET), margin=60.8)
    assert await tokens.bearer() == "a-1"
    await asyncio.sleep(0.3)
    assert await tokens.bearer() == "a-2"


async def test_call_retries_once_with_a_new_token_after_a_refusal(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    _, url = endpoint
    tokens = Tokens(probe(session), url, Client("app", SECRET))
    await tokens.bearer()  # a-1 is now a kept token
    seen: list[str] = []

    async def api(token: str) -> str:
        seen.append(token)
        if token == "a-1":
            raise ConnectorError("auth", "hubspot: refused (HTTP 401)", status=401)
        return "ok"

    assert await tokens.call(api) == "ok"
    assert seen == ["a-1", "a-2"]


async def test_a_fresh_token_refused_is_not_fetched_again(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    ep, url = endpoint
    tokens = Tokens(probe(session), url, Client("app", SECRET))

    async def api(token: str) -> str:
        raise ConnectorError("auth", "hubspot: refused (HTTP 403)", status=403)

    with pytest.raises(ConnectorError) as caught:
        await tokens.call(api)
    assert caught.value.kind == "auth"
    assert ep.issued == 1


async def test_a_rotated_refresh_token_is_kept_before_the_access_token_is_used(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    ep, url = endpoint
    kept: list[dict[str, str]] = []
    tokens = Tokens(probe(session, kept), url, Client("app", SECRET), refresh_token="r-0")
    assert await tokens.bearer() == "a-1"
    assert kept == [{"refresh_token": "r-1"}]
    assert tokens.refresh_token == "r-1"
    tokens.expire("a-1")
    assert await tokens.bearer() == "a-2"
    assert [f["refresh_token"] for f in ep.forms] == ["r-0", "r-1"]
    assert kept[-1] == {"refresh_token": "r-2"}


async def test_a_refused_refresh_token_says_reconnect_and_quotes_nothing(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    _, url = endpoint
    tokens = Tokens(probe(session), url, Client("app", SECRET), refresh_token="stale")
    with pytest.raises(ConnectorError) as caught:
        await tokens.bearer()
    message = str(caught.value)
    assert caught.value.kind == "auth"
    assert "[error invalid_grant]" in message and "connect the source again" in message
    assert "eva@" not in message and "stale" not in message and SECRET not in message


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (
            lambda: web.json_response(
                {"error": "slow_down"}, status=429, headers={"Retry-After": "7"}
            ),
            "rate_limited",
        ),
        (lambda: web.Response(status=503, text="maintenance"), "unavailable"),
        (lambda: web.json_response({"token_type": "bearer"}), "malformed"),
        (lambda: web.json_response({"access_token": "a", "token_type": "mac"}), "malformed"),
        (lambda: web.Response(text="<html>login</html>"), "malformed"),
        (lambda: web.json_response({"error": "invalid_client"}, status=401), "auth"),
        (lambda: web.json_response({"access_token": "a" * 20_000}), "malformed"),
    ],
)  # fmt: skip
async def test_token_endpoint_failures_are_connector_errors(
    endpoint: tuple[Endpoint, str],
    session: aiohttp.ClientSession,
    answer: Callable[[], web.Response],
    kind: str,
) -> None:
    ep, url = endpoint
    ep.answer = answer
    with pytest.raises(ConnectorError) as caught:
        await Tokens(probe(session), url, Client("app", SECRET)).bearer()
    assert caught.value.kind == kind
    if kind == "rate_limited":
        assert caught.value.retry_after == 7


async def test_a_redirecting_token_endpoint_is_not_followed(
    endpoint: tuple[Endpoint, str], session: aiohttp.ClientSession
) -> None:
    _, url = endpoint
    with pytest.raises(ConnectorError) as caught:
        await Tokens(probe(session), url.replace("/oauth/token", "/moved"), Client("a")).bearer()
    assert caught.value.kind == "config"


async def test_the_token_endpoint_is_held_to_the_address_rules(
    endpoint: tuple[Endpoint, str],
) -> None:
    _, url = endpoint
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        with pytest.raises(ConnectorError) as caught:
            await Tokens(probe(guarded), url, Client("app", SECRET)).bearer()
    assert caught.value.kind == "config"
    assert "allow_private_sources" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://idp/token", "https://user:pw@idp/token", "/token"])
async def test_a_token_url_must_be_plain_http(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        Tokens(probe(session), url, Client("app"))
    assert caught.value.kind == "config"


async def test_the_gateway_keeps_a_rotated_refresh_token_sealed(tmp_path: Path) -> None:
    services = Services.open(Settings(data_dir=tmp_path, admin_token="g" * 32))
    now = datetime.now(UTC)
    try:
        by = Acting(SYSTEM, services.ledger("acme"))
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="crm",
            type_name="hubspot", base_url="https://api.hubapi.com",
            credentials={"token": "t-1"}, now=now,
            mapping_text=bundled_mapping("hubspot").read_text(),
        )  # fmt: skip
        before = services.store.get_connector("acme", "crm")
        logged = services.ledger("acme").size()
        keep = credentials_keeper(services.store, services.box, "acme", "crm")
        await keep({"refresh_token": "r-9"})
        stored = services.store.get_connector("acme", "crm")
        assert connector_credentials(services.box, stored) == {
            "token": "t-1",
            "refresh_token": "r-9",
        }
        assert b"r-9" not in stored.sealed_credentials
        # No ledger entry: the provider's rotation changes nothing an admin authorised.
        assert services.ledger("acme").size() == logged
        assert stored.mapping_digest == before.mapping_digest
    finally:
        services.close()
