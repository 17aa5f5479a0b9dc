"""The console's connector form for an SFTP source: its credentials (a user name, a key or
a password, the host key to pin) and its sftp:// address, from the create form to the
sealed credentials the sync engine opens."""

from __future__ import annotations

from connectors.sftp.emulator import EMULATOR_CREDENTIALS, HOST_KEY_FINGERPRINT
from gateway.runtime.services import Services
from gateway.tenancy import connector_credentials
from tests.console.conftest import Console, World, check_accessible

NEW = "/console/t/acme/new-connector"


def sftp_form(**overrides: str) -> dict[str, str]:
    return {
        "id": "hr-export",
        "type": "sftp",
        "base_url": "sftp://127.0.0.1:2222/exports",
        "credential_username": EMULATOR_CREDENTIALS["username"],
        "credential_private_key": EMULATOR_CREDENTIALS["private_key"].replace("\n", "\r\n"),
        "credential_host_key": HOST_KEY_FINGERPRINT,
        "mapping": "sftp",
        "mapping_toml": "",
        "interval": "3600",
        "delete_share": "0.2",
        "action": "save",
        **overrides,
    }


async def test_the_create_form_offers_sftp_and_its_credentials(
    console: Console, world: World
) -> None:
    await console.sign_in(world.admin)
    page = await console.get(NEW)
    assert page.status == 200
    check_accessible(page.html)
    assert '<option value="sftp"' in page.html
    for name in ("username", "private_key", "password", "passphrase", "host_key"):
        assert f'name="credential_{name}"' in page.html
    assert '<textarea id="f-credential_private_key"' in page.html


async def test_an_sftp_connector_needs_its_pin_and_an_sftp_address(
    console: Console, world: World
) -> None:
    await console.sign_in(world.admin)
    unpinned = await console.submit(NEW, NEW, sftp_form(credential_host_key=""))
    assert unpinned.status == 422
    assert "host_key is required" in unpinned.html
    assert EMULATOR_CREDENTIALS["private_key"].splitlines()[1] not in unpinned.html
    http = await console.submit(NEW, NEW, sftp_form(base_url="https://hr.example/exports"))
    assert http.status == 422
    assert 'id="e-base_url"' in http.html


async def test_an_sftp_connector_is_created_with_sealed_credentials(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    page = await console.submit(NEW, NEW, sftp_form())
    assert page.status == 200, page.html
    assert "Connector created" in page.html
    assert EMULATOR_CREDENTIALS["private_key"].splitlines()[1] not in page.html
    record = services.store.get_connector("acme", "hr-export")
    assert record.base_url == "sftp://127.0.0.1:2222/exports"
    sealed = connector_credentials(services.box, record)
    assert sealed["username"] == EMULATOR_CREDENTIALS["username"]
    assert sealed["host_key"] == HOST_KEY_FINGERPRINT
    assert sealed["private_key"].strip() == EMULATOR_CREDENTIALS["private_key"].strip()
    assert "\r" not in sealed["private_key"]
