"""The pull feed's HTTP route: `GET /feed/v1/tenants/{tenant}/events`.

Authentication, query parsing and problem bodies live here; what a page holds, and the
ledger entries it writes, live in `gateway.delivery.feed`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from datetime import datetime
from typing import Final

from aiohttp import web

from gateway.api.httpkit import (
    bearer_token,
    model_response,
    query_params,
    services_of,
    unauthorized,
)
from gateway.api.models import TENANT_ID_PATTERN, FeedQuery
from gateway.api.problems import Problem
from gateway.api.subject_models import ErasureReceipt
from gateway.delivery.feed import (
    BadCursor,
    CursorBeyondHead,
    CursorMismatch,
    FeedDenied,
    admit,
    authenticate,
    decode_cursor,
    encode_cursor,
    serve_page,
)

REALM: Final = "sluis-feed"


async def get_events(request: web.Request) -> web.Response:
    token = bearer_token(request)
    if token is None:
        raise unauthorized(REALM, "the feed needs a consumer's bearer token")
    s = services_of(request)
    tenant = request.match_info["tenant"]
    # The query is read here, but a bad one is answered only once the token has passed,
    # as before: who may not read the feed learns nothing from its answers.
    after = limit = 0
    bad: Problem | None = None
    try:
        query = query_params(request, FeedQuery)
        after, limit = decode_cursor(query.after, tenant), query.limit
    except Problem as problem:
        bad = problem
    except CursorMismatch as exc:
        bad = Problem(
            409, str(exc), slug="cursor-other-tenant", title="The cursor is of another feed"
        )
    except BadCursor as exc:
        bad = Problem(400, str(exc), slug="bad-cursor")
    ledger = s.ledger(tenant)
    withheld_by: dict[str, int] = {}
    committing: list[Future[int]] = []

    def page() -> tuple[bytes, int, str]:
        # One worker thread per request: the token, then the page (each hop costs a wait
        # in the executor's queue, which 64 consumers at once make long). The page's
        # ledger entries are committed by their group's committer, waited for below.
        blocks = s.feed_blocks
        source = blocks.source_of(tenant, after, limit) if blocks is not None else None
        access = admit(s.store, s.clock(), token, tenant, source=source)
        consumer = access.consumer
        if bad is not None:
            raise bad
        body, served, _ = serve_page(
            s.store,
            ledger,
            consumer,
            now=s.clock(),
            after=after,
            limit=limit,
            withheld_by=withheld_by,
            blocks=blocks,
            state=(access.generation, access.restricted),
            standings=access.standings,
            deferred=committing,
        )
        return body, served, consumer.id

    try:
        body, served, consumer_id = await asyncio.to_thread(page)
        for pending in committing:  # on the ledger before the page is sent
            await asyncio.wrap_future(pending)
    except FeedDenied as denied:
        if denied.status == 401:
            raise unauthorized(REALM, denied.detail) from None
        raise Problem(denied.status, denied.detail) from None
    except CursorBeyondHead as ahead:
        raise Problem(
            409,
            str(ahead),
            slug="cursor-beyond-head",
            title="The cursor is beyond the newest event",
            head_cursor=encode_cursor(ahead.head, tenant),
        ) from None
    s.metrics.feed_polled(tenant, consumer_id, after, s.clock().timestamp())
    if served:
        s.metrics.feed_events_served.labels(tenant).inc(served)
    for connector, count in withheld_by.items():
        s.metrics.refused(tenant, connector, "feed_withheld", count)
    return web.Response(
        body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


async def acknowledge_erasure(request: web.Request) -> web.Response:
    """`POST .../erasures/{subject}/ack`: the consumer confirms it removed an erased person
    (it read their `subject.erased` event). Once per consumer and person: a repeat answers
    the first time again. The tenant's data-subject request shows it as the receipt of
    this destination."""
    token = bearer_token(request)
    if token is None:
        raise unauthorized(REALM, "the feed needs a consumer's bearer token")
    s = services_of(request)
    tenant, subject_id = request.match_info["tenant"], request.match_info["subject"]

    def acknowledge() -> tuple[str, datetime]:
        consumer = authenticate(s.store, s.clock(), token, tenant)
        if s.store.suppressed(tenant, [subject_id]).get(subject_id) != "erased":
            raise Problem(404, "not found: no erasure of this subject in this feed")
        at = s.store.add_erasure_receipt(tenant, subject_id, consumer.id, s.clock())
        return consumer.id, at

    try:
        consumer_id, at = await asyncio.to_thread(acknowledge)
    except FeedDenied as denied:
        if denied.status == 401:
            raise unauthorized(REALM, denied.detail) from None
        raise Problem(denied.status, denied.detail) from None
    return model_response(
        ErasureReceipt(subject_id=subject_id, consumer_id=consumer_id, acknowledged_at=at)
    )


def make_feed_app() -> web.Application:
    """The `/feed/v1` sub-application (mounted by `gateway.api.app.make_app`)."""
    app = web.Application()
    tenant = "/tenants/{tenant:" + TENANT_ID_PATTERN.strip("^$") + "}"
    app.router.add_get(
        tenant + "/events",
        get_events,
        allow_head=False,
    )
    app.router.add_post(
        "/tenants/{tenant:"
        + TENANT_ID_PATTERN.strip("^$")
        + "}/erasures/{subject:[0-9a-f]{32}}/ack",
        acknowledge_erasure,
    )
    return app
