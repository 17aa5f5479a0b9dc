"""Nmbrs: the REST API with a rotating refresh token, and the legacy SOAP API through zeep.

Everything runs over real HTTP against the emulator on 127.0.0.1. What matters most for
privacy: Nmbrs's personal info arrives whole (BSN, birth date, private contact details),
in SOAP without any field selection, and must not get past the connector's normalisation;
a rotated refresh token is stored sealed by the gateway before it is used; every host,
the identity server included, is held to the address rules.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.emulator_kit import AUTHORIZATION, CONTROL, Fault
from connectors.netguard import PublicOnlyConnector
from connectors.nmbrs.client import FIELDS, NmbrsConnector, authorization_server
from connectors.nmbrs.emulator import (
    ACCOUNT,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_DOMAIN,
    EMULATOR_REFRESH_TOKEN,
    EMULATOR_SUBSCRIPTION_KEY,
    EMULATOR_TOKEN,
    EMULATOR_USERNAME,
    make_app,
)
from connectors.pacing import Window
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import connector_credentials, create_connector, create_tenant
from mappings import bundled_mapping
from tests.contract.suite import leaked, sync
from tests.principals import system

KEY = b"nmbrs tests: a 32-byte key!!!!!!"
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)
REST = {
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
    "refresh_token": EMULATOR_REFRESH_TOKEN,
    "subscription_key": EMULATOR_SUBSCRIPTION_KEY,
}
SOAP = {"username": EMULATOR_USERNAME, "token": EMULATOR_TOKEN, "domain": EMULATOR_DOMAIN}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def serve(aiohttp_server: Any) -> Callable[..., Any]:
    async def start(**options: Any) -> tuple[web.Application, str]:
        app = make_app(**options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return app, str(server.make_url("")).rstrip("/")

    return start


def connector(
    base: str,
    session: aiohttp.ClientSession,
    app: web.Application | None = None,
    *,
    retry: RetryPolicy = FAST,
    credentials: dict[str, str] | None = None,
    **settings: Any,
) -> NmbrsConnector:
    soap = settings.get("api") == "soap"
    given = dict(credentials or (SOAP if soap else REST))
    if app is not None and not soap and credentials is None:
        given["refresh_token"] = app[ACCOUNT].refresh_token  # the newest, as kept
    config = ConnectorConfig(
        "nmbrs", base + ("/soap/v3" if soap else ""), credentials=given, settings=settings
    )
    projector = Projector(load_mapping(bundled_mapping("nmbrs")), KEY)
    return NmbrsConnector(config, projector, session, retry=retry)


def sensitive_of(app: web.Application) -> set[str]:
    return {v for p in app[ACCOUNT].people for v in p.sensitive_values() if v}


@pytest.mark.parametrize("api", ["rest", "soap"])
async def test_both_apis_give_the_same_people(
    serve: Any, session: aiohttp.ClientSession, api: str
) -> None:
    """Three companies, page size 7: every employee once, job title = latest function by
    period, leavers from the latest employment's end date."""
    app, base = await serve(people=50, companies=3, leaver_share=0.2)
    run = await sync(connector(base, session, app, api=api, page_size=7))
    people = app[ACCOUNT].people
    assert run.fetched == len(run.subjects) == 50
    assert run.pages >= 9  # every company pages on its own
    titles = sorted(s["job_title"] for s in run.subjects)
    assert titles == sorted(p.latest_function().description for p in people)
    emails = {s["email"] for s in run.subjects}
    assert emails == {p.email_work for p in people}
    left = {p.email_work for p in people if p.latest_employment().end is not None}
    assert left and {s["email"] for s in run.subjects if not s["active"]} == left
    assert leaked(sensitive_of(app), *run.trace) == []


@pytest.mark.parametrize("api", ["rest", "soap"])
async def test_a_run_resumes_from_its_cursor_in_a_new_connector(
    serve: Any, session: aiohttp.ClientSession, api: str
) -> None:
    """A run cut off after a few pages (the process restarted) carries on from its saved
    cursor with a fresh connector: the lookups of the company it was in are read again,
    nobody is read twice or missed."""
    app, base = await serve(people=40, companies=2)
    first = connector(base, session, app, api=api, page_size=6)
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):  # into the second company
        page = await first.fetch_page(PageRequest(SyncMode.FULL, cursor))
        seen += page.subjects
        cursor = page.next_cursor
    assert cursor is not None
    second = connector(base, session, app, api=api, page_size=6)
    while cursor is not None:
        page = await second.fetch_page(PageRequest(SyncMode.FULL, cursor))
        seen += page.subjects
        cursor = page.next_cursor
    assert len(seen) == len({s["subject_id"] for s in seen}) == 40
    with pytest.raises(ConnectorError) as caught:
        await second.fetch_page(PageRequest(SyncMode.FULL, "v1|not-a-company|1|x"))
    assert caught.value.kind == "refused"


@pytest.mark.parametrize("api", ["rest", "soap"])
async def test_no_company_at_all_stops_the_run_rather_than_empty_it(
    serve: Any, session: aiohttp.ClientSession, api: str
) -> None:
    app, base = await serve(people=5)
    app[ACCOUNT].companies = []
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, app, api=api))
    assert caught.value.kind == "refused" and "no company" in str(caught.value)


async def test_the_record_shape_is_all_that_reaches_the_door(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    """What the projector is handed: the one shape, never a personal-info field."""
    app, base = await serve(people=5)
    for api in ("rest", "soap"):
        client = connector(base, session, app, api=api)
        raw = await client.fetch_raw(PageRequest(SyncMode.FULL))
        assert raw.records and all(set(r) == set(FIELDS) for r in raw.records)
        assert leaked(sensitive_of(app), repr(raw.records)) == []


async def test_soap_personal_info_arrives_whole_and_is_dropped_at_the_door(
    serve: Any, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """SOAP's PersonalInfo_V2 has no field selection: the BSN crosses the wire (the
    emulator's answer holds it), and is nowhere after the door, nor in any log line."""
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=30)
    bsns = {p.bsn for p in app[ACCOUNT].people}
    async with session.post(
        base + "/soap/v3/EmployeeService.asmx",
        data=_envelope(
            "PersonalInfo_GetAll_AllEmployeesByCompany", "<n:CompanyID>5000</n:CompanyID>"
        ),
        headers={"SOAPAction": '"https://api.nmbrs.nl/soap/v3/EmployeeService/'
                 'PersonalInfo_GetAll_AllEmployeesByCompany"', "Content-Type": "text/xml"},
    ) as answer:  # fmt: skip
        wire = await answer.text()
    assert all(f"<BSN>{b}</BSN>" in wire for b in bsns)
    run = await sync(connector(base, session, api="soap"))
    assert len(run.subjects) == 30
    assert leaked(sensitive_of(app), *run.trace, caplog.text) == []


def _envelope(operation: str, inner: str) -> str:
    return (
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:n="https://api.nmbrs.nl/soap/v3/EmployeeService"><s:Header>'
        f"<n:AuthHeaderWithDomain><n:Username>{EMULATOR_USERNAME}</n:Username>"
        f"<n:Token>{EMULATOR_TOKEN}</n:Token><n:Domain>{EMULATOR_DOMAIN}</n:Domain>"
        f"</n:AuthHeaderWithDomain></s:Header><s:Body><n:{operation}>{inner}</n:{operation}>"
        "</s:Body></s:Envelope>"
    )


async def test_only_the_lookups_the_mapping_reads_are_asked_for(
    serve: Any, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app, base = await serve(people=10)
    text = bundled_mapping("nmbrs").read_text()
    slim = text.split("[fields.job_title]")[0].replace('field = "endDate"', "")
    slim = slim.split("[[leaver]]")[0]
    path = tmp_path / "slim.toml"
    path.write_text(slim)
    config = ConnectorConfig("nmbrs", base, credentials={**REST}, settings={})
    client = NmbrsConnector(config, Projector(load_mapping(path), KEY), session, retry=FAST)
    await sync(client)
    paths = {r.path for r in app[CONTROL].log}
    assert any(p.endswith("/employees/personalinfo") for p in paths)
    assert not any(p.endswith(("/functions", "/employments")) for p in paths)


async def test_a_rotated_refresh_token_is_used_once_and_kept(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    """The identity server hands out a new refresh token with each access token and
    refuses the old one; the connector hands the new one to `keep_credentials` first."""
    app, base = await serve(
        people=5, token_ttl=60.0
    )  # no longer than the 60 s margin: renewed each call
    kept: list[dict[str, str]] = []

    async def keep(credentials: Any) -> None:
        kept.append(dict(credentials))

    client = connector(base, session, app)
    client.keep_credentials = keep
    await sync(client)
    await sync(client)
    assert len(kept) >= 2
    assert kept[-1]["refresh_token"] == app[ACCOUNT].refresh_token
    stale = connector(base, session, credentials={**REST})
    with pytest.raises(ConnectorError) as caught:
        await sync(stale)
    assert caught.value.kind == "auth" and "invalid_grant" in str(caught.value)


async def test_an_expired_access_token_is_renewed_once(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=30)
    client = connector(base, session, app, page_size=10)

    def expire(n: int) -> None:
        if n == 2:
            app[ACCOUNT].expire_tokens()

    run = await sync(client, before_page=expire)
    assert len(run.subjects) == 30
    assert app[ACCOUNT].refreshes == 2
    statuses = [r.status for r in app[CONTROL].log]
    assert statuses.count(401) == 1


async def test_a_wrong_subscription_key_is_an_auth_error_without_the_body(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=3)
    bad = {**REST, "refresh_token": app[ACCOUNT].refresh_token, "subscription_key": "nope"}
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, credentials=bad))
    assert caught.value.kind == "auth" and "HTTP 401" in str(caught.value)
    assert "subscription key." not in str(caught.value)


async def test_soap_faults_are_reduced_to_their_code(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=3)
    wrong = {**SOAP, "username": "eva.de.vries@example.nl", "token": "x" * 32}
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, credentials=wrong, api="soap"))
    assert caught.value.kind == "auth"
    assert "SOAP fault 1001" in str(caught.value)
    assert "eva.de.vries" not in str(caught.value)


async def test_a_429_waits_for_retry_after_each_time(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=40, per_minute=None)
    app[CONTROL].inject(Fault("rate_limit", seconds=1.0), Fault("rate_limit", seconds=1.0))
    client = connector(base, session, app, page_size=10)
    run = await sync(client)
    assert len(run.subjects) == 40
    log = app[CONTROL].log
    at = [i for i, r in enumerate(log) if r.status == 429]
    assert len(at) == 2 and client.stats.rate_limited == 2
    for i in at:
        assert log[i + 1].at - log[i].at >= 1.0
    # Each lookup page is read once: the 429 did not send the run back to its start.
    assert len(log) == 2 + len({(r.path, r.query) for r in log})


async def test_paced_requests_stay_within_the_budget(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=30, per_minute=12)
    client = connector(base, session, app, page_size=10, requests_per_minute=12)
    assert client.pacer is not None
    # The emulator's minute window starts at its first request.
    client.pacer.windows = [Window(11, 60.0)]
    run = await sync(client)
    assert len(run.subjects) == 30
    assert [r.status for r in app[CONTROL].log].count(429) == 0


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("huge", size=None), "too_large"),
        (Fault("huge", size=4 * 1024 * 1024, declare_length=True), "too_large"),
        (Fault("error", status=302, location="http://169.254.169.254/"), "config"),
    ],
)
@pytest.mark.parametrize("api", ["rest", "soap"])
async def test_hostile_answers_fail_cleanly(
    serve: Any, session: aiohttp.ClientSession, fault: Fault, kind: str, api: str
) -> None:
    app, base = await serve(people=5)
    app[CONTROL].inject(fault)
    client = connector(base, session, app, api=api, max_response_bytes=1024 * 1024)
    with pytest.raises(ConnectorError) as caught:
        await sync(client)
    assert caught.value.kind == kind


@pytest.mark.parametrize("api", ["rest", "soap"])
async def test_a_body_that_is_not_json_or_xml_is_malformed(
    serve: Any, session: aiohttp.ClientSession, api: str
) -> None:
    app, base = await serve(people=5)
    app[CONTROL].inject(*[Fault("truncate") for _ in range(FAST.attempts)])
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, app, api=api))
    assert caught.value.kind == "malformed"
    assert leaked(sensitive_of(app), str(caught.value)) == []


async def test_malformed_rows_are_quarantined_with_a_reason(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=6)
    people = app[ACCOUNT].companies[0].people
    people[0].rest_id = 17  # not a string: no identity
    people[1].email_work = None
    run = await sync(connector(base, session, app))
    assert len(run.subjects) == 4
    assert len(run.rejected) == 2
    assert any("email" in reason for reason in run.rejected)


async def test_the_identity_server_is_held_to_the_address_rules(
    serve: Any,
) -> None:
    """Through the public-only session, the token request to a private address is refused
    before a byte is sent: the identity server is judged like any host."""
    app, base = await serve(people=3)
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        client = connector(base, guarded, app, identity_url="http://169.254.169.254")
        with pytest.raises(ConnectorError) as caught:
            await sync(client)
    assert caught.value.kind == "config"
    assert "allow_private_sources" in str(caught.value)
    assert app[ACCOUNT].refreshes == 0


def test_the_identity_server_is_nmbrs_s_for_nmbrs_s_api() -> None:
    """ "Connect with Nmbrs" signs in at Nmbrs's identity server for Nmbrs's API, at the
    base URL's own origin for a stand-in, or where `identity_url` says; it asks for read
    scopes only, and `offline_access` for the refresh token."""
    official = authorization_server("https://api.nmbrsapp.com", {})
    assert official.authorize_url == "https://identityservice.nmbrs.com/connect/authorize"
    assert official.token_url == "https://identityservice.nmbrs.com/connect/token"
    assert official.vendor == "Nmbrs" and official.client_auth == "post"
    assert "offline_access" in official.scopes
    assert all(s.endswith(".read") for s in official.scopes if s != "offline_access")
    stand_in = authorization_server("https://nmbrs.example.com/base", {})
    assert stand_in.token_url == "https://nmbrs.example.com/connect/token"
    moved = authorization_server(
        "https://api.nmbrsapp.com", {"identity_url": "https://id.example.com/"}
    )
    assert moved.authorize_url == "https://id.example.com/connect/authorize"
    with pytest.raises(ConnectorError):
        authorization_server("https://api.nmbrsapp.com", {"identity_url": "ftp://id.example"})


async def test_a_rest_connector_not_yet_connected_fails_before_any_request(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    """Without the refresh token "Connect" stores, the connector can be built (the console
    shows it, a connect can begin), and its run stops at once saying what to do."""
    app, base = await serve(people=3)
    unconnected = {k: v for k, v in REST.items() if k != "refresh_token"}
    client = connector(base, session, credentials=unconnected)
    with pytest.raises(ConnectorError) as caught:
        await sync(client)
    assert caught.value.kind == "auth" and "not connected" in str(caught.value)
    assert app[CONTROL].log == [] and app[AUTHORIZATION].token_requests == []
    assert app[ACCOUNT].refreshes == 0


@pytest.mark.parametrize(
    ("settings", "credentials"),
    [
        ({"api": "graphql"}, REST),
        ({"page_size": 101}, REST),
        ({"api": "soap"}, REST),
        ({}, SOAP),
    ],
)
def test_settings_and_credentials_are_checked_up_front(
    session: aiohttp.ClientSession, settings: dict[str, Any], credentials: dict[str, str]
) -> None:
    with pytest.raises(ConnectorError):
        connector("https://api.nmbrsapp.com", session, credentials=credentials, **settings)


@pytest.mark.parametrize("api", ["rest", "soap"])
async def test_a_gateway_sync_keeps_the_rotated_token_sealed_and_no_sensitive_value(
    serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, api: str
) -> None:
    """Through the whole gateway on SQLite: two full runs (a change, a leaver and a
    deleted employee between them); the rotated refresh token is stored sealed (REST), and
    not one sensitive value is in the data directory's files or the logs."""
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=120, companies=2)
    sensitive = sensitive_of(app)
    data = tmp_path / "data"
    services = Services.open(
        Settings(data_dir=data, admin_token="s" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    given = REST if api == "rest" else SOAP
    try:
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="payroll",
            type_name="nmbrs", base_url=base + ("/soap/v3" if api == "soap" else ""),
            credentials=given, settings={"api": api}, now=now,
            mapping_text=bundled_mapping("nmbrs").read_text(),
        )  # fmt: skip
        grant(services.store, by=by, connector="payroll", purpose="p", now=now)
        full = await services.engine.sync("acme", "payroll", SyncMode.FULL)
        account = app[ACCOUNT]
        left = account.retire(1)
        moved = account.touch(3)  # active people only: not the leaver
        account.delete(2, sparing={*left, *moved})
        again = await services.engine.sync("acme", "payroll", SyncMode.INCREMENTAL)
        stored = services.store.get_connector("acme", "payroll")
        kept = connector_credentials(services.box, stored)
    finally:
        services.close()
    assert full.status == again.status == "succeeded", (full.error, again.error)
    assert again.mode == "full"  # full_only: every run is a snapshot
    # The leaver leaves the platform as the two deleted people do.
    assert again.counts["deleted"] == 3, again.counts
    assert again.counts["upserted"] == 3, again.counts  # three new job titles
    if api == "rest":
        assert kept["refresh_token"] == app[ACCOUNT].refresh_token != EMULATOR_REFRESH_TOKEN
        assert app[ACCOUNT].refresh_token.encode() not in stored.sealed_credentials
    assert not [v for v in sensitive if v in caplog.text]
    for path in sorted(data.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            assert not [v for v in sensitive if v.encode() in blob], path.name
