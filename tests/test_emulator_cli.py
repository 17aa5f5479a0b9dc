"""`sluis emulator`: a standalone emulator, started as a real process and used over HTTP.

The tests read the base URL and token it prints, talk to the emulated API with them, steer
it through its `/_emulator` control surface, point a real gateway sync at it, and stop it
with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from connectors.afas.emulator import token_header
from connectors.base import SyncMode
from connectors.oauth import code_challenge, new_verifier
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.principals import system

REPO = Path(__file__).resolve().parents[1]


class Emulator:
    def __init__(self, proc: asyncio.subprocess.Process, printed: dict[str, str]) -> None:
        self.proc = proc
        self.printed = printed
        self.base_url = printed["base_url"]
        self.token = printed.get("token", "")
        self.control = printed["control"]


async def start(vendor: str, *args: str) -> Emulator:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli.main",
        "emulator",
        vendor,
        "--port",
        "0",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    printed: dict[str, str] = {}
    while "control" not in printed:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, "the emulator ended before printing its address"
        key, sep, value = line.partition(": ")
        if sep:
            printed[key] = value.strip()
    return Emulator(proc, printed)


async def stop(emulator: Emulator) -> tuple[int, str]:
    emulator.proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(emulator.proc.communicate(), 30)
    return emulator.proc.returncode or 0, err.decode()


@pytest.fixture
async def afas() -> AsyncIterator[Emulator]:
    emulator = await start("afas", "--employees", "40", "--seed", "11")
    yield emulator
    if emulator.proc.returncode is None:
        await stop(emulator)


async def test_afas_standalone_serves_its_api_and_control_surface(afas: Emulator) -> None:
    rows_url = f"{afas.base_url}/connectors/{afas.printed['settings'].split('=')[1]}"
    auth = {"Authorization": token_header(afas.token)}
    async with aiohttp.ClientSession() as http:
        async with http.get(rows_url, params={"take": "-1"}, headers=auth) as r:
            assert r.status == 200
            rows = (await r.json())["rows"]
        assert len(rows) == 40
        async with http.get(rows_url, params={"take": "-1"}) as r:
            assert r.status == 401
        async with http.get(afas.control) as r:
            assert await r.json() == {"vendor": "afas", "people": 40, "queued_faults": 0}

        async with http.post(
            f"{afas.control}/faults", json={"faults": [{"kind": "error", "status": 503}]}
        ) as r:
            assert r.status == 200 and (await r.json())["queued_faults"] == 1
        async with http.get(rows_url, headers=auth) as r:
            assert r.status == 503
        async with http.get(rows_url, headers=auth) as r:
            assert r.status == 200

        async with http.post(f"{afas.control}/people/touch", json={"count": 3}) as r:
            touched = (await r.json())["changed"]
        async with http.post(f"{afas.control}/people/retire", json={"count": 2}) as r:
            retired = (await r.json())["changed"]
        assert len(touched) == 3 and len(retired) == 2
        async with http.get(rows_url, params={"take": "-1"}, headers=auth) as r:
            after = {row["Medewerker"]: row for row in (await r.json())["rows"]}
        assert all(after[n]["Datum_uit_dienst"] for n in retired)

        async with http.get(f"{afas.control}/requests") as r:
            log = (await r.json())["requests"]
        assert [e["status"] for e in log[:4]] == [200, 401, 503, 200]

        for bad in (
            {"faults": [{"kind": "explode"}]},
            {"faults": [{"kind": "error", "status": "503"}]},
            {"faults": [{"kind": "error", "colour": "red"}]},
            {"faults": []},
        ):
            async with http.post(f"{afas.control}/faults", json=bad) as r:
                assert r.status == 400 and "error" in await r.json()
        async with http.post(f"{afas.control}/people/retire", json={"count": 10_000}) as r:
            assert r.status == 400
        async with http.post(f"{afas.control}/people/touch", data=b"{") as r:
            assert r.status == 400
    code, err = await stop(afas)
    assert code == 0 and "stopped" in err and "Traceback" not in err


async def test_a_gateway_sync_runs_against_the_standalone_emulator(
    afas: Emulator, tmp_path: Path
) -> None:
    services = Services.open(
        Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    try:
        create_tenant(
            services.store, services.box, "acme", "Acme", now, by=system(services, "acme")
        )
        create_connector(
            services.store,
            services.box,
            tenant="acme",
            by=system(services, "acme"),
            connector_id="hr",
            type_name="afas",
            base_url=afas.base_url,
            credentials={"token": afas.token},
            now=now,
            mapping_text=bundled_mapping("afas").read_text(),
        )
        grant(services.store, by=system(services, "acme"), connector="hr", purpose="p", now=now)
        run = await services.engine.sync("acme", "hr", SyncMode.FULL)
        assert run.status == "succeeded", run.error
        assert run.counts["fetched"] == 40
    finally:
        services.close()


async def test_hubspot_standalone(tmp_path: Path) -> None:
    hubspot = await start("hubspot", "--employees", "25")
    try:
        url = f"{hubspot.base_url}/crm/v3/objects/contacts"
        auth = {"Authorization": f"Bearer {hubspot.token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(url, params={"limit": "100"}, headers=auth) as r:
                assert r.status == 200
                active = len((await r.json())["results"])
            async with http.post(f"{hubspot.control}/people/retire", json={"count": 2}) as r:
                assert r.status == 200, await r.text()
            async with http.get(url, params={"limit": "100"}, headers=auth) as r:
                assert len((await r.json())["results"]) == active - 2
            async with http.put(
                f"{hubspot.control}/rate_limit", json={"requests": 1, "window": 60}
            ) as r:
                assert r.status == 200
            statuses = []
            for _ in range(2):
                async with http.get(url, headers=auth) as r:
                    statuses.append(r.status)
            assert statuses == [200, 429]
    finally:
        code, err = await stop(hubspot)
    assert code == 0, err


async def test_personio_standalone_prints_client_credentials(tmp_path: Path) -> None:
    personio = await start("personio", "--employees", "30")
    try:
        login = {k: personio.printed[k] for k in ("client_id", "client_secret")}
        url = f"{personio.base_url}/v1/company/employees"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{personio.base_url}/v1/auth", json=login) as r:
                assert r.status == 200
                token = (await r.json())["data"]["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{personio.control}/people/retire", json={"count": 2}) as r:
                retired = set((await r.json())["changed"])
            async with http.get(url, params={"limit": "100"}, headers=auth) as r:
                people = (await r.json())["data"]
            assert len(people) == 30
            gone = [p for p in people if str(p["attributes"]["id"]["value"]) in retired]
            assert [p["attributes"]["status"]["value"] for p in gone] == ["inactive"] * 2
        services = Services.open(
            Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
        )
        now = datetime.now(UTC)
        try:
            by = system(services, "acme")
            create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
            create_connector(
                services.store, services.box, tenant="acme", by=by, connector_id="hr",
                type_name="personio", base_url=personio.base_url, credentials=login, now=now,
                mapping_text=bundled_mapping("personio").read_text(),
            )  # fmt: skip
            grant(services.store, by=by, connector="hr", purpose="p", now=now)
            run = await services.engine.sync("acme", "hr", SyncMode.FULL)
            assert run.status == "succeeded", run.error
            assert run.counts["fetched"] == 30
        finally:
            services.close()
    finally:
        await stop(personio)


async def test_loket_standalone_prints_its_oauth_grant_and_a_gateway_syncs_twice(
    tmp_path: Path,
) -> None:
    """The printed refresh token works once (Loket's emulator rotates it): the gateway's
    second run uses the one it kept from the first."""
    loket = await start("loket", "--employees", "30")
    try:
        login = {k: loket.printed[k] for k in ("client_id", "client_secret", "refresh_token")}
        assert loket.base_url.endswith("/v2")
        # Loket's consent screen and token endpoint, on the emulator's root ("Connect").
        root = loket.base_url.removesuffix("/v2")
        settings = dict(pair.split("=", 1) for pair in loket.printed["settings"].split(", "))
        assert settings == {"authorize_url": f"{root}/authorize", "token_url": f"{root}/token"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{loket.control}/people/retire", json={"count": 2}) as r,
        ):
            assert len((await r.json())["changed"]) == 2
        services = Services.open(
            Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
        )
        now = datetime.now(UTC)
        try:
            by = system(services, "acme")
            create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
            create_connector(
                services.store, services.box, tenant="acme", by=by, connector_id="payroll",
                type_name="loket", base_url=loket.base_url, credentials=login, now=now,
                mapping_text=bundled_mapping("loket").read_text(), settings=settings,
            )  # fmt: skip
            grant(services.store, by=by, connector="payroll", purpose="p", now=now)
            first = await services.engine.sync("acme", "payroll", SyncMode.FULL)
            second = await services.engine.sync("acme", "payroll", SyncMode.FULL)
            assert first.status == second.status == "succeeded", (first.error, second.error)
            assert first.counts["fetched"] == second.counts["fetched"] == 30
        finally:
            services.close()
    finally:
        await stop(loket)


async def test_nmbrs_standalone_serves_rest_and_soap(tmp_path: Path) -> None:
    nmbrs = await start("nmbrs", "--employees", "20")
    try:
        printed = nmbrs.printed
        form = {k: printed[k] for k in ("client_id", "client_secret", "refresh_token")}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{nmbrs.base_url}/connect/token", data={**form, "grant_type": "refresh_token"}
            ) as r:
                assert r.status == 200
                answer = await r.json()
            assert answer["refresh_token"] != printed["refresh_token"]  # rotated
            headers = {
                "Authorization": f"Bearer {answer['access_token']}",
                "X-Subscription-Key": printed["subscription_key"],
            }
            async with http.get(f"{nmbrs.base_url}/api/companies", headers=headers) as r:
                assert (await r.json())["pagination"]["totalRecords"] == 1
            async with http.get(f"{nmbrs.base_url}/soap/v3/EmployeeService.asmx?WSDL") as r:
                assert "PersonalInfo_GetAll_AllEmployeesByCompany" in await r.text()
            # "Connect with Nmbrs" against it: the identity server is the emulator itself.
            assert printed["settings"] == f"identity_url={nmbrs.base_url}"
            verifier = new_verifier()
            consent = {
                "response_type": "code", "client_id": printed["client_id"], "state": "s1",
                "redirect_uri": "http://127.0.0.1:9/console/connect/callback",
                "code_challenge": code_challenge(verifier), "code_challenge_method": "S256",
            }  # fmt: skip
            async with http.get(
                f"{nmbrs.base_url}/connect/authorize", params=consent, allow_redirects=False
            ) as r:
                assert r.status == 302
                code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
            exchange = {
                **form, "grant_type": "authorization_code", "code": code,
                "redirect_uri": consent["redirect_uri"], "code_verifier": verifier,
            }  # fmt: skip
            async with http.post(f"{nmbrs.base_url}/connect/token", data=exchange) as r:
                assert r.status == 200 and (await r.json())["refresh_token"]
        services = Services.open(
            Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
        )
        now = datetime.now(UTC)
        try:
            by = system(services, "acme")
            create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
            soap = {k: printed[k] for k in ("username", "token", "domain")}
            create_connector(
                services.store, services.box, tenant="acme", by=by, connector_id="payroll",
                type_name="nmbrs", base_url=f"{nmbrs.base_url}/soap/v3", credentials=soap,
                settings={"api": "soap"}, now=now,
                mapping_text=bundled_mapping("nmbrs").read_text(),
            )  # fmt: skip
            grant(services.store, by=by, connector="payroll", purpose="p", now=now)
            run = await services.engine.sync("acme", "payroll", SyncMode.FULL)
            assert run.status == "succeeded", run.error
            assert run.counts["fetched"] == 20
        finally:
            services.close()
    finally:
        await stop(nmbrs)


async def test_salesforce_standalone_prints_its_connected_app_and_a_gateway_syncs(
    tmp_path: Path,
) -> None:
    salesforce = await start("salesforce", "--employees", "30")
    credentials = {k: salesforce.printed[k] for k in ("client_id", "client_secret")}
    services = Services.open(
        Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    try:
        retire = f"{salesforce.control}/people/retire"
        async with aiohttp.ClientSession() as http, http.post(retire, json={"count": 4}) as r:
            assert r.status == 200, await r.text()
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="crm",
            type_name="salesforce", base_url=salesforce.base_url, credentials=credentials,
            now=now, mapping_text=bundled_mapping("salesforce").read_text(),
        )  # fmt: skip
        grant(services.store, by=by, connector="crm", purpose="p", now=now)
        run = await services.engine.sync("acme", "crm", SyncMode.FULL)
        assert run.status == "succeeded", run.error
        assert run.counts["fetched"] == 26
    finally:
        services.close()
        code, err = await stop(salesforce)
    assert code == 0, err


async def test_dynamics_standalone_prints_its_app_registration_and_a_gateway_syncs(
    tmp_path: Path,
) -> None:
    dynamics = await start("dynamics", "--employees", "30")
    credentials = {k: dynamics.printed[k] for k in ("tenant_id", "client_id", "client_secret")}
    # The token endpoint is the emulator's own: the printed settings say so.
    assert dynamics.printed["settings"] == f"authority={dynamics.base_url}"
    services = Services.open(
        Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    try:
        retire = f"{dynamics.control}/people/retire"
        async with aiohttp.ClientSession() as http, http.post(retire, json={"count": 4}) as r:
            assert r.status == 200, await r.text()
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="crm",
            type_name="dynamics", base_url=dynamics.base_url, credentials=credentials,
            settings={"authority": dynamics.base_url}, now=now,
            mapping_text=bundled_mapping("dynamics").read_text(),
        )  # fmt: skip
        grant(services.store, by=by, connector="crm", purpose="p", now=now)
        run = await services.engine.sync("acme", "crm", SyncMode.FULL)
        assert run.status == "succeeded", run.error
        assert run.counts["fetched"] == 30
    finally:
        services.close()
        code, err = await stop(dynamics)
    assert code == 0, err


@pytest.mark.parametrize(
    "args",
    [["afas", "--employees", "-1"], ["afas", "--port", "70000"], ["workday"], ["afas", "--x"]],
)
async def test_bad_arguments_exit_2(args: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli.main",
        "emulator",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"Traceback" not in err


async def test_a_busy_port_is_a_clear_error(afas: Emulator) -> None:
    port = afas.base_url.split(":")[2].split("/")[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli.main",
        "emulator",
        "afas",
        "--port",
        port,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"cannot listen" in err and b"Traceback" not in err


async def test_a_malformed_request_gets_a_problem_that_quotes_nothing(afas: Emulator) -> None:
    """The same connection layer as `sluis serve`: no echo of the request, no traceback."""
    port = int(afas.base_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nAuthorization: Bearer " + b"s3cr3t" * 4000 + b"\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    code, err = await stop(afas)
    assert code == 0
    assert b"application/problem+json" in reply and b"s3cr3t" not in reply
    assert "Traceback" not in err and "s3cr3t" not in err
    assert err.count("refused a malformed HTTP request") == 1


async def test_entra_standalone_prints_its_app_registration_and_a_gateway_syncs(
    tmp_path: Path,
) -> None:
    entra = await start("entra", "--employees", "30")
    try:
        login = {k: entra.printed[k] for k in ("tenant_id", "client_id", "client_secret")}
        assert entra.base_url.endswith("/v1.0")
        root = entra.base_url.removesuffix("/v1.0")
        form = {
            "grant_type": "client_credentials", "client_id": login["client_id"],
            "client_secret": login["client_secret"], "scope": f"{root}/.default",
        }  # fmt: skip
        async with aiohttp.ClientSession() as http:
            token_url = f"{root}/{login['tenant_id']}/oauth2/v2.0/token"
            async with http.post(token_url, data=form) as r:
                assert r.status == 200
                token = (await r.json())["access_token"]
            async with http.post(f"{entra.control}/people/retire", json={"count": 2}) as r:
                retired = set((await r.json())["changed"])
            auth = {"Authorization": f"Bearer {token}"}
            select = {"$select": "id,accountEnabled"}
            async with http.get(f"{entra.base_url}/users/delta", params=select, headers=auth) as r:
                users = (await r.json())["value"]
        assert len(users) == 30
        assert sorted(u["accountEnabled"] for u in users if u["id"] in retired) == [False] * 2
        services = Services.open(
            Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True)
        )
        now = datetime.now(UTC)
        try:
            by = system(services, "acme")
            create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
            create_connector(
                services.store, services.box, tenant="acme", by=by, connector_id="idp",
                type_name="entra", base_url=entra.base_url, credentials=login, now=now,
                mapping_text=bundled_mapping("entra").read_text(),
            )  # fmt: skip
            grant(services.store, by=by, connector="idp", purpose="p", now=now)
            run = await services.engine.sync("acme", "idp", SyncMode.FULL)
            assert run.status == "succeeded", run.error
            assert run.counts["fetched"] == 30
        finally:
            services.close()
    finally:
        await stop(entra)
