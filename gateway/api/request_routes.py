"""Admin routes of data-subject requests as records (`gateway.lifecycle.requests`).

`POST .../requests` enters one (admins), `GET .../requests[?state=]` and `GET
.../requests/{request}` read them (admins and auditors), `POST .../requests/{request}/close`
ends one with an outcome code (admins). Each step is on the tenant's ledger.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from gateway.api.auth import acting
from gateway.api.httpkit import (
    location,
    model_response,
    query_params,
    read_body,
    services_of,
    store_call,
)
from gateway.api.problems import Problem, invalid
from gateway.api.subject_models import (
    RequestClose,
    RequestCreate,
    RequestList,
    RequestOut,
    RequestsQuery,
)
from gateway.lifecycle import requests
from gateway.store.records import DsrRequest


def request_out(r: DsrRequest, now: datetime) -> RequestOut:
    return RequestOut(
        id=r.id, kind=r.kind, requester=r.requester, received_at=r.received_at,
        due_at=r.due_at, subject_ids=list(r.subject_ids), state=r.state, outcome=r.outcome,
        closed_at=r.closed_at, closed_by=r.closed_by,
        overdue=r.state == "open" and r.due_at < now,
    )  # fmt: skip


async def create(request: web.Request) -> web.Response:
    body = await read_body(request, RequestCreate)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    now = s.clock()
    try:
        made = await store_call(
            requests.open_request, s.store, acting(request, tenant), body.kind,
            body.subject_ids, received_at=body.received_at,
            due_days=s.settings.dsr_due_days, now=now,
        )  # fmt: skip
    except requests.RequestError as exc:
        raise invalid(exc.field, exc.message) from None
    return model_response(
        request_out(made, now), 201, headers={"Location": location(request, made.id)}
    )


async def list_all(request: web.Request) -> web.Response:
    query = query_params(request, RequestsQuery)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    rows = await store_call(s.store.list_requests, tenant, query.state)
    now = s.clock()
    return model_response(RequestList(requests=[request_out(r, now) for r in rows]))


async def get_one(request: web.Request) -> web.Response:
    tenant, request_id = request.match_info["tenant"], request.match_info["request"]
    s = services_of(request)
    found = await store_call(s.store.get_request, tenant, request_id)
    return model_response(request_out(found, s.clock()))


async def close(request: web.Request) -> web.Response:
    body = await read_body(request, RequestClose)
    tenant, request_id = request.match_info["tenant"], request.match_info["request"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    now = s.clock()
    try:
        closed = await store_call(
            requests.close_request, s.store, acting(request, tenant), request_id,
            state=body.root.state, outcome=body.root.outcome, now=now,
        )  # fmt: skip
    except requests.RequestError as exc:
        if exc.field == "state":  # already closed
            raise Problem(409, exc.message, slug="request-closed") from None
        raise invalid(exc.field, exc.message) from None
    return model_response(request_out(closed, now))


def add_routes(router: web.UrlDispatcher, *, tenant_path: str) -> None:
    router.add_post(tenant_path + "/requests", create)
    router.add_get(tenant_path + "/requests", list_all, allow_head=False)
    router.add_get(tenant_path + r"/requests/{request:dsr_[0-9a-f]{16}}", get_one,
                   allow_head=False)  # fmt: skip
    router.add_post(tenant_path + r"/requests/{request:dsr_[0-9a-f]{16}}/close", close)
