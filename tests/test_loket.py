"""Loket.nl: the emulator keeps Loket's v2 contract, and the connector relies only on that.

Everything runs over real HTTP against the emulator on 127.0.0.1. What the contract suite
cannot know: the `_embedded` envelope and page numbers, the three employer-wide lists and
how an employee's employments decide their end date and job title, employers one by one
or all of them, the refresh-token grant (rotation kept sealed by a real gateway, expiry,
refusal; none before "Connect with Loket": no request at all), Loket's OAuth endpoints
beside its API host, the BSN/IBAN/wage endpoints left alone, pacing learned from a 429, hostile
answers, and that the token endpoint is held to the same address rules as the API.

Marked "invented" below: behaviour the emulator had to choose where Loket publishes
nothing (see `connectors/loket/emulator.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    PageRequest,
    RetryPolicy,
    SyncMode,
)
from connectors.emulator_kit import AUTHORIZATION, CONTROL, Fault
from connectors.loket import CONNECTOR_TYPE
from connectors.loket.client import (
    LoketConnector,
    authorization_server,
    authorize_url_for,
    token_url_for,
)
from connectors.loket.emulator import (
    ACCOUNT,
    EMPLOYERS_PATH,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_REFRESH_TOKEN,
    TOKEN_PATH,
    make_app,
)
from connectors.loket.synthetic import Employment
from connectors.netguard import PublicOnlyConnector
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import connector_credentials, create_connector, create_tenant
from mappings import bundled_mapping
from tests.contract.harness_loket import sensitive_values
from tests.contract.suite import leaked, sync
from tests.principals import system

from .conftest import MAPPINGS

KEY = b"loket tests: a 32-byte tenant ke"
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)
LOGIN = {
    "client_id": EMULATOR_CLIENT_ID,
    "client_secret": EMULATOR_CLIENT_SECRET,
    "refresh_token": EMULATOR_REFRESH_TOKEN,
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def serve(aiohttp_server: Any) -> Callable[..., Any]:
    """Start an emulator; returns (app, API base URL ending in /v2)."""

    async def start(**options: Any) -> tuple[web.Application, str]:
        options.setdefault("people", 250)
        options.setdefault("leaver_share", 0.0)
        app = make_app(**options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return app, str(server.make_url("/v2"))

    return start


def connector(
    base: str,
    session: aiohttp.ClientSession,
    *,
    credentials: dict[str, str] | None = None,
    **settings: Any,
) -> LoketConnector:
    settings.setdefault("page_size", 100)
    config = ConnectorConfig("loket", base, credentials=credentials or LOGIN, settings=settings)
    projector = Projector(load_mapping(MAPPINGS / "loket.toml"), KEY)
    return LoketConnector(config, projector, session, retry=FAST)


def root(base: str) -> str:
    return base.removesuffix("/v2")


async def access_token(session: aiohttp.ClientSession, base: str, refresh: str) -> dict[str, Any]:
    form = {**LOGIN, "grant_type": "refresh_token", "refresh_token": refresh}
    async with session.post(root(base) + TOKEN_PATH, data=form) as response:
        body: dict[str, Any] = await response.json()
        body["status"] = response.status
        return body


# --------------------------------------------------------------------------- the emulator


async def test_the_token_endpoint_rotates_refresh_tokens(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve()
    first = await access_token(session, base, EMULATOR_REFRESH_TOKEN)
    assert first["status"] == 200 and first["token_type"] == "bearer"
    assert first["expires_in"] == 3599  # Loket: an hour less a second
    assert first["refresh_token"] != EMULATOR_REFRESH_TOKEN
    again = await access_token(session, base, EMULATOR_REFRESH_TOKEN)
    assert (again["status"], again["error"]) == (400, "invalid_grant")  # used once: gone
    second = await access_token(session, base, first["refresh_token"])
    assert second["status"] == 200


async def test_lists_page_in_the_embedded_envelope(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=25)
    token = (await access_token(session, base, EMULATOR_REFRESH_TOKEN))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(root(base) + EMPLOYERS_PATH, headers=headers) as response:
        employers = await response.json()
    employer = employers["_embedded"][0]["id"]
    url = f"{root(base)}{EMPLOYERS_PATH}/{employer}/employees"
    async with session.get(url, params={"pageNumber": "3", "pageSize": "10"}) as response:
        assert response.status == 401  # no token
    async with session.get(
        url, params={"pageNumber": "3", "pageSize": "10"}, headers=headers
    ) as response:
        page = await response.json()
    assert {k: v for k, v in page.items() if k != "_embedded"} == {
        "currentPage": 3,
        "pageSize": 10,
        "totalItems": 25,
        "totalPages": 3,
    }
    assert len(page["_embedded"]) == 5
    person = page["_embedded"][0]
    assert set(person["contactInformation"]) >= {"emailAddress", "businessEmailAddress"}
    assert "citizenServiceNumber" not in str(person)  # BSN has an endpoint of its own


# --------------------------------------------------------------------------- the connector


async def test_all_employers_are_read_page_by_page(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=450, employers=3)
    run = await sync(connector(base, session))
    assert len(run.by_id()) == 450 and run.rejected == []
    assert run.pages == 6  # two pages of employees for each of the three employers
    paths = {r.path.rsplit("/", 1)[-1] for r in app[CONTROL].log}
    assert paths == {"token", "employers", "employees", "employments",
                     "actualorganizationalentities"}  # fmt: skip
    assert all("pageNumber=" in r.query for r in app[CONTROL].log if r.path != TOKEN_PATH)


async def test_one_employer_when_the_setting_names_it(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=300, employers=3)
    chosen = app[ACCOUNT].employers[1].id
    run = await sync(connector(base, session, employer_id=chosen))
    assert len(run.subjects) == 100
    assert not [r for r in app[CONTROL].log if r.path.endswith("/employers")]
    assert all(chosen in r.path for r in app[CONTROL].log if r.path != TOKEN_PATH)


async def test_an_employer_the_user_may_not_read_stops_the_run_clearly(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Invented: the 403 for an employer the user sees but may not read."""
    _, base = await serve(people=100, employers=2, forbidden_employers=1)
    run = await sync(connector(base, session))
    assert len(run.subjects) == 50  # the forbidden one is not even listed
    app, base = await serve(people=100, employers=2, forbidden_employers=1)
    hidden = app[ACCOUNT].employers[1].id
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, employer_id=hidden))
    assert caught.value.kind == "refused" and "HTTP 403" in str(caught.value)


async def test_end_dates_and_job_titles_come_from_the_employment_that_counts(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=6)
    people = app[ACCOUNT].people
    today = date.today()
    # 0: re-hired: an old ended employment and a current open one.
    old = people[0].current()
    earlier = Employment(
        "old-job", date(2010, 1, 1), date(2012, 1, 1), "Stagiair", old.department, "old-entity"
    )
    people[0].employments.insert(0, earlier)
    # 1: left last month; 2: has handed in notice (end date ahead); 3: a deviating title.
    people[1].current().end = today - timedelta(days=30)
    people[2].current().end = today + timedelta(days=30)
    people[3].current().deviating_function = "Hoofd salarisadministratie"
    # 4: no employment the user may see (the user-level filter hides it, or none exists).
    people[4].employments.clear()
    run = await sync(connector(base, session))
    by_email = {s["email"]: s for s in run.subjects}
    email = [p.values["businessEmailAddress"] for p in people]
    assert by_email[email[0]]["active"] is True
    assert by_email[email[0]]["job_title"] == old.function
    assert by_email[email[1]]["active"] is False
    assert by_email[email[2]]["active"] is True
    assert by_email[email[3]]["job_title"] == "Hoofd salarisadministratie"
    assert by_email[email[4]]["active"] is False and by_email[email[4]]["job_title"] is None
    assert by_email[email[5]]["active"] is True


async def test_a_run_resumed_by_another_connector_rebuilds_the_maps(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """The engine resumes a run from its saved cursor, perhaps in another process: the
    employer's employment maps are read again, and the result is the same."""
    # Without rotation: each connector here starts from the same refresh token.
    _, base = await serve(people=300, employers=2, leaver_share=0.1, rotate=False)
    whole = await sync(connector(base, session))
    first = await connector(base, session).fetch_page(PageRequest(SyncMode.FULL))
    assert first.next_cursor is not None
    subjects = list(first.subjects)
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = await connector(base, session).fetch_page(PageRequest(SyncMode.FULL, cursor))
        subjects += page.subjects
        cursor = page.next_cursor
    assert {s["subject_id"]: s for s in subjects} == whole.by_id()
    with pytest.raises(ConnectorError) as caught:
        await connector(base, session).fetch_page(PageRequest(SyncMode.FULL, "x:1@now"))
    assert caught.value.kind == "config"


async def test_every_run_is_whole_and_a_deleted_employee_is_gone(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Loket has no modification filter: an incremental request reads everyone too, and a
    hard-deleted employee is simply absent from the next run (the engine's full-run
    deletion)."""
    app, base = await serve(people=200)
    loket = connector(base, session)
    full = await sync(loket)
    app[ACCOUNT].remove(3)
    again = await sync(loket, SyncMode.INCREMENTAL, since=full.watermark)
    assert again.fetched == 197
    assert len(set(full.by_id()) - set(again.by_id())) == 3
    assert again.watermark is not None and again.watermark > full.watermark  # type: ignore[operator]


async def test_the_private_email_is_never_a_fallback(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=50)
    broken = app[ACCOUNT].break_email(2)
    private = {p.values["emailAddress"] for p in app[ACCOUNT].people}
    run = await sync(connector(base, session))
    assert len(run.subjects) == 48 and len(run.rejected) == 2
    assert all("email" in reason for reason in run.rejected)
    assert leaked(private, *run.trace) == []
    assert not [s for s in run.subjects if s["email"] in private]
    assert len(broken) == 2
    # The bundled mapping reads only the business address.
    mapping = load_mapping(bundled_mapping("loket"))
    assert "contactInformation.emailAddress" not in Projector(mapping, KEY).source_fields


async def test_bsn_iban_and_wages_are_never_asked_for(
    serve: Callable[..., Any], session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=120)
    sensitive = sensitive_values(app)
    run = await sync(connector(base, session))
    asked = " ".join(r.path for r in app[CONTROL].log)
    for endpoint in ("citizenservicenumber", "paymentinformationsepa", "wages"):
        assert endpoint not in asked
    assert leaked(sensitive, *run.trace, caplog.text) == []


async def test_an_expired_access_token_is_replaced_once(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=300)
    loket = connector(base, session)
    auth = app[AUTHORIZATION]

    def expire_before_third(n: int) -> None:
        if n == 2:
            auth.expire_access_tokens()

    run = await sync(loket, before_page=expire_before_third)
    assert len(run.by_id()) == 300
    assert [form["grant_type"] for form in auth.token_requests] == ["refresh_token"] * 2
    statuses = [r.status for r in app[CONTROL].log]
    assert statuses.count(401) == 1 and loket.stats.retries == 0


async def test_a_token_is_renewed_before_it_expires(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """A token living 60 s is within the minute's margin at once: every request gets a
    fresh one, and with rotation each refresh uses the previous answer's refresh token."""
    app, base = await serve(people=100, token_ttl=60.0)
    loket = connector(base, session)
    run = await sync(loket)
    assert len(run.subjects) == 100
    auth = app[AUTHORIZATION]
    api = [r for r in app[CONTROL].log if r.path != TOKEN_PATH]
    assert len(auth.token_requests) == len(api) and 401 not in [r.status for r in app[CONTROL].log]
    assert loket.tokens is not None and auth.refresh_tokens == {loket.tokens.refresh_token}
    # The app authenticates in the form body, as Loket's integrations do (`client_auth`).
    assert {(f["client_id"], f["client_secret"]) for f in auth.token_requests} == {
        (EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET)
    }


async def test_a_refused_refresh_token_is_an_auth_error_without_the_body(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    wrong = {**LOGIN, "refresh_token": "revoked-by-the-admin"}
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, credentials=wrong))
    assert caught.value.kind == "auth" and not caught.value.retryable
    assert "invalid_grant" in str(caught.value) and "connect the source again" in str(caught.value)
    assert len(app[CONTROL].log) == 1
    bad_client = {**LOGIN, "client_secret": "not-it"}
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, credentials=bad_client))
    assert caught.value.kind == "auth" and "invalid_client" in str(caught.value)


def test_credentials_and_settings_are_checked_before_any_request() -> None:
    projector = Projector(load_mapping(MAPPINGS / "loket.toml"), KEY)
    for credentials, settings, kind in (
        ({"client_id": "a", "refresh_token": "r"}, {}, "auth"),
        ({"client_secret": "b", "refresh_token": "r"}, {}, "auth"),
        (LOGIN, {"page_size": 0}, "config"),
        (LOGIN, {"page_size": 1001}, "config"),
        (LOGIN, {"employer_id": "../../admin"}, "config"),
        (LOGIN, {"requests_per_minute": True}, "config"),
        (LOGIN, {"token_url": "ftp://oauth.loket.nl/token"}, "config"),
        (LOGIN, {"token_url": "https://user:pw@oauth.loket.nl/token"}, "config"),
        (LOGIN, {"authorize_url": "javascript:alert(1)"}, "config"),
        (LOGIN, {"authorize_url": 7}, "config"),
    ):
        config = ConnectorConfig("loket", "https://api.loket.nl/v2", credentials, settings)
        with pytest.raises(ConnectorError) as caught:
            LoketConnector(config, projector, session=None)  # type: ignore[arg-type]
        assert caught.value.kind == kind, settings


async def test_a_connector_nobody_connected_fails_saying_so_without_a_request(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Created with the app's id and secret only (before "Connect with Loket"): the
    connector is made, and its first page fails plainly before anything is sent."""
    app, base = await serve()
    app_only = {"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET}
    loket = connector(base, session, credentials=app_only)
    with pytest.raises(ConnectorError) as caught:
        await loket.fetch_page(PageRequest(SyncMode.FULL))
    assert caught.value.kind == "auth" and "not connected" in str(caught.value)
    assert not caught.value.retryable
    assert app[CONTROL].log == [] and app[AUTHORIZATION].token_requests == []


def test_the_oauth_endpoints_follow_the_api_host() -> None:
    assert token_url_for("https://api.loket.nl/v2") == "https://oauth.loket.nl/token"
    assert token_url_for("https://api.loket-acc.nl/v2") == "https://oauth.loket-acc.nl/token"
    assert token_url_for("http://127.0.0.1:8080/v2") == "http://127.0.0.1:8080/token"
    assert token_url_for("https://api.loket.nl/v2", "https://x.example/t") == "https://x.example/t"
    assert authorize_url_for("https://api.loket.nl/v2") == "https://oauth.loket.nl/authorize"
    assert authorize_url_for("https://api.loket-acc.nl/v2") == (
        "https://oauth.loket-acc.nl/authorize"
    )
    assert authorize_url_for("http://127.0.0.1:8080/v2") == "http://127.0.0.1:8080/authorize"
    server = authorization_server("https://api.loket-acc.nl/v2", {})
    assert (server.authorize_url, server.token_url) == (
        "https://oauth.loket-acc.nl/authorize", "https://oauth.loket-acc.nl/token",
    )  # fmt: skip
    assert server.scopes == ("all",) and server.client_auth == "post"
    assert server.vendor == "Loket"
    # The settings win: what the emulator's connectors are given.
    settings = CONNECTOR_TYPE.settings_for_emulator("http://127.0.0.1:8080/v2")
    moved = authorization_server("https://api.loket.nl/v2", settings)
    assert moved.authorize_url == "http://127.0.0.1:8080/authorize"
    assert moved.token_url == "http://127.0.0.1:8080/token"
    assert CONNECTOR_TYPE.authorization is authorization_server
    assert "refresh_token" not in CONNECTOR_TYPE.credential_keys


async def test_the_token_endpoint_is_held_to_the_address_rules(
    serve: Callable[..., Any],
) -> None:
    app, base = await serve()
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(base, guarded))
    assert caught.value.kind == "config" and "allow_private_sources" in str(caught.value)
    assert app[CONTROL].log == []


async def test_a_429_teaches_the_pacer_the_budget(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """Invented: Loket publishes no limit; the emulator's is a fixed window."""
    app, base = await serve(people=400, rate_limit=(5, 1.0))
    loket = connector(base, session, page_size=50)
    run = await sync(loket)
    assert len(run.by_id()) == 400
    jobs = sum(len(p.employments) for p in app[ACCOUNT].people)
    pages = 2 * -(-jobs // 50) + 400 // 50  # entities, employments, employees
    statuses = [r.status for r in app[CONTROL].log]
    # token, employers, the pages, and the one refused request again
    assert statuses.count(429) == 1 and len(statuses) == 1 + 1 + pages + 1
    assert loket.pacer.learned is not None and loket.pacer.learned.limit == 5


async def test_a_known_budget_is_kept_without_a_single_429(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=150, rate_limit=(20, 60.0))
    loket = connector(base, session, page_size=50, requests_per_minute=21)
    run = await sync(loket)
    assert len(run.by_id()) == 150
    assert 429 not in [r.status for r in app[CONTROL].log]


# --------------------------------------------------------------------------- hostile answers


async def test_malformed_employees_are_quarantined_with_a_reason(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    people = app[ACCOUNT].people
    people[5].id = ""  # an employee without an id
    people[9].values["businessEmailAddress"] = "not an address"
    run = await sync(connector(base, session))
    assert run.fetched == 250 and len(run.subjects) == 248
    assert len(run.rejected) == 2
    assert "identity field id is empty" in run.rejected
    assert any("email" in reason for reason in run.rejected)
    assert leaked({"not an address"}, *run.rejected) == []


@pytest.mark.parametrize(
    "answer",
    [
        {"items": []},  # no _embedded
        {"_embedded": {"id": 1}, "totalPages": 1},  # not a list
        {"_embedded": [], "totalPages": "one"},
        [],
    ],
)
async def test_a_page_not_in_the_envelope_fails_as_malformed(
    aiohttp_server: Any, session: aiohttp.ClientSession, answer: Any
) -> None:
    hits: list[str] = []

    async def issue(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "at", "token_type": "bearer", "expires_in": 60})

    async def odd(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response(answer)

    stub = web.Application()
    stub.router.add_post("/token", issue)
    stub.router.add_get("/v2/providers/employers", odd)
    server = await aiohttp_server(stub, host="127.0.0.1")
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(str(server.make_url("/v2")), session))
    assert caught.value.kind == "malformed"
    assert len(hits) == FAST.attempts


async def test_a_server_ignoring_the_page_number_stops_the_run(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    """A stand-in for a Loket that answers its first page whatever `pageNumber` says."""

    async def issue(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "at", "token_type": "bearer", "expires_in": 60})

    async def first_page(request: web.Request) -> web.Response:
        return web.json_response(
            {"_embedded": [{"id": "e-1"}], "currentPage": 1, "pageSize": 1, "totalPages": 5}
        )

    stub = web.Application()
    stub.router.add_post("/token", issue)
    stub.router.add_get("/v2/providers/employers", first_page)
    server = await aiohttp_server(stub, host="127.0.0.1")
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(str(server.make_url("/v2")), session))
    assert caught.value.kind == "refused" and "page number" in str(caught.value)


def test_error_bodies_give_a_code_never_their_description() -> None:
    """Invented: Loket's error body shape (`messages[].code/description`)."""
    projector = Projector(load_mapping(MAPPINGS / "loket.toml"), KEY)
    config = ConnectorConfig("loket", "https://api.loket.nl/v2", LOGIN, {})
    loket = LoketConnector(config, projector, session=None)  # type: ignore[arg-type]
    description = "Werknemer 123456782 (geboren 1980-01-01) bestaat niet"
    body = {"messages": [{"code": 9123, "type": "Error", "description": description}]}
    error = loket.http_error(422, orjson.dumps(body), None)
    assert error.kind == "config" and "[error code 9123]" in str(error)
    assert description not in str(error)
    error = loket.http_error(500, ("{" + description).encode(), None)
    assert description not in str(error) and error.kind == "unavailable"
    limited = loket.http_error(429, b"", None)
    assert limited.kind == "rate_limited" and limited.retry_after == 1.0


async def test_huge_endless_and_redirecting_answers_are_refused(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    # Without rotation: each connector here starts from the same refresh token.
    app, base = await serve(rotate=False)
    control = app[CONTROL]
    control.inject(Fault("huge", size=None))  # endless, on the token request
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session, max_response_bytes=64 * 1024))
    assert caught.value.kind == "too_large"
    control.inject(Fault("error", status=302, location="http://127.0.0.1:9/steal"))
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(base, session))
    assert caught.value.kind == "config" and "redirected" in str(caught.value)
    control.inject(Fault("truncate", path="/v2/"), Fault("truncate", path="/v2/"))
    run = await sync(connector(base, session))
    assert len(run.by_id()) == 250


# --------------------------------------------------------------------------- the gateway


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "source-worker"])
async def test_a_gateway_sync_keeps_the_rotated_token_sealed_and_leaks_nothing(
    serve: Callable[..., Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    workers: int,
) -> None:
    """Through the whole gateway (engine, store, ledger) on SQLite: two syncs, each
    rotating the refresh token; the gateway stores the newest one sealed and uses it the
    next time, and no sensitive value is in the data directory's files (WAL included) or
    the logs. With a source worker, the token rotates in the worker's connector and
    crosses back to be kept; the worker's own output (stderr) is checked too."""
    caplog.set_level(logging.DEBUG)
    app, base = await serve(people=300, employers=2, leaver_share=0.05)
    account = app[ACCOUNT]
    auth = app[AUTHORIZATION]
    sensitive = sensitive_values(app)
    data = tmp_path / "data"
    services = Services.open(
        Settings(
            data_dir=data,
            admin_token="l" * 32,
            allow_private_sources=True,
            source_processes=workers,
            log_level="DEBUG",
        )
    )
    now = datetime.now(UTC)
    try:
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme", now, by=by)
        create_connector(
            services.store, services.box, tenant="acme", by=by, connector_id="payroll",
            type_name="loket", base_url=base, credentials=LOGIN, now=now,
            mapping_text=bundled_mapping("loket").read_text(), settings={"page_size": 100},
        )  # fmt: skip
        grant(services.store, by=by, connector="payroll", purpose="p", now=now)
        full = await services.engine.sync("acme", "payroll", SyncMode.FULL)
        first = connector_credentials(services.box, services.store.get_connector("acme", "payroll"))
        account.retire(4)
        account.remove(2)
        again = await services.engine.sync("acme", "payroll", SyncMode.INCREMENTAL)
        record = services.store.get_connector("acme", "payroll")
        stored = connector_credentials(services.box, record)
    finally:
        services.close()
    assert full.status == again.status == "succeeded", (full.error, again.error)
    assert again.mode == "full"  # full_only: every run reads everyone
    assert again.counts["deleted"] == 4 + 2  # leavers and the deleted
    assert first["refresh_token"] != EMULATOR_REFRESH_TOKEN
    assert stored["refresh_token"] != first["refresh_token"]
    assert auth.refresh_tokens == {stored["refresh_token"]}
    assert stored["refresh_token"].encode() not in record.sealed_credentials
    sensitive |= {stored["refresh_token"], first["refresh_token"]}
    assert not [v for v in sensitive if v in caplog.text]
    assert not [v for v in sensitive if v in capfd.readouterr().err]
    for path in sorted(data.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            assert not [v for v in sensitive if v.encode() in blob], path.name
