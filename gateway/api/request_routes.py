"""Admin routes of data-subject requests as records (`gateway.lifecycle.requests`).

`POST .../requests` enters one (admins), `GET .../requests[?state=]` and `GET
.../requests/{request}` read them (admins and auditors), `POST .../requests/{request}/close`
ends one with an outcome code (admins). Each step is on the tenant's ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    ErasureReceipt,
    RequestClose,
    RequestCreate,
    RequestList,
    RequestOut,
    RequestsQuery,
)
from gateway.lifecycle import requests
from gateway.store.protocols import Store
from gateway.store.records import DsrRequest


def request_out(
    r: DsrRequest, now: datetime, receipts: Sequence[tuple[str, str, datetime]] = ()
) -> RequestOut:
    return RequestOut(
        id=r.id, kind=r.kind, requester=r.requester, received_at=r.received_at,
        due_at=r.due_at, subject_ids=list(r.subject_ids), state=r.state, outcome=r.outcome,
        closed_at=r.closed_at, closed_by=r.closed_by,
        overdue=r.state == "open" and r.due_at < now,
        receipts=[ErasureReceipt(subject_id=sid, consumer_id=c, acknowledged_at=at)
                  for sid, c, at in receipts if sid in r.subject_ids],
    )  # fmt: skip


def _with_receipts(store: Store, rows: Sequence[DsrRequest], now: datetime) -> list[RequestOut]:
    """An erasure request shows each destination's receipt for its keyed ids."""
    ids = sorted({sid for r in rows if r.kind == "erasure" for sid in r.subject_ids})
    receipts = store.erasure_receipts(rows[0].tenant, ids) if ids else []
    return [request_out(r, now, receipts if r.kind == "erasure" else ()) for r in rows]


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
    out = await store_call(lambda: _with_receipts(s.store, [made], now)[0])
    return model_response(out, 201, headers={"Location": location(request, made.id)})


async def list_all(request: web.Request) -> web.Response:
    query = query_params(request, RequestsQuery)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    now = s.clock()

    def read() -> list[RequestOut]:
        return _with_receipts(s.store, s.store.list_requests(tenant, query.state), now)

    return model_response(RequestList(requests=await store_call(read)))


async def get_one(request: web.Request) -> web.Response:
    tenant, request_id = request.match_info["tenant"], request.match_info["request"]
    s = services_of(request)
    now = s.clock()

    def read() -> RequestOut:
        return _with_receipts(s.store, [s.store.get_request(tenant, request_id)], now)[0]

    return model_response(await store_call(read))


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
    return model_response(await store_call(lambda: _with_receipts(s.store, [closed], now)[0]))


def add_routes(router: web.UrlDispatcher, *, tenant_path: str) -> None:
    router.add_post(tenant_path + "/requests", create)
    router.add_get(tenant_path + "/requests", list_all, allow_head=False)
    router.add_get(tenant_path + r"/requests/{request:dsr_[0-9a-f]{16}}", get_one,
                   allow_head=False)  # fmt: skip
    router.add_post(tenant_path + r"/requests/{request:dsr_[0-9a-f]{16}}/close", close)
