"""Signing in and out of the console: the cookie's flags, rotation, one message for every
wrong input, CSRF and origin checks, and the language."""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.api.app import make_app
from gateway.runtime.services import Services
from tests.console.conftest import Console, World, check_accessible


def session_cookie(resp) -> str:  # type: ignore[no-untyped-def]
    for header in resp.headers.getall("Set-Cookie", []):
        if header.startswith("sluis_session="):
            return header
    raise AssertionError("no session cookie set")


async def test_sign_in_page_is_accessible_in_both_languages(console: Console) -> None:
    page = await console.get("/console/sign-in")
    assert page.status == 200
    check_accessible(page.html)
    assert '<html lang="en">' in page.html
    dutch = await console.get("/console/sign-in", headers={"Accept-Language": "nl-NL,nl"})
    assert '<html lang="nl">' in dutch.html and "Aanmelden" in dutch.html
    check_accessible(dutch.html)


async def test_the_language_toggle_sets_a_cookie_that_wins(console: Console) -> None:
    resp = await console.client.get(
        "/console/lang?set=nl&next=/console/sign-in", allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/console/sign-in"
    page = await console.get("/console/sign-in", headers={"Accept-Language": "en"})
    assert '<html lang="nl">' in page.html


async def test_the_toggle_does_not_redirect_off_site(console: Console) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/console\\@evil"):
        resp = await console.client.get(
            f"/console/lang?set=en&next={target}", allow_redirects=False
        )
        assert resp.headers["Location"] == "/console/", target


async def test_cookie_flags_and_rotation(console: Console, world: World) -> None:
    data = {"email": world.admin.email, "password": world.admin.password}
    resp = await console.raw_post("/console/sign-in", {**data, "code": world.admin.code()})
    assert resp.status == 303
    header = session_cookie(resp)
    cookie = SimpleCookie(header)["sluis_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; over TLS the name is __Host-sluis_session
    first = cookie.value
    resp = await console.raw_post("/console/sign-in", {**data, "code": world.admin.code()})
    second = SimpleCookie(session_cookie(resp))["sluis_session"].value
    assert second != first
    assert console.client.app is not None


async def test_the_old_session_ends_at_a_new_sign_in(
    console: Console, world: World, services: Services
) -> None:
    data = {"email": world.admin.email, "password": world.admin.password}
    resp = await console.raw_post("/console/sign-in", {**data, "code": world.admin.code()})
    first = SimpleCookie(session_cookie(resp))["sluis_session"].value
    await console.raw_post("/console/sign-in", {**data, "code": world.admin.code()})
    assert services.accounts.session(first) is None


async def test_wrong_password_keeps_the_email_and_says_what_to_do(
    console: Console, world: World
) -> None:
    page = await console.post(
        "/console/sign-in",
        {"email": world.admin.email, "password": "wrong password!!", "code": world.admin.code()},
    )
    assert page.status == 401
    assert f'value="{world.admin.email}"' in page.html
    assert "is not right" in page.html
    assert "wrong password!!" not in page.html


async def test_sign_out_needs_csrf_and_ends_the_session(
    console: Console, world: World, services: Services
) -> None:
    home = await console.sign_in(world.admin)
    assert home.status == 200
    refused = await console.post("/console/sign-out", {"csrf": "not-the-token"})
    assert refused.status == 403
    page = await console.post("/console/sign-out", {"csrf": home.csrf})
    assert page.status == 200 and "signed out" in page.html
    again = await console.get("/console/t/acme")
    assert "/console/sign-in" in str(again.html) or again.status == 200
    assert 'action="/console/sign-in"' in again.html


async def test_a_form_from_another_origin_is_refused(console: Console, world: World) -> None:
    await console.sign_in(world.operator)
    page = await console.get("/console/operator/tenants")
    refused = await console.post(
        "/console/operator/tenants",
        {"csrf": page.csrf, "id": "evil", "name": "Evil"},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status == 403
    assert "did not come from this console" in refused.html
    listing = await console.get("/console/operator/tenants")
    assert ">evil<" not in listing.html


async def test_a_form_without_the_csrf_token_changes_nothing(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.operator)
    refused = await console.post("/console/operator/tenants", {"id": "evil", "name": "Evil"})
    assert refused.status == 403
    assert "evil" not in {t.id for t in services.store.list_tenants()}


async def test_security_headers(console: Console) -> None:
    resp = await console.client.get("/console/sign-in")
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_throttled_sign_in_says_when_to_retry(console: Console, world: World) -> None:
    wrong = {"email": world.viewer.email, "password": "not the password", "code": "123456"}
    statuses = [(await console.post("/console/sign-in", wrong)).status for _ in range(8)]
    assert statuses[0] == 401 and statuses[-1] == 429
    page = await console.post("/console/sign-in", wrong)
    assert page.status == 429
    assert int(page.headers["Retry-After"]) > 0
    assert re.search(r"Try again in \d+ seconds", page.html)
    assert f'value="{world.viewer.email}"' in page.html


async def test_weak_password_on_the_invitation_says_the_rule(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    page = await console.get("/console/t/acme/accounts")
    invited = await console.post(
        "/console/t/acme/accounts",
        {"csrf": page.csrf, "name": "Nina", "email": "nina@acme.example", "role": "viewer"},
    )
    link = re.search(r'href="https?://[^/]+(/console/invitations/[^"]+)"', invited.html)
    assert link
    form = await console.get(link.group(1))
    assert form.status == 200
    weak = await console.post(
        link.group(1), {"password": "password", "password2": "password", "code": "123456"}
    )
    assert weak.status == 422
    assert "Choose another password" in weak.html and 'id="e-password"' in weak.html


async def test_no_personal_data_in_the_logs(
    console: Console, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await console.post(
        "/console/sign-in",
        {"email": world.admin.email, "password": "wrong horse 1234", "code": "654321"},
    )
    home = await console.sign_in(world.admin)
    await console.post("/console/t/acme/consumers", {"csrf": home.csrf, "name": "lms-x"})
    text = caplog.text
    for secret in (world.admin.email, "wrong horse 1234", "654321", world.admin.password):
        assert secret not in text


async def test_over_tls_the_cookie_is_host_prefixed_and_secure(
    aiohttp_server: Any, services: Services, world: World, tmp_path: Path
) -> None:
    context = self_signed(tmp_path)
    server = await aiohttp_server(make_app(services), host="127.0.0.1", ssl=context)
    url = f"https://127.0.0.1:{server.port}/console/sign-in"
    async with aiohttp.ClientSession() as session:
        data = {"email": world.admin.email, "password": world.admin.password,
                "code": world.admin.code()}  # fmt: skip
        async with session.post(url, data=data, ssl=False, allow_redirects=False) as resp:
            assert resp.status == 303
            [header] = [h for h in resp.headers.getall("Set-Cookie") if "sluis_session" in h]
    cookie = SimpleCookie(header)["__Host-sluis_session"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/" and not cookie["domain"]


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A throwaway certificate for 127.0.0.1 (the console only needs to see TLS)."""
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
    return context


async def test_unknown_pages_and_methods_are_readable_pages(console: Console) -> None:
    missing = await console.get("/console/nope")
    assert missing.status == 404 and "This page does not exist" in missing.html
    wrong = await console.client.delete("/console/sign-in")
    assert wrong.status == 405 and wrong.content_type == "text/html"
    bare = await console.client.get("/console", allow_redirects=False)
    assert bare.status == 308 and bare.headers["Location"] == "/console/"


async def test_a_recovery_code_signs_in_once(console: Console, world: World) -> None:
    data = {"email": world.auditor.email, "password": world.auditor.password}
    first = await console.post("/console/sign-in", {**data, "code": world.auditor.recovery[0]})
    assert first.status == 200 and "Sign out" in first.html
    console.client.session.cookie_jar.clear()
    again = await console.post("/console/sign-in", {**data, "code": world.auditor.recovery[0]})
    assert again.status == 401


async def test_behind_a_tls_proxy_public_url_makes_the_cookie_secure(
    aiohttp_client: Any, services: Services, world: World
) -> None:
    """`sluis serve` speaks plain HTTP to the proxy that ends TLS: `public_url` tells it
    what browsers see, so the cookie is still `__Host-` and Secure, and the proxy's
    public host is accepted as the forms' Origin."""
    services.settings = services.settings.model_copy(
        update={"public_url": "https://sluis.acme.example"}
    )
    client = await aiohttp_client(make_app(services))
    data = {"email": world.admin.email, "password": world.admin.password,
            "code": world.admin.code()}  # fmt: skip
    resp = await client.post("/console/sign-in", data=data, allow_redirects=False,
                             headers={"Origin": "https://sluis.acme.example"})  # fmt: skip
    assert resp.status == 303
    [header] = [h for h in resp.headers.getall("Set-Cookie") if "sluis_session" in h]
    cookie = SimpleCookie(header)["__Host-sluis_session"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
    evil = await client.post("/console/sign-in", data=data, allow_redirects=False,
                             headers={"Origin": "https://evil.example"})  # fmt: skip
    assert evil.status == 403
