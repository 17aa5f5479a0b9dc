"""End to end in a real headless browser (Debian's chromium driven by Playwright), against
the whole gateway on 127.0.0.1 and the bundled AFAS emulator:

operator invites a customer admin → the invitee sets a password → enrols TOTP → signs in →
creates a connector → previews it → authorises with step-up → syncs → revokes; and the same
pages and actions refused for a viewer, an auditor and another tenant's admin.

Skipped only when /usr/bin/chromium is missing (CI installs it, see `.ci/run`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.emulator import EMULATOR_TOKEN
from connectors.afas.emulator import make_app as afas_emulator
from gateway.api.app import make_app
from gateway.runtime.services import Services
from tests.console.conftest import PASSWORD, Clock, Person, enrol, make_tenants

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def gateway(aiohttp_server: Any, services: Services) -> str:
    server = await aiohttp_server(make_app(services), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def emulator(aiohttp_server: Any) -> str:
    server = await aiohttp_server(afas_emulator(people=30), host="127.0.0.1")
    return str(server.make_url("/profitrestservices"))


async def sign_in(page: Any, base: str, person: Person) -> None:
    await page.goto(base + "/console/sign-in")
    await page.get_by_label("Email address").fill(person.email)
    await page.get_by_label("Password").fill(person.password)
    await page.get_by_label("Authenticator code or recovery code").fill(person.code())
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    assert "/console/sign-in" not in page.url, await page.content()


async def fill_code_if_asked(page: Any, person: Person, scope: Any = None) -> None:
    field = (scope or page).get_by_label("Code from your authenticator app")
    if await field.count():
        await field.first.fill(person.code())


async def test_invite_enrol_connect_authorise_sync_revoke(
    browser: Any, gateway: str, emulator: str, services: Services, clock: Clock
) -> None:
    operator = enrol(services, clock, role="operator", tenant=None, email="op@sluis.example")
    # Without JavaScript: the core flows must not depend on it.
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()

    # The operator creates the tenant and invites its first customer admin.
    await sign_in(page, gateway, operator)
    await page.get_by_label("Tenant id").fill("acme")
    await page.get_by_label("Name").fill("Acme BV")
    await page.get_by_role("button", name="Create tenant").click()
    await page.get_by_label("Name").fill("Anna Admin")
    await page.get_by_label("Email address").fill("anna@acme.example")
    await page.get_by_role("button", name="Invite").click()
    link = await page.locator("#invitation-link").inner_text()
    await page.get_by_role("button", name="Sign out").click()

    # The invitee sets a password and enrols TOTP from the secret shown.
    await page.goto(link)
    secret = (await page.locator("#totp-secret").inner_text()).strip()
    assert (await page.locator("#otpauth-uri").inner_text()).startswith("otpauth://")
    # The QR code loads under the console's content security policy.
    assert await page.locator("img.qr").evaluate("img => img.naturalWidth") > 0
    anna = Person("anna@acme.example", PASSWORD, secret, "", "admin", "acme", clock)
    await page.get_by_label("New password").fill(PASSWORD)
    await page.get_by_label("Repeat the password").fill(PASSWORD)
    await page.get_by_label("Code your app now shows").fill(anna.code())
    await page.get_by_role("button", name="Finish").click()
    assert await page.locator("#recovery-codes li").count() == 10
    await page.get_by_role("link", name="Continue to sign in").click()

    # She signs in and creates a connector against the emulator, previewing it first.
    await sign_in(page, gateway, anna)
    await page.get_by_role("link", name="New connector").click()
    await page.get_by_label("Connector id").fill("hr")
    await page.get_by_label("Type").select_option("afas")
    await page.get_by_label("Base URL of the source system").fill(emulator)
    await page.get_by_label("API token of the source system").fill(EMULATOR_TOKEN)
    await page.get_by_label("Bundled mapping: afas").check()
    await page.get_by_role("button", name="Preview changes").click()
    assert "What leaves the gateway" in await page.content()
    assert "user.contact.email" in await page.locator("#preview").inner_text()
    # The token is write-only: a preview does not send it back; type it again.
    await page.get_by_label("API token of the source system").fill(EMULATOR_TOKEN)
    await fill_code_if_asked(page, anna)
    await page.get_by_role("button", name="Create connector").click()
    assert "Connector created" in await page.content(), await page.content()

    # The live preview: one bounded page of her own source, minimised as a sync would.
    await page.get_by_role("button", name="Preview on our own data").click()
    assert await page.locator("#live-people tbody tr").count() == 20, await page.content()
    assert "user.contact.email" in await page.locator("#live-preview").inner_text()

    # Authorise with step-up, then sync and watch the run finish.
    form = page.locator("#authorise-form")
    await form.get_by_label("Purpose").fill("training records of employees")
    await fill_code_if_asked(page, anna, form)
    await form.get_by_role("button", name="Authorise").click()
    assert "Authorised." in await page.content(), await page.content()
    await page.get_by_role("button", name="Sync now").click()
    status = await wait_for_run(page)
    assert status == "succeeded", await page.content()
    assert services.store.count_present("acme", "hr") == 30

    # Revoke with step-up.
    await page.get_by_role("link", name="Back").first.click()
    revoke = page.locator("form.revoke")
    await fill_code_if_asked(page, anna, revoke)
    await revoke.get_by_role("button", name="Revoke").click()
    assert "Revoked." in await page.content(), await page.content()
    [instruction] = services.store.list_instructions("acme", "hr")
    assert instruction.revoked_at is not None
    history = await page.goto(gateway + "/console/t/acme/authorisations")
    assert history is not None and history.status == 200
    assert "Anna Admin" in await page.content()
    # The ledger names who authorised and who revoked, and still verifies.
    await page.goto(gateway + "/console/t/acme/ledger")
    await page.get_by_role("link", name=re.compile("Verify the whole log now")).click()
    assert await page.locator("#verification").get_attribute("data-ok") == "1"
    kinds = await page.locator("table tbody td:nth-child(2)").all_inner_texts()
    assert {"authorisation.granted", "authorisation.revoked", "preview.made"} <= set(kinds)
    await context.close()


async def wait_for_run(page: Any) -> str:
    """The run page refreshes itself while the run is running; wait until it stops."""
    for _ in range(240):
        status = await page.locator("#run-status").get_attribute("data-status")
        if status != "running":
            return str(status)
        await asyncio.sleep(0.25)
        await page.wait_for_load_state()
    return "running"


async def test_wrong_role_and_wrong_tenant_are_refused_in_the_browser(
    browser: Any, gateway: str, emulator: str, services: Services, clock: Clock
) -> None:
    make_tenants(services, clock, "acme", "globex")
    admin = enrol(services, clock, role="admin", tenant="acme", email="a@acme.example")
    people = {
        "viewer": enrol(services, clock, role="viewer", tenant="acme", email="v@acme.example"),
        "auditor": enrol(services, clock, role="auditor", tenant="acme", email="d@acme.example"),
        "globex admin": enrol(
            services, clock, role="admin", tenant="globex", email="a@globex.example"
        ),
    }
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, gateway, admin)
    await page.goto(gateway + "/console/t/acme/new-connector")
    await page.get_by_label("Connector id").fill("hr")
    await page.get_by_label("Base URL of the source system").fill(emulator)
    await page.get_by_label("API token of the source system").fill(EMULATOR_TOKEN)
    await page.get_by_label("Bundled mapping: afas").check()
    await fill_code_if_asked(page, admin)
    await page.get_by_role("button", name="Create connector").click()
    assert "Connector created" in await page.content()
    await context.close()

    for who, person in people.items():
        context = await browser.new_context()
        page = await context.new_page()
        await sign_in(page, gateway, person)
        for path in ("/console/t/acme/new-connector", "/console/t/acme/accounts"):
            response = await page.goto(gateway + path)
            assert response is not None and response.status == 403, (who, path)
            assert "does not allow it" in await page.content()
        response = await page.goto(gateway + "/console/t/acme/connectors/hr")
        expected = 403 if who == "globex admin" else 200
        assert response is not None and response.status == expected, who
        if who != "globex admin":
            assert await page.get_by_role("button", name="Authorise").count() == 0
            assert await page.get_by_role("button", name="Sync now").count() == 0
        # Posting the actions anyway, with this person's own valid CSRF token, is refused.
        own = "/console/t/globex" if who == "globex admin" else "/console/t/acme"
        await page.goto(gateway + own)
        csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
        for action in ("authorise", "sync"):
            reply = await page.request.post(
                f"{gateway}/console/t/acme/connectors/hr/{action}",
                form={"csrf": csrf or "", "purpose": "x", "code": person.code()},
                headers={"Origin": gateway},
            )
            assert reply.status == 403, (who, action)
        await context.close()
    assert services.store.list_instructions("acme", "hr") == []


async def test_keyboard_only_sign_in_and_the_dutch_toggle(
    browser: Any, gateway: str, services: Services, clock: Clock
) -> None:
    make_tenants(services, clock, "acme")
    viewer = enrol(services, clock, role="viewer", tenant="acme", email="v@acme.example")
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(gateway + "/console/sign-in")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Enter")
    await page.get_by_label("Email address").focus()
    await page.keyboard.type(viewer.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(viewer.password)
    await page.keyboard.press("Tab")
    await page.keyboard.type(viewer.code())
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r".*/console/t/acme$"))
    await page.get_by_role("link", name="Nederlands").click()
    assert await page.get_attribute("html", "lang") == "nl"
    assert await page.get_by_role("heading", name="Overzicht van acme").count() == 1
    await context.close()


async def test_sign_in_through_the_organisations_identity_provider(
    browser: Any, gateway: str, services: Services, clock: Clock, oidc_issuer: str
) -> None:
    """The IdP's redirect back is a cross-site navigation: the console must still end up
    signed in (its session cookie is SameSite=Strict)."""
    import aiohttp

    from gateway.accounts.principal import Principal

    make_tenants(services, clock, "acme")
    admin = enrol(services, clock, role="admin", tenant="acme", email="a@acme.example")
    services.accounts.configure_oidc(
        Principal(admin.account_id, "admin", "acme", "test"), "acme",
        issuer=oidc_issuer, client_id="sluis-acme", client_secret="s3cret",
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        claims = {"email": admin.email, "email_verified": True}
        async with http.put(f"{oidc_issuer}/users/anna", json=claims) as r:
            assert r.status == 204
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(gateway + "/console/sign-in")
    await page.get_by_label("Organisation id in Sluis").fill("acme")
    await page.get_by_role("button", name="Continue to your organisation's sign-in").click()
    await page.wait_for_url(oidc_issuer + "/**")  # the console's page moves on by itself
    await page.locator('input[name="sub"]').fill("anna")
    await page.locator('form [type="submit"]').first.click()
    await page.wait_for_url(re.compile(r".*/console/t/acme$"))
    assert "Signed in as customer admin" in await page.content()
    await context.close()


async def test_connect_a_source_by_signing_in_at_the_vendor(
    browser: Any, gateway: str, services: Services, clock: Clock, aiohttp_server: Any
) -> None:
    """ "Connect with HubSpot": out to the vendor (another site: `localhost`, the console
    being on 127.0.0.1) and back, where the session cookie (SameSite=Strict) does not come
    along on the vendor's redirect; the console still ends on the connected page."""
    from connectors.emulator_kit import AUTHORIZATION
    from connectors.hubspot.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
    from connectors.hubspot.emulator import make_app as hubspot_emulator
    from gateway.accounts.principal import Principal
    from gateway.ledger.record import Acting
    from gateway.tenancy import connector_credentials, create_connector
    from mappings import bundled_mapping

    make_tenants(services, clock, "acme")
    admin = enrol(services, clock, role="admin", tenant="acme", email="a@acme.example")
    app = hubspot_emulator(people=5)
    server = await aiohttp_server(app, host="127.0.0.1")
    by = Acting(Principal(admin.account_id, "admin", "acme", "t").actor(), services.ledger("acme"))
    create_connector(
        services.store, services.box, tenant="acme", connector_id="crm", type_name="hubspot",
        base_url=str(server.make_url("")).rstrip("/"), now=clock(), by=by,
        credentials={"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET},
        settings={"authorize_url": f"http://localhost:{server.port}/oauth/authorize"},
        mapping_text=bundled_mapping("hubspot").read_text(),
    )  # fmt: skip
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, gateway, admin)
    await page.goto(gateway + "/console/t/acme/connectors/crm")
    assert "Not connected yet" in await page.content()
    form = page.locator("#connect-form")
    await fill_code_if_asked(page, admin, form)
    await form.get_by_role("button", name="Connect with HubSpot").click()
    await page.wait_for_url(re.compile(r".*/console/t/acme/connectors/crm\?connected=1$"))
    content = await page.content()
    assert "Connected: HubSpot gave Sluis access" in content, content
    stored = connector_credentials(services.box, services.store.get_connector("acme", "crm"))
    assert stored["refresh_token"] in app[AUTHORIZATION].refresh_tokens
    await context.close()
