"""Health, readiness, metrics, problems for unknown routes and crashes, and the OpenAPI
document against the real route table and real responses."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.api.app import AccessLogger, make_app
from gateway.api.openapi import document
from gateway.runtime.services import Services
from tests.api.conftest import SEEN, Api, insert_events, setup_feed
from tests.principals import People, code

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def route_table(app: web.Application) -> set[tuple[str, str]]:
    """(path template, method) of every route, sub-apps included (HEAD left out).

    A mounted sub-app's resources already carry its prefix in `canonical`.
    """
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:
            if info.get("prefix") == "/console":
                continue  # HTML pages, not the API (tests/console/test_route_matrix.py)
            if info.get("prefix") == "/scim/v2":
                continue  # SCIM describes itself (/Schemas), checked by scim2-tester
            found |= route_table(info["app"])
            continue
        for route in resource:
            if route.method in METHODS:
                path = re.sub(r"\{(\w+):[^}]*(\{[^}]*\}[^}]*)*\}", r"{\1}", resource.canonical)
                found.add((path, route.method))
    return found


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}


def test_openapi_paths_match_the_route_table(services: Services) -> None:
    routes = route_table(make_app(services))
    assert routes == documented(document())
    # 45, live preview 2, reports 2, subjects 5, suppressions 2, requests 4, erasure ack,
    # a tenant's end 2, retention 2, push destinations 8, the SCIM token
    assert len(routes) == 74


def test_the_scim_routes_are_a_fixed_set(services: Services) -> None:
    app = make_app(services)
    scim = next(r.get_info()["app"] for r in app.router.resources()
                if r.get_info().get("prefix") == "/scim/v2")  # fmt: skip
    found = {(route.method, r.canonical.split("{connector}")[-1]) for r in scim.router.resources()
             for route in r if route.method in METHODS}  # fmt: skip
    # Users 6, ServiceProviderConfig, Schemas 2, ResourceTypes 2, .search, Users/.search
    assert len(found) == 13


def test_openapi_document_is_well_formed() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    text = str(doc)
    for ref in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert ref in schemas, ref
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            if path.startswith(("/admin/", "/feed/")):
                assert op["security"] in ([{"adminBearer": []}], [{"feedBearer": []}])
                for status in ("401", "500", *(["404"] if params else [])):
                    assert status in op["responses"], (path, method, status)
    assert "credentials" not in str(schemas["ConnectorOut"])


async def test_health_and_readiness(api: Api, services: Services) -> None:
    assert (await api.get("/healthz")).body == {"status": "ok"}
    assert (await api.get("/readyz")).body == {"status": "ok"}
    services.store.close()
    reply = await api.get("/readyz")
    assert reply.status == 503
    assert (await api.get("/healthz")).status == 200


async def test_metrics(api: Api, services: Services) -> None:
    token, _ = await setup_feed(api)
    insert_events(services, "acme", 3)
    await api.get("/feed/v1/tenants/acme/events", token=token)
    reply = await api.get("/metrics")
    assert reply.status == 200 and reply.content_type == "text/plain"
    assert 'sluis_feed_events_served_total{tenant="acme"} 3.0' in reply.text
    assert "example-employer" not in reply.text and "First" not in reply.text


async def test_openapi_is_served(api: Api) -> None:
    reply = await api.get("/openapi.json")
    assert reply.body == document()


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    for path in ("/nope", "/admin/v1/nope", "/feed/v1/tenants/acme/nope", "/admin/v2/tenants"):
        reply = await api.get(path)
        assert reply.status == 404, path
        assert reply.body["type"] == "urn:sluis:problem:not-found"
    reply = await api.call("PUT", "/admin/v1/tenants")
    assert reply.status == 405
    assert "POST" in reply.headers["Allow"]
    reply = await api.call("POST", "/healthz")
    assert reply.status == 405


async def test_a_crash_is_a_generic_500_without_data(
    aiohttp_client: Any, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "123456782 jan.jansen@example-private.nl"

    async def boom(request: web.Request) -> web.Response:
        raise ValueError(f"could not handle {secret}")

    app = make_app(services)
    app.router.add_post("/boom", boom)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=AccessLogger)
    client = await aiohttp_client(server)
    with caplog.at_level(logging.DEBUG):
        resp = await client.post("/boom?email=jan.jansen@example-private.nl", data=secret)
        text = await resp.text()
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    assert "123456782" not in text and "Traceback" not in text and "boom" not in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "ValueError" in logged and "/boom" in logged
    assert "123456782" not in logged and "example-private" not in logged
    assert not any(r.exc_info for r in caplog.records)
    assert "POST /boom 500" in logged


async def test_every_operation_answers_as_documented(
    api: Api, services: Services, people: People, oidc_issuer: str, aiohttp_server: Any
) -> None:
    """A tour of every route's success answer; the `api` fixture validates each body."""
    token, instruction = await setup_feed(api)
    insert_events(services, "acme", 3)
    t, c = "/admin/v1/tenants/acme", "/admin/v1/tenants/acme/connectors/hr"
    await api.get("/healthz")
    await api.get("/readyz")
    await api.get("/metrics")
    await api.get("/openapi.json")
    await api.get(t)
    await api.get(f"{t}/connectors")
    await api.get(c)
    await api.get(f"{c}/instructions")
    await api.get("/feed/v1/tenants/acme/events", token=token)
    await api.get(f"{t}/ledger")
    await api.get(f"{t}/ledger/proof/0")
    await api.get(f"{t}/checkpoints")
    await api.get(f"{t}/checkpoints/latest")
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()}
    await api.get(f"{t}/reports/breach", params=window)
    await api.get(f"{t}/reports/processing-record")
    found = await api.post(f"{t}/subjects/search", {"email": "person1@example-employer.nl"})
    subject = found.body["subjects"][0]["subject_id"]
    await api.post(f"{t}/subjects/export", {"subject_ids": [subject]})
    await api.post(f"{t}/subjects/rectify", {"subject_ids": [subject], "sync": False})
    await api.post(f"{t}/subjects/restrict", {"subject_ids": [subject]})
    await api.post(f"{t}/subjects/erase", {"subject_ids": [subject]})
    ack = f"/feed/v1/tenants/acme/erasures/{subject}/ack"
    await api.post(ack, None, headers={"Authorization": f"Bearer {token}"})
    await api.get(f"{t}/suppressions")
    opened = await api.post(f"{t}/requests", {"kind": "access"})
    await api.get(f"{t}/requests")
    await api.get(opened.headers["Location"])
    await api.post(opened.headers["Location"] + "/close",
                   {"state": "completed", "outcome": "nothing-held"})  # fmt: skip
    await api.delete(f"{t}/suppressions/{subject}")
    await api.call("PUT", f"{t}/retention", json={"feed_compaction_days": 7})
    await api.get(f"{t}/retention")
    await api.call("PUT", f"{t}/checkpoint-push", json={"url": "http://127.0.0.1:9/cp"})
    await api.get(f"{t}/checkpoint-push")
    await api.delete(f"{t}/checkpoint-push")
    made = await api.post(f"{t}/destinations", {"url": "http://127.0.0.1:9/hooks"})
    dest = made.headers["Location"]
    await api.get(f"{t}/destinations")
    await api.get(dest)
    await api.patch(dest, {"paused": True})
    await api.post(dest + "/secret", {"overlap_seconds": 60})
    await api.get(dest + "/dead-letters")
    await api.post(dest + "/dead-letters/replay")
    await api.delete(dest)
    await api.delete(f"{c}/instructions/{instruction}")
    await api.post(f"{c}/instructions", {"purpose": "p"})
    started = await api.post(f"{c}/syncs", {"mode": "full"})
    await api.get(started.headers["Location"])
    await api.get(f"{c}/syncs")
    await api.get("/admin/v1/tenants")
    await api.post(f"{c}/mapping-preview", {"mapping": "afas"})
    await _tour_preview(api, aiohttp_server)
    await api.call("PATCH", c, json={"interval_seconds": 600})
    consumer = (await api.get(f"{t}/consumers")).body["consumers"][0]["id"]
    await api.post(f"{t}/consumers/{consumer}/token")
    await api.post(f"{t}/connectors", {"id": "idp", "type": "scim", "mapping": "scim"})
    await api.post(f"{t}/connectors/idp/scim-token")
    await api.delete(f"{t}/consumers/{consumer}")
    await api.delete(c, params={"subjects": "keep"})
    # Accounts: who am I, step-up, tokens, invitations, the register.
    admin = people.token("acme")
    await api.get("/admin/v1/me")
    await api.post("/admin/v1/step-up", {"code": code()}, token=admin)
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    made = await api.post("/admin/v1/tokens", {"name": "ci", "expires_at": until}, token=admin)
    await api.get("/admin/v1/tokens", token=admin)
    await api.delete(f"/admin/v1/tokens/{made.body['id']}", token=admin)
    viewer = await api.post(f"{t}/accounts", {"email": "v@acme.example", "name": "V",
                                              "role": "viewer"})  # fmt: skip
    await api.get(f"{t}/accounts")
    await api.delete(f"{t}/accounts/{viewer.body['account']['id']}")
    op = await api.post("/admin/v1/operators", {"email": "o2@ops.example", "name": "O",
                                                "role": "operator"})  # fmt: skip
    await api.get("/admin/v1/operators")
    oidc = {"issuer": oidc_issuer, "client_id": "sluis", "client_secret": "s3cret-value"}
    await api.call("PUT", f"{t}/oidc", json=oidc)
    await api.get(f"{t}/oidc")
    await api.delete(f"{t}/oidc")
    await api.delete(f"/admin/v1/operators/{op.body['account']['id']}")
    # The tenant's end (operators): terminated, then destroyed once its grace period is over.
    services.settings = services.settings.model_copy(update={"tenant_grace_days": 0})
    await api.post(f"{t}/terminate", None, token=people.operator())
    await api.post(f"{t}/destroy", None, token=people.operator())
    success = {(p, m) for p, m, status in SEEN if status < 300}
    assert success >= documented(document())


async def _tour_preview(api: Api, aiohttp_server: Any) -> None:
    """The live preview needs a source that answers: an AFAS emulator."""
    from connectors.afas.emulator import EMULATOR_TOKEN
    from connectors.afas.emulator import make_app as afas_app

    source = await aiohttp_server(afas_app(people=5), host="127.0.0.1")
    await api.post("/admin/v1/tenants/acme/connectors", {
        "id": "src", "type": "afas", "base_url": str(source.make_url("/profitrestservices")),
        "credentials": {"token": EMULATOR_TOKEN}, "mapping": "afas"})  # fmt: skip
    made = await api.post("/admin/v1/tenants/acme/connectors/src/preview", {"limit": 2})
    await api.get(made.headers["Location"])


async def test_responses_are_not_cached_or_sniffed(api: Api) -> None:
    for path in ("/healthz", "/admin/v1/tenants/nope", "/nope"):
        reply = await api.get(path)
        assert reply.headers["X-Content-Type-Options"] == "nosniff", path
        assert reply.headers["Cache-Control"] == "no-store", path


async def test_the_app_runs_its_store_calls_on_its_own_worker_threads(
    tmp_path: Any, aiohttp_client: Any
) -> None:
    """From the app's start on, `asyncio.to_thread` runs on `Settings.worker_threads`
    threads named `sluis-io_N`, never more at once (asyncio's own default is the cores
    + 4, which queued 64 feed consumers' pages on 2 cores on PostgreSQL)."""
    import asyncio
    import threading
    import time

    from gateway.runtime.config import WORKER_THREADS_POSTGRES, Settings

    url = "postgresql://sluis@db.internal:5432/sluis"
    assert Settings(database_url=url).worker_thread_count == WORKER_THREADS_POSTGRES == 16
    assert Settings().worker_thread_count is None  # SQLite: asyncio's own
    assert Settings(worker_threads=8).worker_thread_count == 8
    settings = Settings(data_dir=tmp_path, admin_token="a" * 32, scheduler=False, worker_threads=3)
    services = Services.open(settings)
    try:
        await aiohttp_client(make_app(services))
        running: list[str] = []
        most = 0

        def work() -> str:
            nonlocal most
            running.append(threading.current_thread().name)
            most = max(most, len(running))
            time.sleep(0.05)
            running.pop()
            return threading.current_thread().name

        names = await asyncio.gather(*(asyncio.to_thread(work) for _ in range(9)))
        assert {n.rsplit("_", 1)[0] for n in names} == {"sluis-io"}
        assert most == 3
    finally:
        services.close()
