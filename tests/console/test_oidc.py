"""The console's side of sign-in through a tenant's identity provider, against a real
OpenID provider on 127.0.0.1 (the `oidc_issuer` fixture): the browser that began the login
must be the one that comes back, and the register still decides who may come in."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import aiohttp

from gateway.accounts.principal import Principal
from gateway.runtime.services import Services
from tests.console.conftest import Console, World


async def at_provider(url: str, issuer: str, sub: str, email: str) -> str:
    """What the person's browser does at the identity provider; the callback URL."""
    async with aiohttp.ClientSession() as http:
        claims = {"email": email, "email_verified": True}
        async with http.put(f"{issuer}/users/{sub}", json=claims) as r:
            assert r.status == 204
        async with http.post(url, data={"sub": sub}, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            return r.headers["Location"]


async def begin(console: Console) -> str:
    """The console's page on the way out: it moves on to the provider by itself."""
    page = await console.get("/console/oidc?tenant=acme")
    assert page.status == 200
    found = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', page.html)
    assert found
    return html.unescape(found.group(1))


def configure(services: Services, world: World, issuer: str) -> None:
    admin = Principal(world.admin.account_id, "admin", "acme", "test")
    services.accounts.configure_oidc(
        admin, "acme", issuer=issuer, client_id="sluis-acme", client_secret="s3cret"
    )


async def test_sign_in_through_the_organisation(
    console: Console, world: World, services: Services, oidc_issuer: str
) -> None:
    configure(services, world, oidc_issuer)
    page = await console.get("/console/sign-in")
    assert 'action="/console/oidc"' in page.html
    back = await at_provider(await begin(console), oidc_issuer, "ann", world.viewer.email)
    parts = urlsplit(back)
    assert parts.path == "/console/oidc/callback"
    done = await console.get(f"{parts.path}?{parts.query}")
    assert done.status == 200 and 'http-equiv="refresh"' in done.html
    home = await console.get("/console/t/acme")
    assert home.status == 200 and "Signed in as viewer" in home.html


async def test_a_callback_link_from_someone_else_signs_nobody_in(
    console: Console, world: World, services: Services, oidc_issuer: str
) -> None:
    """Login CSRF: the attacker begins a login, then sends the victim the callback link."""
    configure(services, world, oidc_issuer)
    back = await at_provider(await begin(console), oidc_issuer, "eve", world.admin.email)
    console.client.session.cookie_jar.clear()  # the victim's browser never began it
    parts = urlsplit(back)
    refused = await console.get(f"{parts.path}?{parts.query}")
    assert refused.status == 400 and "did not work or expired" in refused.html
    after = await console.client.get("/console/t/acme", allow_redirects=False)
    assert after.status == 303 and after.headers["Location"].startswith("/console/sign-in")


async def test_an_unknown_organisation_or_person_is_a_clear_page(
    console: Console, world: World, services: Services, oidc_issuer: str
) -> None:
    missing = await console.get("/console/oidc?tenant=globex")
    assert missing.status == 404 and "not set up for that organisation" in missing.html
    configure(services, world, oidc_issuer)
    back = await at_provider(await begin(console), oidc_issuer, "x", "nobody@acme.example")
    parts = urlsplit(back)
    refused = await console.get(f"{parts.path}?{parts.query}")
    assert refused.status == 401 and "Ask your administrator" in refused.html


async def test_the_admin_sets_and_removes_the_identity_provider(
    console: Console, world: World, services: Services, oidc_issuer: str
) -> None:
    await console.sign_in(world.admin)
    page = await console.get("/console/t/acme/accounts")
    assert "/console/oidc/callback" in page.html
    form = {"csrf": page.csrf, "client_id": "sluis-acme", "client_secret": "s3cret"}
    wrong = await console.post(
        "/console/t/acme/identity-provider",
        {**form, "issuer": "http://127.0.0.1:9", "code": world.admin.code()},
    )
    assert wrong.status == 422 and 'id="e-issuer"' in wrong.html
    assert 'value="sluis-acme"' in wrong.html and "s3cret" not in wrong.html
    no_code = await console.post(
        "/console/t/acme/identity-provider", {**form, "issuer": oidc_issuer}
    )
    assert no_code.status == 422 and 'id="e-code"' in no_code.html
    saved = await console.post(
        "/console/t/acme/identity-provider",
        {**form, "issuer": oidc_issuer, "code": world.admin.code()},
    )
    assert saved.status == 200 and "Identity provider saved" in saved.html
    assert services.accounts.oidc_client("acme") is not None
    assert "s3cret" not in saved.html
    removed = await console.post("/console/t/acme/identity-provider/remove", {"csrf": saved.csrf})
    assert removed.status == 200 and "is off" in removed.html
    assert services.accounts.oidc_client("acme") is None
