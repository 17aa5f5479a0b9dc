"""Entra ID: the emulator keeps Microsoft Graph's contract, and the connector relies only on it.

Everything runs over real HTTP against the emulator (or a deliberately hostile Graph) on
127.0.0.1. What matters most for privacy: `$select` names only mapped properties (and no
mapping can put anything else in the query), paging links are followed only on the
configured Graph origin, both the token endpoint and Graph are held to the address rules,
and no sensitive directory attribute gets past the door or into the data directory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL, Fault
from connectors.entra.client import Budget, EntraConnector, _page_of, select_list
from connectors.entra.emulator import (
    DIRECTORY,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_TENANT_DOMAIN,
    EMULATOR_TENANT_ID,
    make_app,
)
from connectors.entra.synthetic import SENSITIVE_PROPERTIES
from connectors.netguard import PublicOnlyConnector
from gateway.minimise.mapping import MappingError, load_mapping, parse_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.contract.suite import sync
from tests.principals import system

from .conftest import MAPPINGS

KEY = b"entra tests: a 32-byte tenant k!"
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)
CREDENTIALS = {
    "tenant_id": EMULATOR_TENANT_ID,
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
}
DELTA = "/v1.0/users/delta"
SEEN = web.AppKey("seen", list[str])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


Serve = Callable[..., Any]


@pytest.fixture
def serve(aiohttp_server: Any) -> Serve:
    """Start an emulator; (app, Graph base URL)."""

    async def start(**options: Any) -> tuple[web.Application, str]:
        options.setdefault("leaver_share", 0.0)
        app = make_app(**options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return app, str(server.make_url("")).rstrip("/") + "/v1.0"

    return start


def connector(
    base: str,
    session: aiohttp.ClientSession,
    *,
    mapping: str | None = None,
    credentials: dict[str, str] | None = None,
    retry: RetryPolicy = FAST,
    **settings: Any,
) -> EntraConnector:
    config = ConnectorConfig(
        "entra", base, credentials=CREDENTIALS if credentials is None else credentials,
        settings=settings,
    )  # fmt: skip
    rules = parse_mapping(mapping, "test") if mapping else load_mapping(MAPPINGS / "entra.toml")
    return EntraConnector(config, Projector(rules, KEY), session, retry=retry)


def graph_log(app: web.Application) -> list[Any]:
    return [r for r in app[CONTROL].log if r.path.startswith("/v1.0")]


def query_of(entry: Any) -> dict[str, list[str]]:
    return parse_qs(entry.query)


async def test_select_names_only_mapped_properties_and_links_are_followed_verbatim(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250)
    run = await sync(connector(base, session))
    assert len(run.by_id()) == 250 and run.pages == 3 and run.rejected == []
    log = graph_log(app)
    assert [r.path for r in log] == [DELTA] * 3
    [select] = query_of(log[0])["$select"]
    assert select == "id,accountEnabled,givenName,jobTitle,mail,surname"
    assert not set(select.split(",")) & set(SENSITIVE_PROPERTIES)
    # Later pages carry only Graph's own skip token, which holds the selection.
    assert all(set(query_of(r)) == {"$skiptoken"} for r in log[1:])
    assert run.watermark is not None
    mark, link = run.watermark.split("|", 1)
    assert link.startswith(f"{base}/users/delta?$deltatoken=") and mark.endswith("Z")


async def test_the_emulator_answers_as_graph_does(serve: Serve) -> None:
    app, base = await serve(people=30, resource_units=4)
    root = base.removesuffix("/v1.0")
    form = {
        "grant_type": "client_credentials", "client_id": EMULATOR_CLIENT_ID,
        "client_secret": EMULATOR_CLIENT_SECRET, "scope": "https://graph.microsoft.com/.default",
    }  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for tenant in (EMULATOR_TENANT_ID, EMULATOR_TENANT_DOMAIN):
            async with http.post(f"{root}/{tenant}/oauth2/v2.0/token", data=form) as r:
                token = await r.json()
        assert set(token) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3599
        for tenant, changes, status, error in (
            ("common-not-mine.example", {}, 400, "invalid_request"),
            (EMULATOR_TENANT_ID, {"client_secret": "wrong"}, 401, "invalid_client"),
            (EMULATOR_TENANT_ID, {"client_id": "someone-else"}, 400, "unauthorized_client"),
            (EMULATOR_TENANT_ID, {"scope": "User.Read.All"}, 400, "invalid_scope"),
            (EMULATOR_TENANT_ID, {"grant_type": "password"}, 400, "unsupported_grant_type"),
        ):
            async with http.post(
                f"{root}/{tenant}/oauth2/v2.0/token", data={**form, **changes}
            ) as r:
                body = await r.json()
                assert r.status == status and body["error"] == error
                assert body["error_description"].startswith("AADSTS")
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        async with http.get(f"{base}/users", params={"$top": "25"}, headers=auth) as r:
            page = await r.json()
            assert r.headers["x-ms-resource-unit"] == "2"
        # Without $select, Graph's default set (which has the mobile phone in it).
        assert len(page["value"]) == 25 and "mobilePhone" in page["value"][0]
        assert page["@odata.nextLink"].startswith(f"{base}/users?$skiptoken=")
        async with http.get(page["@odata.nextLink"], headers=auth) as r:
            assert len((await r.json())["value"]) == 5
            assert r.headers["x-ms-throttle-limit-percentage"] == "1.0"
        async with http.get(f"{base}/users/delta", headers=auth) as r:
            assert r.status == 429 and r.headers["Retry-After"].isdigit()
            assert r.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
            assert (await r.json())["error"]["code"] == "TooManyRequests"
        app[DIRECTORY].limiter = None
        bad = {"$select": "mail,salary"}
        async with http.get(f"{base}/users/delta", params=bad, headers=auth) as r:
            error = (await r.json())["error"]
            assert r.status == 400 and error["code"] == "Request_BadRequest"
            assert set(error) == {"code", "message", "innerError"}
        async with http.get(f"{base}/users/delta") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "InvalidAuthenticationToken"
        async with http.get(f"{base}/users/nobody", headers=auth) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "Request_ResourceNotFound"


@pytest.mark.parametrize(
    "source", ["mail,mobilePhone", "mail&$expand=manager", "jobTitle)", "$count", "x-y"]
)
async def test_a_mapping_cannot_put_anything_but_property_names_in_select(
    source: str, serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=3)
    text = (
        (MAPPINGS / "entra.toml").read_text().replace('source = "jobTitle"', f"source = {source!r}")
    )
    try:
        rules = parse_mapping(text, "test")
    except MappingError:
        pass  # the mapping language refuses it already
    else:
        config = ConnectorConfig("entra", base, credentials=CREDENTIALS)
        with pytest.raises(ConnectorError) as caught:
            EntraConnector(config, Projector(rules, KEY), session)
        assert caught.value.kind == "config"
    assert app[CONTROL].log == []
    assert select_list({"employeeOrgData.division", "@removed.reason", "id", "mail"}) == [
        "id", "employeeOrgData", "mail"
    ]  # fmt: skip


async def test_incremental_runs_report_changes_leavers_and_deletions(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=300)
    directory = app[DIRECTORY]
    full = await sync(connector(base, session))
    touched, retired = directory.touch(2), directory.retire(1)
    soft, hard = directory.delete(1), directory.delete(1, hard=True)
    changes = await sync(connector(base, session), SyncMode.INCREMENTAL, since=full.watermark)
    assert changes.fetched == 5 and changes.rejected == []
    assert sorted(s["active"] for s in changes.subjects) == [False] * 3 + [True] * 2
    gone = [s for s in changes.subjects if not s["active"] and s["email"] is None]
    assert len(gone) == 2, "the two deletions carry an id only"
    delta = graph_log(app)[-1]
    assert set(query_of(delta)) == {"$deltatoken"}
    assert changes.watermark is not None and full.watermark is not None
    assert changes.watermark > full.watermark
    quiet = await sync(connector(base, session), SyncMode.INCREMENTAL, since=changes.watermark)
    assert quiet.fetched == 0 and quiet.pages == 1
    after = await sync(connector(base, session))
    assert len(after.by_id()) == 298
    assert len(after.active_ids()) == 297
    assert len(touched + retired + soft + hard) == 5


@pytest.mark.parametrize("gone_status", [400, 410])
async def test_a_forgotten_delta_token_starts_a_new_round(
    gone_status: int, serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250, gone_status=gone_status)
    full = await sync(connector(base, session))
    app[DIRECTORY].expire_delta_tokens()
    client = connector(base, session)
    again = await sync(client, SyncMode.INCREMENTAL, since=full.watermark)
    assert client.restarts == 1 and again.fetched == 250
    assert [r.status for r in graph_log(app)].count(gone_status) == 1
    assert again.watermark is not None and full.watermark is not None
    assert again.watermark > full.watermark
    # The new round's link works.
    quiet = await sync(connector(base, session), SyncMode.INCREMENTAL, since=again.watermark)
    assert quiet.fetched == 0


async def test_a_forgotten_skip_token_mid_run_reads_the_round_again(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250)
    client = connector(base, session)

    def forget(n: int) -> None:
        if n == 1:
            app[DIRECTORY].expire_delta_tokens()

    run = await sync(client, before_page=forget)
    assert client.restarts == 1 and run.fetched == 100 + 250
    assert len(run.by_id()) == 250


async def test_a_resumed_run_goes_on_from_its_cursor(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=250)
    first = await connector(base, session).fetch_page(PageRequest(SyncMode.FULL))
    rest = await connector(base, session).fetch_page(
        PageRequest(SyncMode.FULL, cursor=first.next_cursor)
    )
    assert first.fetched == rest.fetched == 100
    assert not {s["subject_id"] for s in first.subjects} & {s["subject_id"] for s in rest.subjects}
    for bad in ("v2|x|y", "v1|yesterday|http://x", "nothing"):
        with pytest.raises(ConnectorError) as caught:
            await connector(base, session).fetch_page(PageRequest(SyncMode.FULL, cursor=bad))
        assert caught.value.kind == "config"


async def test_an_expired_token_is_renewed_once_and_a_fresh_refusal_fails(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=250)
    directory = app[DIRECTORY]

    def expire(n: int) -> None:
        if n == 1:
            directory.expire_tokens()

    run = await sync(connector(base, session), before_page=expire)
    assert len(run.by_id()) == 250 and directory.issued == 2
    assert [r.status for r in graph_log(app)].count(401) == 1

    app, base = await serve(people=3, token_ttl=0.0)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session))
    assert caught.value.kind == "auth" and "InvalidAuthenticationToken" in str(caught.value)
    assert app[DIRECTORY].issued == 1, "a fresh token that is refused is not asked for again"


async def test_refused_credentials_name_the_oauth_error_only(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=3)
    for changes, code in (
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"tenant_id": "other.onmicrosoft.com"}, "invalid_request"),
    ):
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(base, session, credentials={**CREDENTIALS, **changes}))
        assert caught.value.kind == "auth" and f"[error {code}]" in str(caught.value)
        assert "AADSTS" not in str(caught.value)
    assert graph_log(app) == []
    for credentials in (
        {"client_id": "x", "client_secret": "y"},
        {**CREDENTIALS, "tenant_id": "common"},
    ):
        with pytest.raises(ConnectorError) as refused:
            connector(base, session, credentials=credentials)
        assert refused.value.kind in ("auth", "config")

    app, base = await serve(people=3, may_read_users=False)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session))
    assert caught.value.kind == "auth"
    assert "Authorization_RequestDenied" in str(caught.value)
    assert "User.Read.All" in str(caught.value) and "Insufficient" not in str(caught.value)


async def test_the_token_endpoint_is_held_to_the_address_rules(serve: Serve) -> None:
    """Graph on a public name, the authority on the emulator's loopback address: the token
    request is refused by the public-only session before a byte reaches it."""
    app, base = await serve(people=3)
    # https, as an authority must be for Graph on https (refused before TLS is spoken).
    root = base.removesuffix("/v1.0").replace("http://", "https://")
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        client = connector("https://graph.microsoft.com/v1.0", guarded, authority=root)
        with pytest.raises(ConnectorError) as caught:
            await client.fetch_page(PageRequest(SyncMode.FULL))
        assert caught.value.kind == "config" and "allow_private_sources" in str(caught.value)
        assert client.token_url == f"{root}/{EMULATOR_TENANT_ID}/oauth2/v2.0/token"
        # And Graph itself on a private address.
        private = connector(base, guarded, authority="https://login.microsoftonline.com")
        private.tokens._token, private.tokens._until = "t", float("inf")
        with pytest.raises(ConnectorError) as graph:
            await private.fetch_page(PageRequest(SyncMode.FULL))
        assert graph.value.kind == "config" and "allow_private_sources" in str(graph.value)
    assert app[CONTROL].log == []
    public = connector("https://graph.microsoft.com/v1.0", guarded)
    assert public.token_url.startswith("https://login.microsoftonline.com/")
    assert public.scope == "https://graph.microsoft.com/.default"
    us = connector("https://graph.microsoft.us/v1.0", guarded)
    assert us.token_url.startswith("https://login.microsoftonline.us/")
    # The client secret never goes in clear to a token endpoint when Graph is on https.
    with pytest.raises(ConnectorError) as plain:
        connector("https://graph.microsoft.com/v1.0", guarded, authority="http://login.example")
    assert plain.value.kind == "config"


def hostile_graph(pages: list[Any], *, status: int = 200) -> web.Application:
    """A Graph that issues tokens and then answers the delta pages it is given, in turn
    (`{root}` and `{host}` in a page become its own origin and host)."""
    app = web.Application()
    seen: list[str] = []

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})

    async def delta(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        body = pages[min(len(seen), len(pages)) - 1]
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        raw = raw.replace(b"{root}", f"http://{request.host}".encode())
        raw = raw.replace(b"{host}", request.host.encode())
        return web.Response(body=raw, status=status, content_type="application/json")

    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/v1.0/users/delta", delta)
    app[SEEN] = seen
    return app


async def hostile(aiohttp_server: Any, *pages: Any) -> tuple[web.Application, str]:
    app = hostile_graph(list(pages))
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("")).rstrip("/") + "/v1.0"


@pytest.mark.parametrize(
    "link",
    [
        "http://169.254.169.254/v1.0/users/delta?$skiptoken=x",
        "{root}/v1.0/users/delta/../../admin?$skiptoken=x",
        "{root}/v1.0/groups/delta?$skiptoken=x",
        "https://{host}/v1.0/users/delta?$skiptoken=x",
        "http://user:pw@{host}/v1.0/users/delta?$skiptoken=x",
        "/v1.0/users/delta?$skiptoken=x",
    ],
)
async def test_a_paging_link_off_the_graph_origin_is_refused(
    link: str, aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    page = {"value": [], "@odata.nextLink": link}
    app, base = await hostile(aiohttp_server, page)
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session))
    assert caught.value.kind == "refused"
    assert len(app[SEEN]) == 1, "only the first page may have been requested"
    # A stored watermark pointing elsewhere is refused the same way.
    with pytest.raises(ConnectorError) as stored:
        await sync(
            connector(base, session),
            SyncMode.INCREMENTAL,
            since="2026-11-30T10:00:00.000000Z|http://169.254.169.254/v1.0/users/delta?$deltatoken=x",
        )
    assert stored.value.kind == "refused"


async def test_hostile_answers_fail_clearly_and_odd_records_are_quarantined(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    good = {"id": "0b0c", "givenName": "Sanne", "surname": "Bos", "mail": "s.bos@example.nl",
            "jobTitle": "Controller", "accountEnabled": True}  # fmt: skip
    page = {"value": [good, 7, {"id": "1c1d", "mail": "x@example.nl", "accountEnabled": "soms"}],
            "@odata.deltaLink": "{root}/v1.0/users/delta?$deltatoken=d"}  # fmt: skip
    _, base = await hostile(aiohttp_server, page)
    run = await sync(connector(base, session))
    assert len(run.subjects) == 1 and run.fetched == 3
    assert run.rejected == [
        "record is a number, not an object",
        "leaver field accountEnabled: is not a yes/no value",
    ]
    for body, kind in (
        ({"value": []}, "malformed"),
        ({"value": {}, "@odata.deltaLink": "x"}, "malformed"),
        (b"{not json", "malformed"),
    ):
        app, base = await hostile(aiohttp_server, body)
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(base, session))
        assert caught.value.kind == kind
        assert len(app[SEEN]) == FAST.attempts, "a malformed page is retried, then fails"


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("huge", size=64 * 1024 * 1024, declare_length=True), "too_large"),
        (Fault("huge"), "too_large"),
        (Fault("error", status=302, location="http://169.254.169.254/"), "config"),
        (Fault("truncate"), "malformed"),
    ],
)
async def test_huge_endless_redirecting_and_cut_off_answers(
    fault: Fault, kind: str, serve: Serve, session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=3)
    count = 1 if kind in ("too_large", "config") else FAST.attempts
    app[CONTROL].inject(*[Fault(**{**fault.__dict__, "path": DELTA}) for _ in range(count)])
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, max_response_bytes=4 * 1024 * 1024))
    assert caught.value.kind == kind
    # Loopback socket buffers can hold up to 16 MiB past the reader (test_source_limits).
    assert app[CONTROL].streamed_bytes < (4 + 16) * 1024 * 1024


def test_the_budget_keeps_to_a_sliding_window() -> None:
    budget = Budget(10, window=10.0)
    for t in range(10):
        assert budget.delay(1, float(t) / 10) == 0.0
        budget.spent.append((float(t) / 10, 1))
        budget.total += 1
    assert budget.delay(1, 1.0) == pytest.approx(9.0)
    assert budget.delay(3, 1.0) == pytest.approx(9.2)
    assert budget.delay(1, 10.0) == 0.0
    assert Budget(1).delay(5, 0.0) == 0.0, "a request dearer than the budget still goes alone"


async def test_pacing_stays_within_graphs_resource_units(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """12 resource units per 10 s, pages of 10: the connector spends at most 90% of them
    in any 10 s (learning the cost of 1 from x-ms-resource-unit), so Graph refuses nothing."""
    app, base = await serve(people=140, page_size=10, resource_units=12)
    client = connector(base, session, resource_units=12)
    run = await sync(client)
    assert len(run.by_id()) == 140 and client.cost == 1.0
    log = graph_log(app)
    assert [r.status for r in log].count(429) == 0 and len(log) == 14
    times = [r.at for r in log]
    assert max(sum(1 for t in times if s <= t < s + 10.0) for s in times) <= 11


async def test_a_gateway_sync_stores_and_logs_no_sensitive_value(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole gateway (engine, store, ledger) on SQLite: a full sync, then an
    incremental one with changes, a leaver and deletions, then one after the delta token
    was forgotten: not one sensitive value in the data directory's files or the logs."""
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=400)
    directory = app[DIRECTORY]
    sensitive = {
        str(leaf)
        for stored in directory.users.values()
        for name in SENSITIVE_PROPERTIES
        for leaf in _leaves(stored.values.get(name))
        if isinstance(leaf, str) and leaf
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
            services.store, services.box, tenant="acme", by=by, connector_id="idp",
            type_name="entra", base_url=base, credentials=CREDENTIALS, now=now,
            mapping_text=bundled_mapping("entra").read_text(),
        )  # fmt: skip
        grant(services.store, by=by, connector="idp", purpose="p", now=now)
        full = await services.engine.sync("acme", "idp", SyncMode.FULL)
        directory.touch(3)
        directory.retire(1)
        directory.delete(2)
        changes = await services.engine.sync("acme", "idp")
        directory.expire_delta_tokens()
        directory.delete(1, hard=True)
        restarted = await services.engine.sync("acme", "idp")
        final = await services.engine.sync("acme", "idp", SyncMode.FULL)
    finally:
        services.close()
    for run in (full, changes, restarted, final):
        assert run.status == "succeeded", run.error
    assert changes.mode == "incremental" and restarted.mode == "incremental"
    # Every mapped property was in the records (no "a typo in the mapping?" warning).
    assert full.counts["unseen_source_fields"] == 0
    assert changes.counts["deleted"] == 3 and changes.counts["upserted"] == 3
    # The new round after the forgotten token cannot see the hard deletion; the next full
    # sync removes it.
    assert restarted.counts["fetched"] == 397 and restarted.counts["deleted"] == 0
    assert final.counts["deleted"] == 1
    assert not [v for v in sensitive if v in caplog.text]
    for path in sorted(data.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            assert not [v for v in sensitive if v.encode() in blob], path.name


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_a_delta_page_needs_exactly_one_link() -> None:
    assert _page_of({"value": [], "@odata.deltaLink": "d"}) == ([], None, "d")
    bodies: list[dict[str, Any]] = [
        {"value": []},
        {"value": [], "@odata.nextLink": "n", "@odata.deltaLink": "d"},
    ]
    for body in bodies:
        with pytest.raises(ConnectorError):
            _page_of(body)


async def test_microsofts_own_sdk_reads_the_emulator(aiohttp_server: Any, tmp_path: Path) -> None:
    """Microsoft's official stack against the emulator, over TLS (azure-identity speaks
    https only): azure-identity's ClientSecretCredential (MSAL underneath) gets a token
    from the emulated token endpoint, and msgraph-sdk's
    GraphServiceClient, its base URL pointed at the emulator, pages `/users` with `$top`,
    walks a delta round with `$select` from nextLink to deltaLink, and reads the next
    round's changes and `@removed` deletions through that deltaLink."""
    pytest.importorskip("msgraph")
    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder
    from msgraph_core import GraphClientFactory

    from tests.console.test_sessions import self_signed

    app = make_app(people=230, leaver_share=0.0)
    server = await aiohttp_server(app, host="127.0.0.1", ssl=self_signed(tmp_path))
    root = f"https://127.0.0.1:{server.port}"
    credential = ClientSecretCredential(
        EMULATOR_TENANT_ID, EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET, authority=root,
        # No discovery call to Microsoft's hosts; a throwaway certificate for 127.0.0.1.
        disable_instance_discovery=True, connection_verify=False,
    )  # fmt: skip
    auth = AzureIdentityAuthenticationProvider(credential, allowed_hosts=["127.0.0.1"])
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=False))
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{root}/v1.0"
    graph = GraphServiceClient(request_adapter=adapter)
    try:
        listed = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=["id", "givenName", "mail"], top=200
        )
        users = await graph.users.get(RequestConfiguration(query_parameters=listed))
        assert users is not None and users.value is not None and users.odata_next_link
        more = await graph.users.with_url(users.odata_next_link).get()
        assert more is not None and more.value is not None
        assert len(users.value) + len(more.value) == 230
        assert users.value[0].given_name and users.value[0].mobile_phone is None

        selected = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=["id", "givenName", "surname", "mail", "jobTitle", "accountEnabled"]
        )
        page = await graph.users.delta.get(RequestConfiguration(query_parameters=selected))
        seen: list[Any] = []
        while page is not None and page.odata_next_link:
            seen += page.value or []
            page = await graph.users.delta.with_url(page.odata_next_link).get()
        assert page is not None and page.odata_delta_link
        seen += page.value or []
        assert len({u.id for u in seen}) == 230
        assert all(u.account_enabled is True and u.employee_id is None for u in seen)

        deleted, touched = app[DIRECTORY].delete(2), app[DIRECTORY].touch(1)
        changes = await graph.users.delta.with_url(page.odata_delta_link).get()
        assert changes is not None and changes.value is not None
        removed = {u.id for u in changes.value if "@removed" in (u.additional_data or {})}
        assert removed == set(deleted)
        [changed] = [u for u in changes.value if u.id not in removed]
        assert changed.id == touched[0] and changed.job_title
    finally:
        await credential.close()
    paths = {r.path for r in app[CONTROL].log}
    assert f"/{EMULATOR_TENANT_ID}/oauth2/v2.0/token" in paths
    assert "/v1.0/users/delta()" in paths, "the SDK spells the function delta()"
    assert app[DIRECTORY].issued == 1
