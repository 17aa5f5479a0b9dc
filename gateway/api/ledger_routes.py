"""Admin routes that hand a tenant's signed checkpoints to its auditor, the pusher, and the
breach scope report read from the ledger.

A checkpoint kept only by the operator proves little against the operator: whoever holds
the database and the signing key could rebuild a different history and sign it. Once the
tenant's auditor keeps checkpoints of their own, a rewrite no longer matches them. So the
auditor can page through every checkpoint written since one they hold (`GET
.../checkpoints?after=<seq>`, oldest first), fetch the latest, and configure a URL that
receives each new one (`PUT/GET/DELETE .../checkpoint-push`; the pusher is
`gateway.delivery.checkpoint_push`, run by the app as a background task).

Mounted by `gateway.api.runs.add_routes`; the pusher by `gateway.api.app.make_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.api.auth import acting
from gateway.api.httpkit import (
    SERVICES,
    in_background,
    model_response,
    query_params,
    read_body,
    services_of,
    store_call,
)
from gateway.api.ledger_models import (
    BreachQuery,
    BreachScopeOut,
    CheckpointOut,
    CheckpointPage,
    CheckpointPushOut,
    CheckpointPushSet,
    CheckpointsQuery,
    ProcessingRecordOut,
    RecordQuery,
)
from gateway.api.problems import Problem, invalid
from gateway.delivery import checkpoint_push
from gateway.ledger.checkpoint import CheckpointError, read_unverified
from gateway.lifecycle import breach
from gateway.lifecycle import processing_record as records
from gateway.store.records import CheckpointPush, StoredCheckpoint


def checkpoint_out(stored: StoredCheckpoint) -> CheckpointOut:
    try:
        when = read_unverified(stored.note).time
    except CheckpointError:
        raise Problem(
            500, "a stored checkpoint is unreadable; run `sluis audit verify` on this gateway"
        ) from None
    return CheckpointOut(seq=stored.seq, size=stored.size, time=when, note=stored.note)


async def list_checkpoints(request: web.Request) -> web.Response:
    query = query_params(request, CheckpointsQuery)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    ledger = s.store.ledger
    rows = await store_call(ledger.checkpoints_after, tenant, query.after, query.limit)
    latest = rows[-1] if rows else await store_call(ledger.latest_checkpoint, tenant)
    origin = read_unverified(latest.note).origin if latest is not None else None
    page = CheckpointPage(
        tenant=tenant,
        origin=origin,
        checkpoints=[checkpoint_out(r) for r in rows],
        next_after=rows[-1].seq if rows else query.after,
    )
    return model_response(page)


async def latest_checkpoint(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    latest = await store_call(s.store.ledger.latest_checkpoint, tenant)
    if latest is None:
        raise Problem(404, f"not found: tenant {tenant}'s log has no checkpoint yet")
    return model_response(checkpoint_out(latest))


def push_out(push: CheckpointPush) -> CheckpointPushOut:
    return CheckpointPushOut(
        tenant=push.tenant,
        url=push.url,
        configured_at=push.configured_at,
        pushed_seq=push.pushed_seq,
        pushed_at=push.pushed_at,
        failed_at=push.failed_at,
        failure=push.failure,
    )


async def put_push(request: web.Request) -> web.Response:
    body = await read_body(request, CheckpointPushSet)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    problem = checkpoint_push.url_problem(body.url, allow_private=s.settings.allow_private_sources)
    if problem is not None:
        raise invalid("url", problem)
    push = await store_call(
        checkpoint_push.configure, s.store, body.url, now=s.clock(), by=acting(request, tenant)
    )
    return model_response(push_out(push))


async def get_push(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    push = await store_call(s.store.get_checkpoint_push, tenant)
    if push is None:
        raise Problem(404, f"not found: tenant {tenant} has no checkpoint push")
    return model_response(push_out(push))


async def delete_push(request: web.Request) -> web.Response:
    """Stop pushing; the answer is the setting that was removed."""
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    push = await store_call(s.store.get_checkpoint_push, tenant)
    if push is None or not await store_call(
        checkpoint_push.clear, s.store, now=s.clock(), by=acting(request, tenant)
    ):
        raise Problem(404, f"not found: tenant {tenant} has no checkpoint push")
    return model_response(push_out(push))


async def checkpoint_pusher(app: web.Application) -> AsyncIterator[None]:
    """The app's background pusher (`cleanup_ctx`): started with the app, cancelled and
    awaited at shutdown, before the services are closed."""
    s = app[SERVICES]
    pusher = checkpoint_push.CheckpointPusher(
        s.store,
        s.metrics,
        s.clock,
        allow_private=s.settings.allow_private_sources,
        interval=s.settings.checkpoint_push_interval,
        owner=s.engine.replica,
    )
    async with in_background(pusher.run()):
        yield


async def breach_report(request: web.Request) -> web.Response:
    """`GET .../reports/breach?from=&to=[&connector=][&ids=false]`: the window's scope from
    the tenant's ledger (`gateway.lifecycle.breach`)."""
    query = query_params(request, BreachQuery)
    if query.end <= query.start:
        raise invalid("to", "the window must end after it starts (`to` after `from`)")
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    try:
        scope = await store_call(
            breach.breach_scope, s.store.ledger, tenant, query.start, query.end,
            connector=query.connector,
        )  # fmt: skip
    except breach.ReportError as exc:
        raise Problem(422, str(exc), slug="bad-window") from None
    return model_response(
        BreachScopeOut.model_validate(breach.scope_document(scope, ids=query.ids))
    )


async def processing_record(request: web.Request) -> web.Response:
    """`GET .../reports/processing-record[?format=markdown]`: the Art. 30(2) record."""
    query = query_params(request, RecordQuery)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    processor = records.processor_of(s.settings)
    record = await store_call(records.processing_record, s.store, tenant, processor, s.clock())
    if query.format == "markdown":
        return web.Response(
            text=records.render_markdown(record),
            content_type="text/markdown",
            headers={"Cache-Control": "no-store"},
        )
    return model_response(ProcessingRecordOut.model_validate(record))


def add_routes(router: web.UrlDispatcher, *, tenant_path: str) -> None:
    router.add_get(tenant_path + "/reports/processing-record", processing_record, allow_head=False)
    router.add_get(tenant_path + "/reports/breach", breach_report, allow_head=False)
    router.add_get(tenant_path + "/checkpoints", list_checkpoints, allow_head=False)
    router.add_get(tenant_path + "/checkpoints/latest", latest_checkpoint, allow_head=False)
    router.add_put(tenant_path + "/checkpoint-push", put_push)
    router.add_get(tenant_path + "/checkpoint-push", get_push, allow_head=False)
    router.add_delete(tenant_path + "/checkpoint-push", delete_push)
