"""Personio: the emulator keeps Personio's v1 contract, and the connector relies only on that.

Everything runs over real HTTP against the emulator on 127.0.0.1. What the contract suite
cannot know: the `{label, value, type, universal_id}` shape and `attributes[]` projection,
the token's life (stable, refreshed before its end and after a refusal), leavers by status
and termination date, Personio's error bodies and rate limits, and that the token endpoint
is held to the same address rules as the employee list.

Marked "invented" below: behaviour the emulator had to choose where Personio documents
nothing (see `connectors/personio/emulator.py`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL
from connectors.http import source_session
from connectors.netguard import PublicOnlyConnector
from connectors.personio.client import PersonioConnector, mapped_attributes
from connectors.personio.emulator import (
    ACCOUNT,
    AUTH_PATH,
    EMPLOYEES_PATH,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    make_app,
)
from connectors.personio.synthetic import BERLIN, SENSITIVE_ATTRIBUTES, spell
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from tests.contract.harness_personio import HARNESS
from tests.contract.suite import leaked, sync

from .conftest import MAPPINGS

KEY = b"personio tests: 32-byte tenant k"
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)
LOGIN = {"client_id": EMULATOR_CLIENT_ID, "client_secret": EMULATOR_CLIENT_SECRET}
MAPPED = ["email", "first_name", "last_name", "position", "status", "termination_date"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def serve(aiohttp_server: Any) -> Callable[..., Any]:
    """Start an emulator; returns (app, base URL)."""

    async def start(**options: Any) -> tuple[web.Application, str]:
        options.setdefault("people", 250)
        options.setdefault("leaver_share", 0.0)
        app = make_app(**options)
        server = await aiohttp_server(app, host="127.0.0.1")
        return app, str(server.make_url("")).rstrip("/")

    return start


def connector(
    base: str,
    session: aiohttp.ClientSession,
    *,
    secret: str = EMULATOR_CLIENT_SECRET,
    **settings: Any,
) -> PersonioConnector:
    credentials = {"client_id": EMULATOR_CLIENT_ID, "client_secret": secret}
    config = ConnectorConfig("personio", base, credentials=credentials, settings=settings)
    projector = Projector(load_mapping(MAPPINGS / "personio.toml"), KEY)
    return PersonioConnector(config, projector, session, retry=FAST)


async def token(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(base + AUTH_PATH, json=LOGIN) as response:
        assert response.status == 200
        body = await response.json()
    assert body["success"] is True and body["data"]["expires_in"] > 0
    value: str = body["data"]["token"]
    return value


# --------------------------------------------------------------------------- the emulator


async def test_a_token_is_stable_and_in_personio_shape(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve()
    first = await token(session, base)
    assert first.startswith("papi-")
    # A form body works too, and the same stable token comes back.
    async with session.post(base + AUTH_PATH, data=LOGIN) as response:
        assert (await response.json())["data"]["token"] == first


async def test_refusals_have_personio_error_bodies(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve()
    wrong = {**LOGIN, "client_secret": "nope"}
    async with session.post(base + AUTH_PATH, json=wrong) as response:
        assert response.status == 401  # invented: Personio documents no status for it
        body = await response.json()
    assert body["success"] is False and set(body["error"]) == {"code", "message"}
    async with session.get(base + EMPLOYEES_PATH) as response:
        assert response.status == 401
        assert (await response.json())["error"]["message"] == "Authorization is not provided"
    auth = {"Authorization": "Bearer papi-made-up"}
    async with session.get(base + EMPLOYEES_PATH, headers=auth) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == 403


async def test_attributes_project_and_credentials_bound_them(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve(readable=frozenset({"id", "first_name", "email", "fix_salary"}))
    auth = {"Authorization": f"Bearer {await token(session, base)}"}
    query = "limit=3&offset=0&attributes[]=first_name&attributes[]=position&attributes[]=email"
    async with session.get(f"{base}{EMPLOYEES_PATH}?{query}", headers=auth) as response:
        body = await response.json()
        assert response.headers["authorization"] == auth["Authorization"]
    assert body["metadata"] == {"total_elements": 250, "current_page": 0, "total_pages": 84}
    assert (body["offset"], body["limit"]) == (0, 3)
    person = body["data"][0]
    assert person["type"] == "Employee"
    # position is asked for but not readable; fix_salary readable but not asked for.
    assert set(person["attributes"]) == {"id", "first_name", "email"}
    assert set(person["attributes"]["first_name"]) == {"label", "value", "type", "universal_id"}
    async with session.get(f"{base}{EMPLOYEES_PATH}?limit=2", headers=auth) as response:
        everything = (await response.json())["data"][0]["attributes"]
    assert set(everything) == {"id", "first_name", "email", "fix_salary"}


async def test_paging_by_offset_and_limit(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve(people=120)
    auth = {"Authorization": f"Bearer {await token(session, base)}"}
    async with session.get(base + EMPLOYEES_PATH, headers=auth) as response:
        default = await response.json()
    assert len(default["data"]) == 50  # Personio's default page since 2025
    async with session.get(f"{base}{EMPLOYEES_PATH}?limit=100&offset=110", headers=auth) as r:
        tail = await r.json()
    assert len(tail["data"]) == 10 and tail["metadata"]["current_page"] == 1
    ids = [p["attributes"]["id"]["value"] for p in tail["data"]]
    assert ids == sorted(ids)
    async with session.get(f"{base}{EMPLOYEES_PATH}?limit=101", headers=auth) as response:
        assert response.status == 400  # invented: the status Personio gives is not documented
        assert (await response.json())["success"] is False


async def test_updated_since_counts_only_the_named_attributes(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    account = app[ACCOUNT]
    auth = {"Authorization": f"Bearer {await token(session, base)}"}
    since = (datetime.now(BERLIN) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    account.touch(2)  # new positions
    now = datetime.now(UTC)
    for person in account.people[:3]:
        person.set("fix_salary", 9999.99, now)  # a raise: nothing the gateway reads

    async def count(extra: str) -> int:
        url = f"{base}{EMPLOYEES_PATH}?updated_since={since}{extra}"
        async with session.get(url, headers=auth) as response:
            return int((await response.json())["metadata"]["total_elements"])

    assert await count("") == 5
    assert await count("&attributes[]=position&attributes[]=email") == 2
    assert await count("&attributes[]=fix_salary") == 3


async def test_the_employee_list_is_rate_limited_as_personio_documents(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    _, base = await serve()
    auth = {"Authorization": f"Bearer {await token(session, base)}"}
    statuses = []
    for _ in range(16):
        async with session.get(f"{base}{EMPLOYEES_PATH}?limit=1", headers=auth) as response:
            statuses.append(response.status)
            retry_after = response.headers.get("Retry-After")
    assert statuses == [200] * 15 + [429]
    assert retry_after is not None and int(retry_after) >= 1  # invented: the header


# --------------------------------------------------------------------------- the connector


async def test_the_connector_asks_only_for_mapped_attributes(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    run = await sync(connector(base, session))
    assert len(run.subjects) == 250
    pages = app[CONTROL].requests_to(EMPLOYEES_PATH)
    assert len(pages) == 3
    for request in pages:
        query = parse_qs(request.query)
        assert sorted(query["attributes[]"]) == MAPPED
        assert query["limit"] == ["100"]
    assert [parse_qs(r.query)["offset"] for r in pages] == [["0"], ["100"], ["200"]]
    assert mapped_attributes(frozenset({"attributes.id.value", "attributes.x.label"})) == []


async def test_a_token_that_ran_out_is_replaced_once(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    account = app[ACCOUNT]
    personio = connector(base, session, page_size=50)

    def expire_before_third(n: int) -> None:
        if n == 2:
            account.expire_tokens()

    run = await sync(personio, before_page=expire_before_third)
    assert len(run.by_id()) == 250
    log = [(r.path, r.status) for r in app[CONTROL].log]
    assert log.count((AUTH_PATH, 200)) == 2
    assert log.count((EMPLOYEES_PATH, 403)) == 1
    assert personio.stats.retries == 0


async def test_a_token_is_renewed_before_it_expires(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    # A token good for 61 s is renewed 60 s early: after a second's pause, before use.
    app, base = await serve(token_ttl=61.0)
    personio = connector(base, session, page_size=100)

    def pause(n: int) -> None:
        if n == 1:
            time.sleep(1.05)

    await sync(personio, before_page=pause)
    log = [(r.path, r.status) for r in app[CONTROL].log]
    assert log[:3] == [(AUTH_PATH, 200), (EMPLOYEES_PATH, 200), (AUTH_PATH, 200)]
    assert all(status == 200 for _, status in log)


async def test_a_refused_renewal_is_an_auth_error_without_the_message(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    account = app[ACCOUNT]
    personio = connector(base, session, page_size=50)

    def revoke(n: int) -> None:
        if n == 1:
            account.client_secret = "rotated-by-an-admin"
            account.expire_tokens()

    with pytest.raises(ConnectorError) as caught:
        await sync(personio, before_page=revoke)
    assert caught.value.kind == "auth" and not caught.value.retryable
    assert "HTTP 401" in str(caught.value) and "error code 0" in str(caught.value)
    assert "Wrong credentials" not in str(caught.value)


async def test_leavers_by_status_and_by_termination_date(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    account = app[ACCOUNT]
    before = await sync(connector(base, session))
    assert len(before.active_ids()) == 250
    account.retire(2)  # inactive, terminated a week ago
    account.terminate_later(3)  # notice given: still employed
    now = datetime.now(UTC)
    quiet = next(p for p in account.people if p.values["status"] == "active"
                 and not p.values["termination_date"])  # fmt: skip
    quiet.set("termination_date", spell((now - timedelta(days=1)).date()), now)
    after = await sync(connector(base, session))
    assert len(after.active_ids()) == 250 - 3
    changes = await sync(connector(base, session), SyncMode.INCREMENTAL, since=before.watermark)
    assert changes.fetched == 6
    assert {s["subject_id"] for s in changes.subjects if not s["active"]} == (
        before.active_ids() - after.active_ids()
    )


async def test_pacing_keeps_under_the_burst_limit(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve(people=200, per_second=10, per_minute=None)
    personio = connector(base, session, page_size=10, burst_per_second=10)
    run = await sync(personio)
    assert len(run.by_id()) == 200
    statuses = [r.status for r in app[CONTROL].log]
    assert len(statuses) == 22 and 429 not in statuses


async def test_the_token_endpoint_is_held_to_the_address_rules(
    serve: Callable[..., Any],
) -> None:
    app, base = await serve()
    with pytest.raises(ConnectorError) as refused:
        source_session(base)
    assert refused.value.kind == "config"
    # Past the URL check (a name that resolved publicly once), the connection itself is
    # refused: the token request never reaches the loopback emulator.
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as guarded:
        with pytest.raises(ConnectorError) as caught:
            await sync(connector(base, guarded))
    assert caught.value.kind == "config" and "allow_private_sources" in str(caught.value)
    assert app[CONTROL].log == []


async def test_nothing_sensitive_in_pages_errors_or_logs(
    caplog: pytest.LogCaptureFixture, serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    caplog.set_level("DEBUG")
    app, base = await serve()
    sensitive = HARNESS.sensitive_values(app)
    assert any(name.startswith("dynamic_") for name in SENSITIVE_ATTRIBUTES) and sensitive
    run = await sync(connector(base, session))
    assert leaked(sensitive, *run.trace, caplog.text) == []


async def test_malformed_employees_are_quarantined_with_a_reason(
    serve: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    app, base = await serve()
    people = app[ACCOUNT].people
    people[3].values["id"] = None  # an employee without an id
    people[7].values["termination_date"] = "soon"  # not a date
    run = await sync(connector(base, session))
    assert run.fetched == 250 and len(run.subjects) == 248
    assert sorted(run.rejected) == [
        "identity field attributes.id.value is missing",
        "leaver field attributes.termination_date.value: is not a date "
        "(expected YYYY-MM-DD or DD-MM-YYYY)",
    ]


async def test_a_server_ignoring_the_offset_stops_the_run(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    """A stand-in for a Personio that answers its first page whatever `offset` says."""

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "data": {"token": "papi-x", "expires_in": 60}})

    async def first_page(request: web.Request) -> web.Response:
        people = [
            {
                "type": "Employee",
                "attributes": {"id": {"value": n}, "email": {"value": f"p{n}@x.eu"}},
            }
            for n in range(100)
        ]
        return web.json_response({"success": True, "offset": 0, "limit": 100, "data": people})

    stuck = web.Application()
    stuck.router.add_post(AUTH_PATH, login)
    stuck.router.add_get(EMPLOYEES_PATH, first_page)
    server = await aiohttp_server(stuck, host="127.0.0.1")
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(str(server.make_url("")).rstrip("/"), session))
    assert caught.value.kind == "refused" and "offset" in str(caught.value)


async def test_an_unsuccessful_200_is_retried_then_fails_as_malformed(
    aiohttp_server: Any, session: aiohttp.ClientSession
) -> None:
    """A stand-in for a Personio that answers 200 with `success: false` (no list)."""
    calls: list[str] = []

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "data": {"token": "papi-x", "expires_in": 60}})

    async def broken(request: web.Request) -> web.Response:
        calls.append(request.path)
        error = {"code": 500, "message": "Lotte de Graaf, IBAN NL91ABNA0417164300"}
        return web.json_response({"success": False, "error": error})

    app = web.Application()
    app.router.add_post(AUTH_PATH, login)
    app.router.add_get(EMPLOYEES_PATH, broken)
    server = await aiohttp_server(app, host="127.0.0.1")
    with pytest.raises(ConnectorError) as caught:
        await sync(connector(str(server.make_url("")).rstrip("/"), session))
    assert caught.value.kind == "malformed" and len(calls) == FAST.attempts
    assert "IBAN" not in str(caught.value) and "Lotte" not in str(caught.value)
