"""The pull feed's HTTP route: `GET /feed/v1/tenants/{tenant}/events`.

Authentication, query parsing and problem bodies live here; what a page holds, and the
ledger entries it writes, live in `gateway.delivery.feed`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from gateway.api.httpkit import bearer_token, query_params, services_of, unauthorized
from gateway.api.models import TENANT_ID_PATTERN, FeedQuery
from gateway.api.problems import Problem
from gateway.delivery.feed import (
    BadCursor,
    CursorBeyondHead,
    CursorMismatch,
    FeedDenied,
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

    def page() -> tuple[bytes, int, str]:
        # One worker thread per request: the token, then the page (each hop costs a wait
        # in the executor's queue, which 64 consumers at once make long).
        consumer = authenticate(s.store, s.clock(), token, tenant)
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
        )
        return body, served, consumer.id

    try:
        body, served, consumer_id = await asyncio.to_thread(page)
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


def make_feed_app() -> web.Application:
    """The `/feed/v1` sub-application (mounted by `gateway.api.app.make_app`)."""
    app = web.Application()
    app.router.add_get(
        "/tenants/{tenant:" + TENANT_ID_PATTERN.strip("^$") + "}/events",
        get_events,
        allow_head=False,
    )
    return app
