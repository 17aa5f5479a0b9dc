"""Every console page through a real test server: what each role sees and may do, the
errors forms show, step-up, the connector version check, and input kept across sign-in."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta

import pyotp
import pytest

from connectors.afas.emulator import EMULATOR_TOKEN
from gateway.runtime.services import Services
from gateway.tenancy import connector_credentials
from tests.console.conftest import Clock, Console, World, check_accessible

NEW = "/console/t/acme/new-connector"
HR = "/console/t/acme/connectors/hr"


def connector_form(**overrides: str) -> dict[str, str]:
    return {
        "id": "hr",
        "type": "afas",
        "base_url": "http://127.0.0.1:9/profitrestservices",
        "credential_token": EMULATOR_TOKEN,
        "mapping": "afas",
        "mapping_toml": "",
        "interval": "3600",
        "delete_share": "0.2",
        "action": "save",
        **overrides,
    }


async def make_connector(console: Console, world: World) -> None:
    page = await console.submit(NEW, NEW, connector_form())
    assert page.status == 200, page.html
    assert "Connector created" in page.html


# --------------------------------------------------------------------------- pages


@pytest.mark.parametrize(
    "path",
    [
        "/console/t/acme",
        NEW,
        "/console/t/acme/authorisations",
        "/console/t/acme/consumers",
        "/console/t/acme/ledger",
        "/console/t/acme/accounts",
    ],
)
async def test_admin_pages_render_and_are_accessible(
    console: Console, world: World, path: str
) -> None:
    await console.sign_in(world.admin)
    page = await console.get(path)
    assert page.status == 200, page.html
    check_accessible(page.html)


async def test_operator_pages(console: Console, world: World, services: Services) -> None:
    await console.sign_in(world.operator)
    page = await console.get("/console/")
    assert page.status == 200 and "Acme BV" in page.html
    check_accessible(page.html)
    bad = await console.post(
        "/console/operator/tenants", {"csrf": page.csrf, "id": "Bad Id!", "name": "Initech"}
    )
    assert bad.status == 422 and 'value="Bad Id!"' in bad.html and 'value="Initech"' in bad.html
    made = await console.post(
        "/console/operator/tenants", {"csrf": page.csrf, "id": "initech", "name": "Initech"}
    )
    assert made.status == 200 and "Invite its first customer admin" in made.html
    invited = await console.post(
        "/console/operator/tenants/initech/invitations",
        {"csrf": made.csrf, "name": "Peter", "email": "peter@initech.example"},
    )
    assert invited.status == 200
    link = re.search(r'id="invitation-link"[^>]*>([^<]+)<', invited.html)
    assert link and "/console/invitations/" in link.group(1)
    # The operator sees no tenant's pages.
    assert (await console.get("/console/t/acme")).status == 403
    assert (await console.get("/console/t/acme/accounts")).status == 403


async def test_invitation_flow_in_the_console(
    console: Console, world: World, services: Services, clock: Clock
) -> None:
    await console.sign_in(world.admin)
    page = await console.get("/console/t/acme/accounts")
    invited = await console.post(
        "/console/t/acme/accounts",
        {"csrf": page.csrf, "name": "Nina", "email": "nina@acme.example", "role": "viewer"},
    )
    link = re.search(r'id="invitation-link"[^>]*>([^<]+)<', invited.html)
    assert link
    path = link.group(1).split("127.0.0.1", 1)[-1].split(":", 1)[-1]
    path = path[path.index("/console") :]
    form = await console.get(path)
    assert form.status == 200
    check_accessible(form.html)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', form.html)
    assert secret and "otpauth://" in form.html
    assert '<img src="data:image/svg+xml' in form.html
    totp = pyotp.TOTP(secret.group(1))
    mismatch = await console.post(
        path, {"password": "a long enough password 1", "password2": "other", "code": "000000"}
    )
    assert mismatch.status == 422 and "differ" in mismatch.html
    clock.next_code_step()
    done = await console.post(
        path,
        {
            "password": "a long enough password 1",
            "password2": "a long enough password 1",
            "code": totp.at(clock()),
        },
    )
    assert done.status == 200, done.html
    assert len(re.findall(r"<li><code>", done.html)) == 10
    again = await console.get(path)
    assert again.status == 410 and "not valid" in again.html


async def test_an_unknown_invitation_is_a_clear_page(console: Console) -> None:
    page = await console.get("/console/invitations/not-a-real-token")
    assert page.status == 410
    assert "Ask whoever invited you" in page.html


# --------------------------------------------------------------------------- refusals


ADMIN_ONLY_GETS = [NEW, "/console/t/acme/accounts"]
AUDIT_GETS = ["/console/t/acme/ledger", "/console/t/acme/authorisations",
              "/console/t/acme/ledger/export", "/console/t/acme/ledger/public-key",
              "/console/t/acme/ledger/checkpoint"]  # fmt: skip
READ_GETS = ["/console/t/acme", "/console/t/acme/consumers", HR, HR + "/runs"]


async def test_viewer_reads_status_only(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    await console.sign_in(world.viewer)
    for path in READ_GETS:
        assert (await console.get(path)).status == 200, path
    for path in ADMIN_ONLY_GETS + AUDIT_GETS:
        page = await console.get(path)
        assert page.status == 403, path
        assert "Your role or tenant does not allow it" in page.html
    page = await console.get(HR)
    assert "Authorise" not in page.html and "Sync now" not in page.html
    for action in (HR, HR + "/authorise", HR + "/sync", NEW, "/console/t/acme/consumers"):
        refused = await console.post(action, {"csrf": page.csrf, **connector_form()})
        assert refused.status == 403, action


async def test_auditor_reads_the_ledger_but_changes_nothing(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    await console.sign_in(world.auditor)
    for path in READ_GETS + AUDIT_GETS:
        assert (await console.get(path)).status == 200, path
    for path in ADMIN_ONLY_GETS:
        assert (await console.get(path)).status == 403, path
    page = await console.get(HR)
    for action in (HR, HR + "/authorise", HR + "/sync", NEW):
        refused = await console.post(
            action, {"csrf": page.csrf, "purpose": "x", "code": world.auditor.code()}
        )
        assert refused.status == 403, action


async def test_another_tenants_admin_is_refused_everywhere(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    await console.sign_in(world.other_admin)
    own = await console.get("/console/t/globex")
    assert own.status == 200
    for path in READ_GETS + AUDIT_GETS + ADMIN_ONLY_GETS:
        assert (await console.get(path)).status == 403, path
    for action in (HR, HR + "/authorise", HR + "/sync", NEW, "/console/t/acme/accounts"):
        refused = await console.post(action, {"csrf": own.csrf, **connector_form()})
        assert refused.status == 403, action


async def test_signed_out_pages_send_to_sign_in(console: Console) -> None:
    resp = await console.client.get("/console/t/acme", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/console/sign-in?next=/console/t/acme")


# --------------------------------------------------------------------------- connectors


async def test_connector_form_errors_keep_the_input(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    page = await console.submit(
        NEW,
        NEW,
        connector_form(
            id="Bad Id", base_url="ftp://x", interval="soon", delete_share="2", mapping="custom",
            mapping_toml="connector = 'afas'\n[fields.first_name]\n",
        ),
    )  # fmt: skip
    assert page.status == 422
    for name in ("id", "base_url", "interval", "delete_share", "mapping_toml"):
        assert f'id="e-{name}"' in page.html, name
    assert 'value="Bad Id"' in page.html and 'value="soon"' in page.html
    assert EMULATOR_TOKEN not in page.html  # credentials are write-only


async def test_preview_shows_what_leaves_before_creating(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    page = await console.submit(NEW, NEW, connector_form(action="preview"))
    assert page.status == 200
    assert "What leaves the gateway" in page.html and "user.contact.email" in page.html
    assert (await console.get(HR)).status == 404


async def test_create_then_a_token_change_needs_step_up(console: Console, world: World) -> None:
    """As in the API: creating needs no code (nothing is processed before an authorisation,
    which does); changing the credentials or the mapping afterwards does."""
    await console.sign_in(world.admin)
    await make_connector(console, world)
    page = await console.get(HR)
    form = {"csrf": page.csrf, "version": _version(page.html), "mapping": "",
            "interval": "3600", "delete_share": "0.2", "action": "save"}  # fmt: skip
    refused = await console.post(HR, {**form, "credential_token": "new-token-value"})
    assert refused.status == 422 and 'id="e-code"' in refused.html
    wrong = await console.post(HR, {**form, "credential_token": "new-token-value", "code": "1"})
    assert wrong.status == 422 and "wrong, expired or already used" in wrong.html
    done = await console.post(
        HR, {**form, "credential_token": "new-token-value", "code": world.admin.code()}
    )
    assert done.status == 200 and "Saved." in done.html
    assert "new-token-value" not in done.html


async def test_edit_preview_shows_the_mapping_diff(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    page = await console.get(HR)
    current = re.search(r'id="f-mapping_toml"[^>]*>([^<]*)</textarea>', page.html, re.S)
    assert current
    import html

    toml = html.unescape(current.group(1))
    smaller = re.sub(r"\[fields\.job_title\].*?(?=\n\[|\Z)", "", toml, flags=re.S)
    assert smaller != toml
    preview = await console.post(
        HR,
        {"csrf": page.csrf, "version": _version(page.html), "mapping": "custom",
         "mapping_toml": smaller, "interval": "3600", "delete_share": "0.2", "action": "preview"},
    )  # fmt: skip
    assert preview.status == 200
    assert "Fields removed" in preview.html and "job_title" in preview.html
    assert "waits for a new authorisation" in preview.html


def _version(html: str) -> str:
    found = re.search(r'name="version" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def test_a_save_based_on_an_old_version_is_refused(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    page = await console.get(HR)
    old = _version(page.html)
    form = {"csrf": page.csrf, "mapping": "", "delete_share": "0.2", "action": "save"}
    first = await console.post(HR, {**form, "version": old, "interval": "600"})
    assert first.status == 200 and "Saved." in first.html
    second = await console.post(HR, {**form, "version": old, "interval": "900"})
    assert second.status == 409
    assert "Someone else changed this connector" in second.html
    assert "the sync interval: now 600" in second.html
    assert 'value="900"' in second.html  # the user's input is kept
    assert services.store.get_connector("acme", "hr").interval_seconds == 600


async def test_authorise_sync_page_and_revoke_with_step_up(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    page = await console.get(HR)
    no_code = await console.post(HR + "/authorise", {"csrf": page.csrf, "purpose": ""})
    assert no_code.status == 422 and 'id="e-purpose"' in no_code.html
    granted = await console.post(
        HR + "/authorise",
        {"csrf": page.csrf, "purpose": "training records", "code": world.admin.code()},
    )
    assert granted.status == 200 and "Authorised." in granted.html
    [instruction] = services.store.list_instructions("acme", "hr")
    assert instruction.granted_by == world.admin.account_id
    assert "Test Person" in (await console.get("/console/t/acme/authorisations")).html
    revoked = await console.post(
        f"{HR}/instructions/{instruction.id}/revoke",
        {"csrf": page.csrf, "code": world.admin.code()},
    )
    assert revoked.status == 200 and "Revoked." in revoked.html
    assert services.store.get_instruction(instruction.id).revoked_at is not None


async def test_sync_without_authorisation_says_why(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    page = await console.get(HR)
    refused = await console.post(HR + "/sync", {"csrf": page.csrf})
    assert refused.status == 409 and "cannot start" in refused.html


# --------------------------------------------------------------------------- session ends mid-form


async def test_input_survives_an_expired_session(
    console: Console, world: World, services: Services
) -> None:
    home = await console.sign_in(world.admin)
    page = await console.get(NEW)
    value = console.client.session.cookie_jar.filter_cookies(console.client.make_url("/"))
    services.accounts.sign_out(value["sluis_session"].value)
    resp = await console.raw_post(
        NEW, {"csrf": page.csrf, **connector_form(id="payroll", base_url="https://hr.example")}
    )
    assert resp.status == 303
    location = resp.headers["Location"]
    assert location.startswith("/console/sign-in?next=" + NEW) and "resume=" in location
    sign_in = await console.get(location)
    assert "session has ended" in sign_in.html
    resume = re.search(r'name="resume" value="([^"]+)"', sign_in.html)
    assert resume
    back = await console.post(
        "/console/sign-in",
        {"email": world.admin.email, "password": world.admin.password,
         "code": world.admin.code(), "next": NEW, "resume": resume.group(1)},
    )  # fmt: skip
    assert back.status == 200
    assert 'value="payroll"' in back.html and 'value="https://hr.example"' in back.html
    assert EMULATOR_TOKEN not in back.html
    assert home.status == 200


# --------------------------------------------------------------------------- consumers, ledger


async def test_consumer_token_is_shown_once_and_revocable(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    page = await console.get("/console/t/acme/consumers")
    no_code = await console.post("/console/t/acme/consumers", {"csrf": page.csrf, "name": "lms"})
    assert no_code.status == 422 and 'value="lms"' in no_code.html
    made = await console.post(
        "/console/t/acme/consumers",
        {"csrf": page.csrf, "name": "lms", "code": world.admin.code()},
    )
    token = re.search(r'id="consumer-token">([^<]+)<', made.html)
    assert token and token.group(1).startswith("sluis_feed_")
    listing = await console.get("/console/t/acme/consumers")
    assert token.group(1) not in listing.html
    [consumer] = services.store.list_consumers("acme")
    revoked = await console.post(
        f"/console/t/acme/consumers/{consumer.id}/revoke", {"csrf": listing.csrf}
    )
    assert revoked.status == 200
    assert services.store.list_consumers("acme")[0].revoked_at is not None


async def test_ledger_page_and_downloads(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    await console.sign_in(world.auditor)
    page = await console.get("/console/t/acme/ledger")
    assert page.status == 200 and "Verified:" not in page.html  # only when asked
    page = await console.get("/console/t/acme/ledger?verify=1")
    assert page.status == 200 and "Verified:" in page.html
    export = await console.client.get("/console/t/acme/ledger/export")
    assert export.status == 200
    assert "attachment" in export.headers["Content-Disposition"]
    assert b'"sluis-ledger-export/2"' in await export.read()
    checkpoint = await console.client.get("/console/t/acme/ledger/checkpoint")
    assert checkpoint.status == 200 and "/acme\n" in (await checkpoint.text())
    key = await console.client.get("/console/t/acme/ledger/public-key")
    assert (await key.text()).startswith("-----BEGIN PUBLIC KEY-----")


async def test_admin_invites_and_disables_accounts(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    page = await console.get("/console/t/acme/accounts")
    bad = await console.post(
        "/console/t/acme/accounts",
        {"csrf": page.csrf, "name": "", "email": "not-an-email", "role": "overlord"},
    )
    assert bad.status == 422
    for name in ("name", "email", "role"):
        assert f'id="e-{name}"' in bad.html
    taken = await console.post(
        "/console/t/acme/accounts",
        {"csrf": page.csrf, "name": "Dup", "email": world.viewer.email, "role": "viewer"},
    )
    assert taken.status == 409
    disabled = await console.post(
        f"/console/t/acme/accounts/{world.viewer.account_id}/disable", {"csrf": page.csrf}
    )
    assert disabled.status == 200 and "Account disabled" in disabled.html
    other = await console.post(
        f"/console/t/acme/accounts/{world.other_admin.account_id}/disable", {"csrf": page.csrf}
    )
    assert other.status == 404


async def test_an_idle_session_ends_and_the_form_comes_back(
    console: Console, world: World, clock: Clock
) -> None:
    """The same, with the session ending as it does in life: idle for over 30 minutes."""
    await console.sign_in(world.admin)
    page = await console.get("/console/t/acme/consumers")
    clock.offset += timedelta(minutes=31)
    resp = await console.raw_post(
        "/console/t/acme/consumers", {"csrf": page.csrf, "name": "lms-two", "code": "123456"}
    )
    assert resp.status == 303 and "resume=" in resp.headers["Location"]
    sign_in = await console.get(resp.headers["Location"])
    resume = re.search(r'name="resume" value="([^"]+)"', sign_in.html)
    assert resume
    back = await console.post(
        "/console/sign-in",
        {"email": world.admin.email, "password": world.admin.password,
         "code": world.admin.code(), "next": "/console/t/acme/consumers",
         "resume": resume.group(1)},
    )  # fmt: skip
    assert back.status == 200 and 'value="lms-two"' in back.html
    assert "123456" not in back.html


async def test_api_tokens_shown_once_no_higher_than_the_role_and_revocable(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.viewer)
    page = await console.get("/console/tokens")
    assert page.status == 200
    check_accessible(page.html)
    assert '<option value="admin"' not in page.html  # a viewer cannot make an admin token
    higher = await console.post(
        "/console/tokens", {"csrf": page.csrf, "name": "ci", "role": "admin", "days": "30"}
    )
    assert higher.status == 422 and 'id="e-role"' in higher.html
    made = await console.post(
        "/console/tokens", {"csrf": page.csrf, "name": "ci", "role": "viewer", "days": "30"}
    )
    token = re.search(r'id="api-token">([^<]+)<', made.html)
    assert token and token.group(1).startswith("sluis_tok_")
    principal = services.accounts.bearer(token.group(1))
    assert principal is not None and principal.role == "viewer" and principal.tenant == "acme"
    listing = await console.get("/console/tokens")
    assert token.group(1) not in listing.html and ">ci<" in listing.html
    [record] = services.accounts.list_tokens(principal)
    revoked = await console.post(f"/console/tokens/{record.id}/revoke", {"csrf": listing.csrf})
    assert revoked.status == 200 and "Token revoked" in revoked.html
    assert services.accounts.bearer(token.group(1)) is None
    # Another tenant's admin cannot revoke it (nor see it).
    await console.sign_in(world.other_admin)
    other = await console.get("/console/tokens")
    assert ">ci<" not in other.html
    refused = await console.post(f"/console/tokens/{record.id}/revoke", {"csrf": other.csrf})
    assert refused.status == 404


async def test_a_personio_connector_takes_its_client_credentials(
    console: Console, world: World, services: Services
) -> None:
    """The form asks each type for its own credentials: Personio's client id and secret,
    both needed to create one and both or neither to change them; never shown again."""
    await console.sign_in(world.admin)
    form = await console.get(NEW)
    for name in ("credential_token", "credential_client_id", "credential_client_secret"):
        assert f'name="{name}"' in form.html, name
    assert "Personio: client ID of the API credential" in form.html
    check_accessible(form.html)
    personio = connector_form(
        id="people", type="personio", base_url="http://127.0.0.1:9", mapping="personio",
        credential_token="", credential_client_id="papi-client",
    )  # fmt: skip
    missing = await console.submit(NEW, NEW, personio)
    assert missing.status == 422 and 'id="e-credential_client_secret"' in missing.html
    assert 'id="e-credential_token"' not in missing.html
    made = await console.submit(NEW, NEW, {**personio, "credential_client_secret": "s3cret-value"})
    assert made.status == 200 and "Connector created" in made.html
    record = services.store.get_connector("acme", "people")
    assert connector_credentials(services.box, record) == {
        "client_id": "papi-client", "client_secret": "s3cret-value",
    }  # fmt: skip
    page = await console.get("/console/t/acme/connectors/people")
    assert 'name="credential_client_secret"' in page.html
    assert 'name="credential_token"' not in page.html and "s3cret-value" not in page.html
    edit = {"csrf": page.csrf, "version": _version(page.html), "mapping": "", "interval": "3600",
            "delete_share": "0.2", "action": "save", "code": world.admin.code()}  # fmt: skip
    half = await console.post(
        "/console/t/acme/connectors/people", {**edit, "credential_client_secret": "rotated"}
    )
    assert half.status == 422 and 'id="e-credential_client_id"' in half.html


async def test_a_loket_connector_takes_its_oauth_grant(
    console: Console, world: World, services: Services
) -> None:
    """A Loket source is created with the app's client id and secret alone (refusing it
    without the secret, naming the field, echoing nothing); nobody types a Loket refresh
    token: the connector's page offers "Connect with Loket" until an admin has signed in
    there."""
    await console.sign_in(world.admin)
    form = await console.get(NEW)
    assert "Loket: refresh token" not in form.html
    check_accessible(form.html)
    loket = connector_form(
        id="payroll", type="loket", base_url="https://api.loket.nl/v2", mapping="loket",
        credential_token="", credential_client_id="app-id",
    )  # fmt: skip
    missing = await console.submit(NEW, NEW, loket)
    assert missing.status == 422 and 'id="e-credential_client_secret"' in missing.html
    assert 'id="e-credential_refresh_token"' not in missing.html
    made = await console.submit(NEW, NEW, {**loket, "credential_client_secret": "s3cret"})
    assert made.status == 200 and "Connector created" in made.html
    record = services.store.get_connector("acme", "payroll")
    assert connector_credentials(services.box, record) == {
        "client_id": "app-id", "client_secret": "s3cret",
    }  # fmt: skip
    assert b"s3cret" not in record.sealed_credentials
    page = await console.get("/console/t/acme/connectors/payroll")
    assert "Connect with Loket" in page.html and "Not connected yet" in page.html
    assert "s3cret" not in page.html


async def test_an_nmbrs_connector_takes_its_rest_credentials(
    console: Console, world: World, services: Services
) -> None:
    """Nmbrs's REST credentials (app client, subscription key) each have a labelled field
    and are sealed together; none is shown again. The refresh token is not typed: a
    refresh token typed into the form (Loket's field) is not kept for Nmbrs, whose page
    offers "Connect with Nmbrs" instead."""
    from gateway.tenancy import connector_credentials

    await console.sign_in(world.admin)
    page = await console.get(NEW)
    for name in ("subscription_key", "domain"):
        assert f'name="credential_{name}"' in page.html, name
    assert "Nmbrs (REST): subscription key of the developer portal product" in page.html
    check_accessible(page.html)
    given = {"client_id": "app", "client_secret": "s3cret-1", "subscription_key": "k" * 32}
    form = connector_form(
        id="payroll", type="nmbrs", base_url="https://api.nmbrsapp.com", mapping="nmbrs",
        credential_token="", credential_refresh_token="r-1",
        **{f"credential_{k}": v for k, v in given.items()},
    )  # fmt: skip
    made = await console.submit(NEW, NEW, form)
    assert made.status == 200 and "Connector created" in made.html
    record = services.store.get_connector("acme", "payroll")
    assert connector_credentials(services.box, record) == given
    shown = await console.get("/console/t/acme/connectors/payroll")
    assert "s3cret-1" not in shown.html and "k" * 32 not in shown.html
    assert "Connect with Nmbrs" in shown.html and "Not connected yet" in shown.html


async def test_a_salesforce_connector_asks_for_its_connected_app(
    console: Console, world: World, services: Services
) -> None:
    """The form asks a Salesforce source for its connected app's key and secret, refuses
    it without the secret (naming the field, echoing nothing), and seals both."""
    from connectors.salesforce.emulator import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
    from gateway.tenancy import connector_credentials

    await console.sign_in(world.admin)
    page = await console.get(NEW)
    assert 'name="credential_client_id"' in page.html
    assert 'name="credential_client_secret"' in page.html
    form = connector_form(
        id="crm", type="salesforce", base_url="https://acme.my.salesforce.com",
        mapping="salesforce", credential_token="", credential_client_id=EMULATOR_CLIENT_ID,
    )  # fmt: skip
    refused = await console.submit(NEW, NEW, form)
    assert refused.status == 422 and 'id="e-credential_client_secret"' in refused.html
    made = await console.submit(
        NEW, NEW, {**form, "credential_client_secret": EMULATOR_CLIENT_SECRET}
    )
    assert made.status == 200 and "Connector created" in made.html
    assert EMULATOR_CLIENT_SECRET not in made.html
    record = services.store.get_connector("acme", "crm")
    assert connector_credentials(services.box, record) == {
        "client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("type_name", "base_url", "tenant_name"),
    [
        ("dynamics", "https://acme.crm4.dynamics.com", "EMULATOR_TENANT"),
        ("entra", "https://graph.microsoft.com/v1.0", "EMULATOR_TENANT_ID"),
    ],
)
async def test_an_app_registration_source_asks_for_its_three_values(
    console: Console,
    world: World,
    services: Services,
    type_name: str,
    base_url: str,
    tenant_name: str,
) -> None:
    """The form asks a Dynamics 365 or Entra ID source for its app registration's directory
    (tenant) id, client id and secret, refuses it without the tenant (naming the field,
    echoing nothing), and seals all three."""
    emulator = importlib.import_module(f"connectors.{type_name}.emulator")
    client_id, secret = emulator.EMULATOR_CLIENT_ID, emulator.EMULATOR_CLIENT_SECRET
    tenant = getattr(emulator, tenant_name)

    await console.sign_in(world.admin)
    page = await console.get(NEW)
    assert 'name="credential_tenant_id"' in page.html
    assert "Entra ID: directory (tenant) ID of the app registration" in page.html
    check_accessible(page.html)
    form = connector_form(
        id="crm", type=type_name, base_url=base_url, mapping=type_name, credential_token="",
        credential_client_id=client_id, credential_client_secret=secret,
    )  # fmt: skip
    refused = await console.submit(NEW, NEW, form)
    assert refused.status == 422 and 'id="e-credential_tenant_id"' in refused.html
    assert secret not in refused.html
    made = await console.submit(NEW, NEW, {**form, "credential_tenant_id": tenant})
    assert made.status == 200 and "Connector created" in made.html
    assert secret not in made.html
    record = services.store.get_connector("acme", "crm")
    assert connector_credentials(services.box, record) == {
        "tenant_id": tenant, "client_id": client_id, "client_secret": secret,
    }  # fmt: skip
