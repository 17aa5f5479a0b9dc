"""The authorization-code side of `connectors.oauth` (the authorize URL, the code exchange)
against real endpoints on 127.0.0.1: a hand-written one that records what it was sent, and
the emulator kit's authorization server (one-time codes, PKCE, rotating refresh tokens) that
vendor emulators share."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, SyncMode
from connectors.emulator_kit import Authorization, add_authorization_routes
from connectors.hubspot import HubSpotConnector
from connectors.hubspot.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
from connectors.hubspot.emulator import make_app as hubspot_emulator
from connectors.netguard import PublicOnlyConnector
from connectors.oauth import (
    AuthorizationServer,
    Client,
    Tokens,
    code_challenge,
    exchange_code,
    new_verifier,
)
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from mappings import bundled_mapping

KEY = b"k" * 32
SECRET = "s3cr&t=value"
REDIRECT = "https://sluis.example/console/connect/callback"
CODE = "c0de-for-eva@example.nl"
VERIFIER = "v" * 64


@dataclass
class Recorder:
    """A token endpoint that answers what a test sets and records every form."""

    forms: list[dict[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    status: int = 200
    answer: dict[str, Any] = field(
        default_factory=lambda: {"access_token": "a-1", "token_type": "bearer",
                                 "refresh_token": "r-1", "expires_in": 1800}
    )  # fmt: skip

    async def handle(self, request: web.Request) -> web.Response:
        self.forms.append({k: str(v) for k, v in (await request.post()).items()})
        self.authorizations.append(request.headers.get("Authorization"))
        return web.json_response(self.answer, status=self.status)


@pytest.fixture
async def recorder(aiohttp_server: Any) -> tuple[Recorder, str]:
    rec = Recorder()
    app = web.Application()
    app.router.add_post("/token", rec.handle)

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("https://elsewhere.example/token")

    app.router.add_post("/moved", moved)
    server = await aiohttp_server(app, host="127.0.0.1")
    return rec, str(server.make_url("/token"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def probe(session: aiohttp.ClientSession, base: str = "http://127.0.0.1:9", **creds: str) -> Any:
    """A real connector (HubSpot's), whose `send` the exchange goes through."""
    return HubSpotConnector(
        ConnectorConfig(type="hubspot", base_url=base, credentials=creds or {"token": "x"}),
        Projector(load_mapping(bundled_mapping("hubspot")), KEY),
        session,
    )


def server(token_url: str, auth: str = "post") -> AuthorizationServer:
    return AuthorizationServer("https://idp.example/authorize", token_url, ("read",),
                               client_auth=auth)  # type: ignore[arg-type]  # fmt: skip


def test_the_challenge_is_rfc_7636_s256() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    made = new_verifier()
    assert 43 <= len(made) <= 128 and made != new_verifier()


def test_the_authorize_url_carries_code_pkce_state_and_scope() -> None:
    found = AuthorizationServer(
        "https://idp.example/authorize?tenant=7", "https://idp.example/token",
        ("employees.read", "company.read"), extra={"prompt": "consent"},
    ).authorize("app", REDIRECT, "st-1", VERIFIER)  # fmt: skip
    parts = urlsplit(found)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://idp.example/authorize"
    assert parse_qs(parts.query) == {
        "tenant": ["7"], "prompt": ["consent"], "response_type": ["code"],
        "client_id": ["app"], "redirect_uri": [REDIRECT], "state": ["st-1"],
        "code_challenge": [code_challenge(VERIFIER)], "code_challenge_method": ["S256"],
        "scope": ["employees.read company.read"],
    }  # fmt: skip


async def test_the_exchange_posts_the_code_verifier_and_client(
    recorder: tuple[Recorder, str], session: aiohttp.ClientSession
) -> None:
    rec, url = recorder
    refresh = await exchange_code(
        probe(session), server(url), Client("app", SECRET), code=CODE, redirect_uri=REDIRECT,
        verifier=VERIFIER,
    )  # fmt: skip
    assert refresh == "r-1"
    assert rec.forms == [{
        "grant_type": "authorization_code", "code": CODE, "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER, "client_id": "app", "client_secret": SECRET,
    }]  # fmt: skip
    assert rec.authorizations == [None]


async def test_the_exchange_with_basic_client_auth(
    recorder: tuple[Recorder, str], session: aiohttp.ClientSession
) -> None:
    rec, url = recorder
    await exchange_code(
        probe(session), server(url, "basic"), Client("app:1", SECRET, auth="basic"),
        code=CODE, redirect_uri=REDIRECT, verifier=VERIFIER,
    )  # fmt: skip
    assert "client_secret" not in rec.forms[0] and "client_id" not in rec.forms[0]
    header = rec.authorizations[0]
    assert header is not None
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "app%3A1:s3cr%26t%3Dvalue"


@pytest.mark.parametrize(
    ("status", "answer", "kind", "said"),
    [
        (400, {"error": "invalid_grant", "error_description": f"code {CODE} leaked-xyz"}, "auth",
         "[error invalid_grant]; the code was refused"),
        (401, {"error": "invalid_client"}, "auth", "check the client id and secret"),
        (400, {"error": f"bad {CODE}"}, "auth", "(HTTP 400)"),
        (200, {"access_token": "a", "token_type": "bearer"}, "malformed", "no refresh token"),
        (200, {"refresh_token": "r" * 20_000}, "malformed", "no refresh token"),
        (503, {}, "unavailable", "HTTP 503"),
    ],
)  # fmt: skip
async def test_a_refused_exchange_quotes_only_the_error_code(
    recorder: tuple[Recorder, str],
    session: aiohttp.ClientSession,
    status: int,
    answer: dict[str, Any],
    kind: str,
    said: str,
) -> None:
    rec, url = recorder
    rec.status, rec.answer = status, answer
    with pytest.raises(ConnectorError) as caught:
        await exchange_code(
            probe(session), server(url), Client("app", SECRET), code=CODE,
            redirect_uri=REDIRECT, verifier=VERIFIER,
        )  # fmt: skip
    message = str(caught.value)
    assert caught.value.kind == kind and said in message
    for secret in (CODE, VERIFIER, SECRET, "eva@", "leaked-xyz"):
        assert secret not in message


async def test_the_exchange_follows_no_redirect_and_keeps_to_public_addresses(
    recorder: tuple[Recorder, str], session: aiohttp.ClientSession
) -> None:
    _, url = recorder
    with pytest.raises(ConnectorError) as moved:
        await exchange_code(
            probe(session), server(url.replace("/token", "/moved")), Client("app", SECRET),
            code=CODE, redirect_uri=REDIRECT, verifier=VERIFIER,
        )  # fmt: skip
    assert moved.value.kind == "config" and "redirected" in str(moved.value)
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        with pytest.raises(ConnectorError) as private:
            await exchange_code(
                probe(guarded), server(url), Client("app", SECRET), code=CODE,
                redirect_uri=REDIRECT, verifier=VERIFIER,
            )  # fmt: skip
    assert private.value.kind == "config" and "allow_private_sources" in str(private.value)
    with pytest.raises(ConnectorError) as plain:
        await exchange_code(
            probe(session), server("ftp://idp/token"), Client("app", SECRET), code=CODE,
            redirect_uri=REDIRECT, verifier=VERIFIER,
        )  # fmt: skip
    assert plain.value.kind == "config"


# --------------------------------------------------------------------------- the kit's server


@dataclass
class Kit:
    auth: Authorization
    root: str


@pytest.fixture
async def kit(aiohttp_server: Any) -> Kit:
    app = web.Application()
    auth = add_authorization_routes(app, "app", SECRET)
    srv = await aiohttp_server(app, host="127.0.0.1")
    return Kit(auth, str(srv.make_url("")).rstrip("/"))


async def consent(url: str) -> dict[str, list[str]]:
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(url, allow_redirects=False) as resp,
    ):
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def kit_server(kit: Kit) -> AuthorizationServer:
    return AuthorizationServer(kit.root + "/oauth/authorize", kit.root + "/oauth/token")


async def test_the_kit_grants_a_code_once_and_rotates_refresh_tokens(
    kit: Kit, session: aiohttp.ClientSession
) -> None:
    srv = kit_server(kit)
    back = await consent(srv.authorize("app", REDIRECT, "st-9", VERIFIER))
    assert back["state"] == ["st-9"]
    code = back["code"][0]
    connector = probe(session)
    refresh = await exchange_code(
        connector, srv, Client("app", SECRET), code=code, redirect_uri=REDIRECT,
        verifier=VERIFIER,
    )  # fmt: skip
    with pytest.raises(ConnectorError) as again:
        await exchange_code(
            connector, srv, Client("app", SECRET), code=code, redirect_uri=REDIRECT,
            verifier=VERIFIER,
        )  # fmt: skip
    assert "[error invalid_grant]" in str(again.value)
    # Rotation: each refresh token works once, and the new one is handed on to be kept.
    kept: list[dict[str, str]] = []

    async def keep(changed: Any) -> None:
        kept.append(dict(changed))

    connector.keep_credentials = keep
    tokens = Tokens(connector, srv.token_url, Client("app", SECRET), refresh_token=refresh)
    access = await tokens.bearer()
    assert kit.auth.accepts(access)
    assert kept and kept[0]["refresh_token"] != refresh
    stale = Tokens(connector, srv.token_url, Client("app", SECRET), refresh_token=refresh)
    with pytest.raises(ConnectorError) as used:
        await stale.bearer()
    assert "connect the source again" in str(used.value)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"verifier": "w" * 64}, "invalid_grant"),
        ({"redirect_uri": REDIRECT + "/other"}, "invalid_grant"),
        ({"code": "made-up"}, "invalid_grant"),
        ({"client": Client("app", "wrong")}, "invalid_client"),
        ({"client": Client("other", SECRET)}, "invalid_client"),
    ],
)
async def test_the_kit_checks_pkce_redirect_code_and_client(
    kit: Kit, session: aiohttp.ClientSession, change: dict[str, Any], error: str
) -> None:
    srv = kit_server(kit)
    code = (await consent(srv.authorize("app", REDIRECT, "s", VERIFIER)))["code"][0]
    args: dict[str, Any] = {"code": code, "redirect_uri": REDIRECT, "verifier": VERIFIER,
                            "client": Client("app", SECRET)}  # fmt: skip
    args.update(change)
    client = args.pop("client")
    with pytest.raises(ConnectorError) as caught:
        await exchange_code(probe(session), srv, client, **args)
    assert f"[error {error}]" in str(caught.value)


async def test_the_kit_answers_a_denial_and_refuses_unknown_clients(kit: Kit) -> None:
    srv = kit_server(kit)
    kit.auth.deny = True
    back = await consent(srv.authorize("app", REDIRECT, "st-2", VERIFIER))
    assert back == {"error": ["access_denied"], "state": ["st-2"]}
    kit.auth.deny = False
    async with aiohttp.ClientSession() as browser:
        unknown = srv.authorize("nobody", REDIRECT, "s", VERIFIER)
        async with browser.get(unknown, allow_redirects=False) as resp:
            assert resp.status == 400  # shown, never redirected to (RFC 6749 4.1.2.1)
        plain = srv.authorize("app", REDIRECT, "s", VERIFIER).replace("S256", "plain")
        async with browser.get(plain, allow_redirects=False) as resp:
            assert resp.status == 302 and "error=invalid_request" in resp.headers["Location"]


async def test_a_public_app_not_connected_says_so_and_asks_nobody(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    app = hubspot_emulator(people=5)
    srv = await aiohttp_server(app, host="127.0.0.1")
    connector = probe(
        session, str(srv.make_url("")), client_id=EMULATOR_CLIENT_ID,
        client_secret=EMULATOR_CLIENT_SECRET,
    )  # fmt: skip
    with pytest.raises(ConnectorError) as caught:
        await connector.fetch_page(PageRequest(SyncMode.FULL))
    assert caught.value.kind == "auth" and "not connected" in str(caught.value)
    assert connector.stats.requests == 0


async def test_hubspot_credentials_need_a_token_or_a_client(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(ConnectorError) as caught:
        probe(session, client_secret="only")
    assert caught.value.kind == "config" and "client_id and client_secret" in str(caught.value)
