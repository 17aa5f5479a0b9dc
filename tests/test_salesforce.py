"""Salesforce: the emulator keeps Salesforce's contract, and the connector relies only on it.

Everything runs over real HTTP against the emulator on 127.0.0.1. What matters most for
privacy: the SOQL names only mapped fields (and no mapping can smuggle SOQL in), a token
answer cannot send the gateway to a host it must not reach, and no sensitive value gets
past the door. simple-salesforce (a community-maintained client; Salesforce publishes no
Python SDK) reads the emulator as it reads a real org, so the emulator cannot drift from
the API shape that client was written against.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL, Fault
from connectors.netguard import PublicOnlyConnector
from connectors.salesforce.client import SalesforceConnector, _batch, field_name, select_list
from connectors.salesforce.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    STATE,
    make_app,
)
from connectors.salesforce.synthetic import SENSITIVE_FIELDS, case_safe
from gateway.minimise.mapping import MappingError, load_mapping, parse_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.contract.suite import leaked, sync
from tests.principals import system

from .conftest import MAPPINGS

KEY = b"salesforce tests: 32-byte key!!!"
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)
NEXT = re.compile(r"/services/data/v62\.0/query/01g[A-Za-z0-9]{15}-\d+")
CREDENTIALS = {"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET}


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
    *,
    mapping: str | None = None,
    credentials: dict[str, str] | None = None,
    retry: RetryPolicy = FAST,
    **settings: Any,
) -> SalesforceConnector:
    config = ConnectorConfig(
        "salesforce", base, credentials=credentials or CREDENTIALS, settings=settings
    )
    rules = (
        parse_mapping(mapping, "test") if mapping else load_mapping(MAPPINGS / "salesforce.toml")
    )
    return SalesforceConnector(config, Projector(rules, KEY), session, retry=retry)


def fields_of(soql: str) -> list[str]:
    select = re.match(r"SELECT (.*?) FROM ", soql)
    assert select is not None
    return [f.strip() for f in select.group(1).split(",")]


async def test_the_query_names_only_mapped_fields_and_pages_by_next_records_url(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=450, batch_cap=200)
    run = await sync(connector(base, session))
    state = app[STATE]
    assert len(run.by_id()) == 450 and run.pages == 3
    [soql] = state.queries
    assert fields_of(soql) == [
        "Email", "FirstName", "Id", "IsDeleted", "LastName", "SystemModstamp", "Title"
    ]  # fmt: skip
    assert not set(fields_of(soql)) & set(SENSITIVE_FIELDS)
    log = [r for r in app[CONTROL].log if r.path.startswith("/services/data")]
    assert log[0].path == "/services/data/v62.0/query" and len(log) == 3
    assert all(NEXT.fullmatch(r.path) for r in log[1:])
    assert all(r.path.endswith(f"-{200 * n}") for n, r in enumerate(log[1:], 1))


async def test_the_emulator_answers_as_salesforce_does(serve: Any) -> None:
    _, base = await serve(people=5)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/services/oauth2/token", data={
            "grant_type": "client_credentials", **CREDENTIALS}) as r:  # fmt: skip
            token = await r.json()
        assert set(token) == {"access_token", "signature", "scope", "instance_url", "id",
                              "token_type", "issued_at"}  # fmt: skip
        assert token["instance_url"] == base and token["issued_at"].isdigit()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        url = f"{base}/services/data/v62.0/query"
        async with http.get(url, params={"q": "SELECT Id FROM Contact"}, headers=auth) as r:
            body = await r.json()
            assert re.fullmatch(r"api-usage=\d+/100000", r.headers["Sforce-Limit-Info"])
        assert body["done"] is True and body["totalSize"] == 5 and "nextRecordsUrl" not in body
        assert body["records"][0]["attributes"]["type"] == "Contact"
        assert set(body["records"][0]) == {"attributes", "Id"}
        for q, code in (
            ("SELECT Id, Salary__c FROM Contact", "INVALID_FIELD"),
            ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
            ("SELECT Id FROM Employee__c", "INVALID_TYPE"),
        ):
            async with http.get(url, params={"q": q}, headers=auth) as r:
                assert r.status == 400
                [error] = await r.json()
                assert error["errorCode"] == code and set(error) == {"message", "errorCode"}
        async with http.get(url, params={"q": "SELECT Id FROM Contact"}) as r:
            assert r.status == 401
            assert (await r.json())[0]["errorCode"] == "INVALID_SESSION_ID"
        bad = {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"}
        async with http.post(f"{base}/services/oauth2/token", data=bad) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_client"
    # The widely quoted 18-character form of 001A0000006Vm9r.
    assert case_safe("001A0000006Vm9r") == "001A0000006Vm9rIAC"


@pytest.mark.parametrize(
    "source",
    [
        "Email FROM User WHERE Name != null",
        "Title, BSN__c",
        "Account.Name",
        "FIELDS(ALL)",
        "Title'",
        "Title__x__c",
        "FROM",
    ],
)
async def test_a_mapping_cannot_inject_soql(
    source: str, serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=3)
    text = (MAPPINGS / "salesforce.toml").read_text()
    text = text.replace('source = "Title"', f"source = {source!r}")
    try:
        rules = parse_mapping(text, "test")
    except MappingError:
        pass  # the mapping language refuses it already
    else:
        config = ConnectorConfig("salesforce", base, credentials=CREDENTIALS)
        with pytest.raises(ConnectorError) as caught:
            SalesforceConnector(config, Projector(rules, KEY), session)
        assert caught.value.kind == "config"
    assert app[CONTROL].log == []
    with pytest.raises(ConnectorError):
        field_name(source)
    assert select_list({"BSN__c", "FirstName"}) == ["BSN__c", "FirstName", "Id", "SystemModstamp"]


async def test_a_field_the_object_lacks_is_a_config_error_without_the_message(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=3)
    text = (MAPPINGS / "salesforce.toml").read_text().replace('"Title"', '"Department"')
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, mapping=text))
    assert caught.value.kind == "config"
    assert "INVALID_FIELD" in str(caught.value) and "No such column" not in str(caught.value)


async def test_incremental_runs_see_changes_and_deletions_through_query_all(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=300, batch_cap=200)
    state = app[STATE]
    full = await sync(connector(base, session))
    touched, deleted = state.touch(2), state.delete(3)
    client = connector(base, session, overlap_seconds=0)
    changes = await sync(client, SyncMode.INCREMENTAL, since=full.watermark)
    assert changes.fetched == 5
    assert sorted(s["active"] for s in changes.subjects) == [False] * 3 + [True] * 2
    soql = state.queries[-1]
    assert "SystemModstamp >" in soql and soql.endswith("ORDER BY SystemModstamp, Id")
    log = [r.path for r in app[CONTROL].log if r.path.startswith("/services/data")]
    assert log[-1] == "/services/data/v62.0/queryAll"
    assert changes.watermark is not None and changes.watermark > (full.watermark or "")
    after = await sync(connector(base, session))
    assert len(after.by_id()) == 297 and len(touched) == 2 and len(deleted) == 3


async def test_an_expired_session_is_renewed_once(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=450, batch_cap=200)
    state = app[STATE]
    client = connector(base, session)

    def expire(n: int) -> None:
        if n == 1:
            state.sessions.clear()

    run = await sync(client, before_page=expire)
    assert len(run.by_id()) == 450 and state.token_requests == 2
    statuses = [r.status for r in app[CONTROL].log]
    assert statuses.count(401) == 1

    always = await serve(people=3, session_seconds=0.0)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(always[1], session))
    assert caught.value.kind == "auth" and "INVALID_SESSION_ID" in str(caught.value)
    assert always[0][STATE].token_requests == 2, "a refused session is renewed once, not more"


async def test_an_expired_locator_is_asked_again_from_the_last_row(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=650, batch_cap=200)
    state = app[STATE]

    def forget(n: int) -> None:
        if n in (1, 2):
            state.forget_locators()

    run = await sync(connector(base, session), before_page=forget)
    assert run.fetched == 650 and len(run.by_id()) == 650
    assert [r.status for r in app[CONTROL].log].count(400) == 2
    assert "WHERE Id > '" in state.queries[-1]

    # A run resumed by a new connector (after a restart) goes on from its cursor.
    first = await connector(base, session).fetch_page(PageRequest(SyncMode.FULL))
    state.forget_locators()
    rest = await connector(base, session).fetch_page(
        PageRequest(SyncMode.FULL, cursor=first.next_cursor)
    )
    assert first.fetched == rest.fetched == 200
    assert not {s["subject_id"] for s in first.subjects} & {s["subject_id"] for s in rest.subjects}


async def test_request_limit_exceeded_is_a_rate_limit_and_usage_is_paced(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=5, burst=(1, 60.0))
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, limit_wait_seconds=0.01))
    assert caught.value.kind == "rate_limited" and caught.value.status == 403
    assert "REQUEST_LIMIT_EXCEEDED" in str(caught.value)
    assert "TotalRequests" not in str(caught.value)

    # An allocation of 10 requests a second, 2,400 people in batches of 200: the connector
    # stops at 80% of it and waits, so the org never refuses a request. The wait keeps the
    # probes within the headroom: at least 1 s / (10 x 0.2) = 0.5 s (README, Salesforce).
    app, base = await serve(people=2400, batch_cap=200, api_limit=10, limit_window=1.0)
    retry = RetryPolicy(attempts=10, max_seconds=60, initial_wait=0.01, max_wait=0.1)
    client = connector(base, session, retry=retry, max_api_usage=0.8, limit_wait_seconds=0.6)
    run = await sync(client)
    assert len(run.by_id()) == 2400
    assert client.paced >= 1
    assert [r.status for r in app[CONTROL].log].count(403) == 0


async def test_the_instance_url_is_judged_like_any_host(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    for instance in (
        "ftp://127.0.0.1",
        "http://user:pw@127.0.0.1",
        "http://127.0.0.1/elsewhere",
        "http://127.0.0.1?x=1",
    ):
        _, base = await serve(people=3, instance_url=instance)
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(base, session))
        assert caught.value.kind == "config", instance
        assert "instance_url" in str(caught.value)

    # Through the public-only session the gateway uses, an instance_url on a private
    # address is refused before a byte is sent to it.
    _, base = await serve(people=3, instance_url="http://169.254.169.254")
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as public:
        client = connector(base, public)
        client.reachable_origin("https://example.my.salesforce.com", "instance_url")
        with pytest.raises(ConnectorError) as caught:
            client.reachable_origin("http://169.254.169.254", "instance_url")
        assert caught.value.kind == "config" and "not a public address" in str(caught.value)

    https = connector("https://login.example.com", session)
    with pytest.raises(ConnectorError):
        https.reachable_origin("http://example.my.salesforce.com", "instance_url")


async def test_bad_client_credentials_name_the_oauth_error_only(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=3)
    bad = {"client_id": EMULATOR_CLIENT_ID, "client_secret": "wrong"}
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, credentials=bad))
    assert caught.value.kind == "auth" and "invalid_client" in str(caught.value)
    with pytest.raises(ConnectorError) as missing:
        await sync(connector(base, session, credentials={"client_id": "x"}))
    assert missing.value.kind == "auth" and "client_secret" in str(missing.value)
    assert len(app[CONTROL].log) == 1


async def test_a_malformed_batch_is_retried_then_fails_as_malformed(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    """A batch without `done`, or pointing its next batch at an absolute URL (anywhere),
    is malformed: retried, then failed with that reason, and the URL never requested."""
    app, base = await serve(people=3)
    control = app[CONTROL]
    client = connector(base, session)
    for bad in (
        {"records": []},
        {"done": False, "records": []},
        {"done": False, "records": [], "nextRecordsUrl": "https://elsewhere.example/x"},
    ):
        assert _batch_problem(bad) == "malformed"
    control.inject(*[Fault("truncate", path="/services/data") for _ in range(FAST.attempts)])
    with pytest.raises(ConnectorError) as caught:
        await sync(client)
    assert caught.value.kind == "malformed"


def _batch_problem(body: dict[str, Any]) -> str:
    try:
        _batch(body)
    except ConnectorError as exc:
        return exc.kind
    return ""


async def test_simple_salesforce_reads_the_emulator(aiohttp_server: Any, tmp_path: Path) -> None:
    """The community client, over TLS (it speaks https only), with a session the emulator
    issued: query_all follows nextRecordsUrl; include_deleted uses queryAll."""
    requests = pytest.importorskip("requests")
    simple = pytest.importorskip("simple_salesforce")
    from tests.console.test_sessions import self_signed

    app = make_app(people=2500, batch_cap=None)
    app[STATE].delete(4)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=self_signed(tmp_path))
    base = f"https://127.0.0.1:{server.port}"

    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def read() -> tuple[int, int, int, dict[str, Any]]:
        http = requests.Session()
        http.verify = False  # a throwaway certificate for 127.0.0.1
        http.trust_env = False  # else a CA bundle from the environment overrides verify
        token = http.post(f"{base}/services/oauth2/token", data={
            "grant_type": "client_credentials", **CREDENTIALS}).json()  # fmt: skip
        sf = simple.Salesforce(
            instance_url=token["instance_url"], session_id=token["access_token"],
            version="62.0", session=http,
        )  # fmt: skip
        live = sf.query_all("SELECT Id, FirstName, LastName, Email, Title FROM Contact")
        everyone = sf.query_all("SELECT Id, IsDeleted FROM Contact", include_deleted=True)
        first = sf.query("SELECT Id FROM Contact ORDER BY Id")
        more = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        return live["totalSize"], len(everyone["records"]), len(more["records"]), live["records"][0]

    live, everyone, more, one = await asyncio.to_thread(read)
    assert live == 2496 and everyone == 2500 and more == 496
    assert set(one) == {"attributes", "Id", "FirstName", "LastName", "Email", "Title"}


async def test_no_sensitive_value_reaches_a_page_or_an_error(
    serve: Any, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=300, batch_cap=200)
    values = {
        v for c in app[STATE].contacts for n in SENSITIVE_FIELDS if isinstance(v := c.get(n), str)
    }
    run = await sync(connector(base, session))
    assert leaked(values, *run.trace) == []
    dropped = {n for t in run.trace for n in ("attributes", "SystemModstamp") if n in t}
    assert dropped == {"attributes", "SystemModstamp"}


async def test_a_gateway_sync_stores_and_logs_no_sensitive_value(
    serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole gateway (engine, store, ledger) on SQLite: after a full sync, an
    incremental one with changes and deletions, not one sensitive value is in the data
    directory's files (WAL included) or the logs."""
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=400, batch_cap=200)
    state = app[STATE]
    sensitive = {
        v for c in state.contacts for n in SENSITIVE_FIELDS if isinstance(v := c.get(n), str)
    }
    data = tmp_path / "data"
    services = Services.open(
        Settings(data_dir=data, admin_token="s" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    try:
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="crm",
            type_name="salesforce", base_url=base, credentials=CREDENTIALS, now=now,
            mapping_text=bundled_mapping("salesforce").read_text(),
        )  # fmt: skip
        grant(services.store, by=by, connector="crm", purpose="p", now=now)
        full = await services.engine.sync("acme", "crm", SyncMode.FULL)
        state.touch(3)
        state.delete(2)
        changes = await services.engine.sync("acme", "crm", SyncMode.INCREMENTAL)
    finally:
        services.close()
    assert full.status == changes.status == "succeeded", (full.error, changes.error)
    assert changes.counts["deleted"] == 2 and changes.counts["upserted"] == 3
    assert not [v for v in sensitive if v in caplog.text]
    for path in sorted(data.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            assert not [v for v in sensitive if v.encode() in blob], path.name
