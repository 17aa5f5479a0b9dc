"""SSRF guard: connectors reach only public addresses unless private sources are allowed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.emulator import EMULATOR_TOKEN, make_app
from connectors.base import SyncMode
from connectors.emulator_kit import CONTROL
from connectors.netguard import PrivateAddress, PublicOnlyResolver, check_url, is_public
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x", "http://127.1/", "http://2130706433/", "http://0x7f000001/",
        "http://localhost:8080/", "http://api.localhost/", "http://[::1]/",
        "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/", "http://192.168.1.10/", "http://172.16.0.1/", "http://100.64.0.1/",
        "http://[fe80::1]/", "http://[fc00::1]/", "http://0.0.0.0/", "http://224.0.0.1/",
        "https:///nohost",
    ],
)  # fmt: skip
def test_private_and_local_hosts_are_refused(url: str) -> None:
    with pytest.raises(PrivateAddress):
        check_url(url)


@pytest.mark.parametrize(
    "url", ["https://12345.rest.afas.online/profitrestservices", "https://93.184.215.14/"]
)
def test_public_hosts_pass(url: str) -> None:
    check_url(url)


def test_is_public() -> None:
    assert is_public("93.184.215.14") and is_public("2606:4700::1111")
    assert not is_public("127.0.0.1") and not is_public("::ffff:10.0.0.1")
    assert not is_public("not an address")


async def test_the_resolver_refuses_a_name_that_resolves_inward() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(OSError, match="not public"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_a_sync_never_reaches_a_private_source_unless_allowed(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    emulator = make_app(people=20)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    now = datetime.now(UTC)
    for allowed in (False, True):
        settings = Settings(
            data_dir=tmp_path / str(allowed), admin_token="g" * 32, allow_private_sources=allowed
        )
        services = Services.open(settings)
        try:
            create_tenant(services.store, services.box, "acme", "Acme", now)
            for name, host in (("ip", "127.0.0.1"), ("name", "localhost")):
                url = str(server.make_url("/profitrestservices")).replace("127.0.0.1", host)
                create_connector(
                    services.store, services.box, tenant="acme", connector_id=name,
                    type_name="afas", base_url=url, credentials={"token": EMULATOR_TOKEN},
                    mapping_text=bundled_mapping("afas").read_text(), now=now,
                )  # fmt: skip
                grant(services.store, tenant="acme", connector=name, granted_by="a",
                      purpose="p", now=now)  # fmt: skip
                before = len(emulator[CONTROL].log)
                run = await services.engine.sync("acme", name, SyncMode.FULL)
                if allowed:
                    assert run.status == "succeeded", run.error
                else:
                    assert run.status == "failed"
                    assert "allow_private_sources" in (run.error or "")
                    assert len(emulator[CONTROL].log) == before
        finally:
            services.close()


async def test_the_admin_api_refuses_a_private_base_url(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    from gateway.api.app import make_app as gateway_app
    from tests.api.conftest import ADMIN_TOKEN, CONNECTOR, Api, make_tenant

    services = Services.open(Settings(data_dir=tmp_path, admin_token=ADMIN_TOKEN))
    try:
        api = Api(await aiohttp_client(gateway_app(services)))
        await make_tenant(api)
        for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/", "http://localhost/"):
            reply = await api.post(
                "/admin/v1/tenants/acme/connectors", {**CONNECTOR, "base_url": url}
            )
            assert reply.status == 422, reply.body
            assert reply.body["errors"][0]["field"] == "base_url"
        reply = await api.post(
            "/admin/v1/tenants/acme/connectors",
            {**CONNECTOR, "base_url": "https://12345.rest.afas.online/profitrestservices"},
        )
        assert reply.status == 201, reply.body
    finally:
        services.close()
