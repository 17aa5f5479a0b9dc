"""SSRF guard: connectors reach only public addresses unless private sources are allowed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.emulator import EMULATOR_TOKEN, make_app
from connectors.base import SyncMode
from connectors.emulator_kit import CONTROL
from connectors.netguard import (
    REFUSED_NETWORKS,
    PrivateAddress,
    PublicOnlyConnector,
    PublicOnlyResolver,
    check_url,
    embedded_ipv4,
    is_public,
)
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.principals import system


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://localhost:8080/",
        "http://api.localhost/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://192.168.1.10/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "https:///nohost",
        # What the HTTP client normalises (IDNA/UTS-46) before it connects.
        "http://１２７.０.０.１/",
        "http://127。0。0。1/",
        "http://127．0．0．1/",
        "http://①②⑦.0.0.1/",
        "http://ＬＯＣＡＬＨＯＳＴ/",
        "http://[::ffff:7f00:1]/",
        # Old numeric spellings, trailing dots, userinfo and percent tricks.
        "http://0x7f.1/",
        "http://0x7f.0x0.0x0.0x1/",
        "http://0177.0.0.1/",
        "http://127.000.000.001/",
        "http://0/",
        "http://127.0.0.1./",
        "http://127.0.0.1../",
        "http://localhost./",
        "http://user:pw@127.0.0.1/",
        "http://example.com@127.0.0.1/",
        "http://%31%32%37.0.0.1/",
        "http://127.0.0.1%2e/",
        "http://999.0.0.1/",
        "http://1.2.3.4.5/",
        "http://[::1%25lo]/",
        "http://[fe80::1%25eth0]/",
        # IPv6 forms that carry a private IPv4 address.
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:7f00:1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[2002:7f00:1::1]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
    ],
)
def test_private_and_local_hosts_are_refused(url: str) -> None:
    with pytest.raises(PrivateAddress):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://12345.rest.afas.online/profitrestservices",
        "https://93.184.215.14/",
        "https://api.hubapi.com",
        "https://ＡＰＩ.hubapi.com/",
        "https://bücher.example/",
        "https://[2606:4700::1111]/",
        "https://[64:ff9b::5db8:d70e]/",
        "https://example.com./",
    ],
)
def test_public_hosts_pass(url: str) -> None:
    check_url(url)


#: Verdicts pinned by address, so they cannot drift with `ipaddress.is_global`, whose
#: answers differ between Python 3.11 and 3.13 for several of these.
VERDICTS = {
    "93.184.215.14": True,
    "8.8.8.8": True,
    "1.1.1.1": True,
    "2606:4700::1111": True,
    "2a00:1450:4001::200e": True,
    "192.31.196.1": True,
    "192.52.193.1": True,
    "0.0.0.0": False,
    "0.1.2.3": False,
    "10.1.2.3": False,
    "100.64.0.1": False,
    "100.127.255.254": False,
    "127.0.0.1": False,
    "127.255.255.254": False,
    "169.254.169.254": False,
    "172.16.0.1": False,
    "172.31.255.255": False,
    "192.0.0.1": False,
    "192.0.0.9": False,
    "192.0.0.10": False,
    "192.0.0.170": False,
    "192.0.2.1": False,
    "192.88.99.1": False,
    "192.168.0.1": False,
    "198.18.0.1": False,
    "198.51.100.1": False,
    "203.0.113.1": False,
    "224.0.0.1": False,
    "239.1.2.3": False,
    "240.0.0.1": False,
    "255.255.255.255": False,
    "::": False,
    "::1": False,
    "::ffff:127.0.0.1": False,
    "::ffff:8.8.8.8": True,
    "::127.0.0.1": False,
    "::8.8.8.8": True,
    "64:ff9b::10.0.0.1": False,
    "64:ff9b::8.8.8.8": True,
    "64:ff9b:1::8.8.8.8": False,
    "100::1": False,
    "2001::1": False,
    "2001:1::1": False,
    "2001:1::2": False,
    "2001:3::1": False,
    "2001:4:112::1": False,
    "2001:20::1": False,
    "2001:db8::1": False,
    "2002:808:808::1": True,
    "2002:c0a8:101::1": False,
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": True,
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": False,
    "3fff::1": False,
    "5f00::1": False,
    "fc00::1": False,
    "fd12:3456::1": False,
    "fe80::1": False,
    "fec0::1": False,
    "ff02::1": False,
    "4000::1": False,
    "fe80::1%eth0": False,
    "not an address": False,
}


@pytest.mark.parametrize(("address", "public"), VERDICTS.items())
def test_verdicts_come_from_the_table(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_transition_forms_are_unwrapped() -> None:
    import ipaddress

    def inner(text: str) -> list[str]:
        return [str(a) for a in embedded_ipv4(ipaddress.IPv6Address(text))]

    assert inner("::ffff:1.2.3.4") == ["1.2.3.4"]
    assert inner("::1.2.3.4") == ["1.2.3.4"]
    assert inner("64:ff9b::1.2.3.4") == ["1.2.3.4"]
    assert inner("2002:102:304::") == ["1.2.3.4"]
    # Teredo: the server, then the client with its bits inverted (RFC 4380).
    assert inner("2001:0:4136:e378:8000:63bf:3fff:fdd2") == ["65.54.227.120", "192.0.2.45"]
    assert inner("2606:4700::1111") == []
    assert all(net.network_address == net[0] for net in REFUSED_NETWORKS)


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
            create_tenant(
                services.store, services.box, "acme", "Acme", now, by=system(services, "acme")
            )
            for name, host in (("ip", "127.0.0.1"), ("name", "localhost")):
                url = str(server.make_url("/profitrestservices")).replace("127.0.0.1", host)
                create_connector(
                    services.store,
                    services.box,
                    tenant="acme",
                    by=system(services, "acme"),
                    connector_id=name,
                    type_name="afas",
                    base_url=url,
                    credentials={"token": EMULATOR_TOKEN},
                    mapping_text=bundled_mapping("afas").read_text(),
                    now=now,
                )
                grant(
                    services.store,
                    by=system(services, "acme"),
                    connector=name,
                    purpose="p",
                    now=now,
                )
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
        tricky = [f"http://{host}:9/x" for host in TRICKY_LOOPBACK]
        for url in (
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/",
            "http://localhost/",
            *tricky,
        ):
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


#: Spellings of the emulator's 127.0.0.1 that a check of the host as written let through.
TRICKY_LOOPBACK = (
    "１２７.０.０.１",
    "127。0。0。1",
    "①②⑦.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "source.example@127.0.0.1",
)


async def test_no_spelling_of_loopback_reaches_the_emulator(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """End to end: connectors stored with tricky spellings of the emulator's address (as if
    they got past creation) sync with `allow_private_sources` off; the emulator, which
    records every request, must never see one, credentials and all."""
    emulator = make_app(people=5)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    now = datetime.now(UTC)
    settings = Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=False)
    services = Services.open(settings)
    try:
        create_tenant(
            services.store, services.box, "acme", "Acme", now, by=system(services, "acme")
        )
        for n, host in enumerate(TRICKY_LOOPBACK):
            url = f"http://{host}:{server.port}/profitrestservices"
            create_connector(
                services.store,
                services.box,
                tenant="acme",
                by=system(services, "acme"),
                connector_id=f"c{n}",
                type_name="afas",
                base_url=url,
                credentials={"token": EMULATOR_TOKEN},
                mapping_text=bundled_mapping("afas").read_text(),
                now=now,
            )
            grant(
                services.store, by=system(services, "acme"), connector=f"c{n}", purpose="p", now=now
            )
            run = await services.engine.sync("acme", f"c{n}", SyncMode.FULL)
            assert run.status == "failed", host
            assert "allow_private_sources" in (run.error or ""), (host, run.error)
        assert emulator[CONTROL].log == []
    finally:
        services.close()


class _LyingResolver(PublicOnlyResolver):
    """Answers 127.0.0.1 for every name, unchecked: a rebinding or poisoned resolver."""

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[Any]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": 2,
                "proto": 0,
                "flags": 0,
            }
        ]


@pytest.mark.parametrize("pre_connect_check", [True, False])
async def test_every_connection_is_judged_by_its_peer(
    aiohttp_server: Any, pre_connect_check: bool
) -> None:
    """Whatever resolved the name, the connector refuses a private peer: before the socket
    connects and, should that check be bypassed, by the peer address once connected;
    either way no request is written."""
    import aiohttp

    emulator = make_app(people=5)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    options: dict[str, Any] = {} if pre_connect_check else {"socket_factory": None}
    connector = PublicOnlyConnector(resolver=_LyingResolver(), **options)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match="not public"):
            await session.get(f"http://hr.example:{server.port}/profitrestservices/metainfo")
    assert emulator[CONTROL].log == []
