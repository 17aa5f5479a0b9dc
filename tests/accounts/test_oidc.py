"""Sign-in through a tenant's own identity provider, against a real OpenID provider on
127.0.0.1: discovery, code flow with state, nonce and PKCE, ID token verification, and the
register deciding who may come in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.accounts import oidc
from gateway.accounts.oidc import (
    OidcClientConfig,
    OidcFailed,
    OidcLogins,
    Pending,
    Provider,
    _verified_claims,
    code_challenge,
)
from gateway.accounts.principal import Principal
from gateway.ledger.audit import AuditEntry
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.tenancy import create_tenant
from tests.principals import PASSWORD, TOTP_SECRET, system

REDIRECT = "https://gateway.example/console/oidc/callback"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(Settings(data_dir=tmp_path, admin_token="b" * 32, allow_private_sources=True))
    for tenant in ("acme", "globex"):
        create_tenant(s.store, s.box, tenant, tenant, s.clock(), by=system(s, tenant))
    yield s
    s.close()


def admin(services: Services, email: str = "dana@acme.example", tenant: str = "acme") -> Principal:
    account, _ = services.accounts.create_active_account(
        tenant=tenant, role="admin", email=email, name="Dana", password=PASSWORD,
        totp_secret=TOTP_SECRET,
    )  # fmt: skip
    return Principal(account.id, "admin", tenant, "test")


async def log_in_at_provider(url: str, issuer: str, sub: str, claims: dict[str, object]) -> str:
    """What the person's browser does at the IdP: the IdP's page, then its form."""
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{issuer}/users/{sub}", json=claims) as r:
            assert r.status == 204
        async with http.get(url) as page:
            assert page.status == 200 and "sub" in await page.text()
        async with http.post(url, data={"sub": sub}, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            return r.headers["Location"]


def test_pkce_challenge_is_rfc7636_s256() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_a_person_of_the_tenant_signs_in_through_its_provider(
    services: Services, oidc_issuer: str
) -> None:
    dana = admin(services)
    services.accounts.configure_oidc(
        dana, "acme", issuer=oidc_issuer, client_id="sluis-acme", client_secret="s3cret"
    )
    config = services.accounts.oidc_client("acme")
    assert config is not None and config.client_secret == "s3cret"
    url = await services.oidc.begin(config, REDIRECT)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["sluis-acme"]
    assert query["redirect_uri"] == [REDIRECT] and "nonce" in query
    back = await log_in_at_provider(
        url, oidc_issuer, "dana", {"email": "Dana@Acme.example", "email_verified": True}
    )
    returned = parse_qs(urlsplit(back).query)
    state, code = returned["state"][0], returned["code"][0]
    assert await services.oidc.pending_tenant(state) == "acme"
    identity = await services.oidc.complete(config, state, code)
    signed = services.accounts.sign_in_oidc(identity)
    assert signed.principal.account_id == dana.account_id
    assert services.accounts.session(signed.session) is not None
    with pytest.raises(OidcFailed, match="expired or was used"):
        await services.oidc.complete(config, state, code)
    actions = [r.entry.action for r in services.ledger("acme").entries(limit=50)
               if isinstance(r.entry, AuditEntry)]  # fmt: skip
    assert "oidc.configured" in actions


async def test_the_register_still_decides(services: Services, oidc_issuer: str) -> None:
    dana = admin(services)
    admin(services, "gus@globex.example", "globex")
    services.accounts.configure_oidc(
        dana, "acme", issuer=oidc_issuer, client_id="sluis-acme", client_secret="s3cret"
    )
    config = services.accounts.oidc_client("acme")
    assert config is not None

    async def identity_for(sub: str, claims: dict[str, object]) -> object:
        url = await services.oidc.begin(config, REDIRECT)
        back = parse_qs(urlsplit(await log_in_at_provider(url, oidc_issuer, sub, claims)).query)
        return await services.oidc.complete(config, back["state"][0], back["code"][0])

    # Another tenant's person, proven by acme's provider, is not let into either tenant.
    gus = await identity_for("gus", {"email": "gus@globex.example", "email_verified": True})
    with pytest.raises(OidcFailed, match="no active Sluis account"):
        services.accounts.sign_in_oidc(gus)  # type: ignore[arg-type]
    with pytest.raises(OidcFailed, match="verified email"):
        await identity_for("eve", {"email": "dana@acme.example", "email_verified": False})
    with pytest.raises(OidcFailed, match="verified email"):
        await identity_for("mallory", {"name": "no email"})


def test_an_id_token_signed_by_another_key_or_for_another_nonce_is_refused() -> None:
    ours, theirs = RSAKey.generate_key(2048), RSAKey.generate_key(2048)
    provider = Provider("https://idp.example", "https://idp.example/a", "https://idp.example/t",
                        "https://idp.example/jwks")  # fmt: skip
    pending = Pending("acme", "n-1", "v", REDIRECT, provider)
    config = OidcClientConfig("acme", "https://idp.example", "sluis", "s")
    now = int(time.time())
    claims = {
        "iss": "https://idp.example", "aud": "sluis", "exp": now + 60, "iat": now,
        "nonce": "n-1", "sub": "x", "email": "a@acme.example", "email_verified": True,
    }  # fmt: skip
    jwks = {"keys": [ours.as_dict(private=False)]}
    good = jwt.encode({"alg": "RS256"}, claims, ours)
    assert _verified_claims(good, jwks, pending, config)["email"] == "a@acme.example"
    for bad in (
        jwt.encode({"alg": "RS256"}, claims, theirs),
        jwt.encode({"alg": "RS256"}, {**claims, "nonce": "other"}, ours),
        jwt.encode({"alg": "RS256"}, {**claims, "aud": "someone-else"}, ours),
        jwt.encode({"alg": "RS256"}, {**claims, "iss": "https://evil.example"}, ours),
        jwt.encode({"alg": "RS256"}, {**claims, "exp": now - 3600}, ours),
        "not.a.token",
    ):
        with pytest.raises(OidcFailed):
            _verified_claims(bad, jwks, pending, config)


async def test_an_unreachable_or_lying_provider_is_a_clear_error(services: Services) -> None:
    logins = OidcLogins(services.store.accounts, services.box, allow_private=False)
    with pytest.raises(OidcFailed, match="cannot be reached"):
        await logins.discover("http://127.0.0.1:9")
    with pytest.raises(OidcFailed, match="cannot be reached"):
        await services.oidc.discover("http://127.0.0.1:9")


async def test_logins_begun_in_bulk_evict_the_tenants_oldest(
    services: Services, oidc_issuer: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(oidc, "MAX_PENDING_PER_TENANT", 2)
    dana = admin(services)
    services.accounts.configure_oidc(
        dana, "acme", issuer=oidc_issuer, client_id="sluis-acme", client_secret="s3cret"
    )
    config = services.accounts.oidc_client("acme")
    assert config is not None
    states = []
    for _ in range(3):
        url = await services.oidc.begin(config, REDIRECT)
        states.append(parse_qs(urlsplit(url).query)["state"][0])
    assert [await services.oidc.pending_tenant(s) for s in states] == [None, "acme", "acme"]
    (warning,) = [r for r in caplog.records if r.name == "sluis.accounts"]
    assert "acme" in warning.getMessage() and "dropped" in warning.getMessage()
    assert not any(s in warning.getMessage() for s in states)
    with pytest.raises(OidcFailed, match="expired or was used"):
        await services.oidc.complete(config, states[0], "any-code")


async def test_the_providers_discovery_is_kept_not_fetched_for_every_sign_in(
    services: Services, aiohttp_server: Any
) -> None:
    """The sign-in page is open to anyone: a burst of it asks the IdP once, not each time."""
    hits: list[str] = []

    async def discovery(request: web.Request) -> web.Response:
        hits.append(request.path)
        base = str(request.url.origin())
        return web.json_response({
            "issuer": base, "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
        })  # fmt: skip

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    server = await aiohttp_server(app, host="127.0.0.1")
    issuer = str(server.make_url("")).rstrip("/")
    logins = OidcLogins(services.store.accounts, services.box, allow_private=True)
    first = await logins.discover(issuer)
    for _ in range(5):
        assert await logins.discover(issuer) == first
    assert hits == ["/.well-known/openid-configuration"]
