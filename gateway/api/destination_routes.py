"""Admin routes of push destinations, and the app's push workers.

`.../destinations` creates (step-up: a new place people's data goes), lists, reads,
changes (pause, resume, event types, thin, batch size, dead-letter limits) and deletes
webhook and SCIM destinations; `.../secret` rotates a webhook's signing secret, or takes a
SCIM destination's new token (step-up); `.../dead-letters`
lists what a destination could not take and `.../dead-letters/replay` has its worker send
them again. What a destination is and does lives in `gateway.delivery.destinations` and
`gateway.delivery.push`; this module is HTTP only.

Mounted by `gateway.api.runs.add_routes`; the workers by `gateway.api.app.make_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from gateway.api.auth import acting
from gateway.api.destination_models import (
    DeadLetterOut,
    DeadLetterPage,
    DeadLettersQuery,
    DestinationChange,
    DestinationCreate,
    DestinationCreated,
    DestinationList,
    DestinationOut,
    ReplayOut,
    SecretRotate,
)
from gateway.api.httpkit import (
    SERVICES,
    in_background,
    location,
    model_response,
    query_params,
    read_body,
    services_of,
    store_call,
)
from gateway.api.problems import invalid
from gateway.delivery import destinations as dests
from gateway.delivery.push import PushWorker, PushWorkers, RetryPolicy
from gateway.delivery.scim_push import scim_opener
from gateway.delivery.webhook import webhook_opener
from gateway.store.records import Destination, Store

_NO_STORE = {"Cache-Control": "no-store"}


def destination_out(store: Store, d: Destination) -> DestinationOut:
    """Runs in a worker thread (reads the feed's head and the dead letters)."""
    head = store.last_event_seq(d.tenant)
    dead = store.dead_letter_counts().get((d.tenant, d.id), 0)
    return DestinationOut(
        id=d.id, kind=d.kind, url=d.url, event_types=list(d.event_types),  # type: ignore[arg-type]
        thin=d.thin, batch_size=d.batch_size, max_attempts=d.max_attempts,
        max_age_seconds=d.max_age_seconds, created_at=d.created_at,
        paused=d.paused_at is not None, paused_at=d.paused_at, after_seq=d.after_seq,
        lag=max(head - d.after_seq, 0), attempts=d.attempts, failing_since=d.failing_since,
        failure=d.failure, delivered_at=d.delivered_at, dead_letters=dead,
        replay_requested_at=d.replay_requested_at,
        previous_secret_valid_until=d.previous_until,
    )  # fmt: skip


async def _found(request: web.Request) -> Destination:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    return await store_call(s.store.get_destination, tenant, request.match_info["destination"])


async def post_destination(request: web.Request) -> web.Response:
    body = await read_body(request, DestinationCreate)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    problem = dests.url_problem(body.url, allow_private=s.settings.allow_private_sources)
    if problem is not None:
        raise invalid("url", problem)
    settings = dests.WebhookSettings(
        url=body.url, event_types=tuple(body.event_types), thin=body.thin,
        batch_size=body.batch_size, max_attempts=body.max_attempts,
        max_age_seconds=body.max_age_seconds, from_start=body.from_start,
    )  # fmt: skip

    def create() -> DestinationCreated:
        by, now = acting(request, tenant), s.clock()
        secret: str | None = None
        if body.kind == "scim":
            assert body.token is not None  # the model requires it
            made = dests.create_scim(s.store, s.box, settings, body.token, now=now, by=by)
        else:
            made, secret = dests.create_webhook(s.store, s.box, settings, now=now, by=by)
        out = destination_out(s.store, made)
        return DestinationCreated(**out.model_dump(), secret=secret)

    created = await store_call(create)
    headers = {**_NO_STORE, "Location": location(request, created.id)}
    return model_response(created, 201, headers)


async def list_destinations(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)

    def read() -> DestinationList:
        found = s.store.list_destinations(tenant)
        return DestinationList(destinations=[destination_out(s.store, d) for d in found])

    return model_response(await store_call(read))


async def get_destination(request: web.Request) -> web.Response:
    d = await _found(request)
    s = services_of(request)
    return model_response(await store_call(destination_out, s.store, d))


async def patch_destination(request: web.Request) -> web.Response:
    body = await read_body(request, DestinationChange)
    d = await _found(request)
    s = services_of(request)
    if body.thin and d.kind == "scim":
        raise invalid("thin", "a SCIM destination takes users, not ids: it cannot be thin")

    def apply() -> DestinationOut:
        changed = dests.change(
            s.store, d, now=s.clock(), by=acting(request, d.tenant), paused=body.paused,
            event_types=None if body.event_types is None else tuple(body.event_types),
            thin=body.thin, batch_size=body.batch_size, max_attempts=body.max_attempts,
            max_age_seconds=body.max_age_seconds,
        )  # fmt: skip
        return destination_out(s.store, changed)

    return model_response(await store_call(apply))


async def delete_destination(request: web.Request) -> web.Response:
    """Stop delivering and forget the destination; the answer is what it was."""
    d = await _found(request)
    s = services_of(request)
    out = await store_call(destination_out, s.store, d)
    await store_call(dests.delete, s.store, d, now=s.clock(), by=acting(request, d.tenant))
    return model_response(out)


async def rotate_secret(request: web.Request) -> web.Response:
    body = await read_body(request, SecretRotate, optional=True)
    d = await _found(request)
    s = services_of(request)

    if d.kind == "scim" and body.token is None:
        raise invalid("token", "a SCIM destination's new token is the platform's: send it")
    if d.kind == "webhook" and body.token is not None:
        raise invalid("token", "a webhook destination's secret is made here: send no token")

    def rotate() -> DestinationCreated:
        by, now = acting(request, d.tenant), s.clock()
        secret: str | None = None
        if body.token is not None:
            changed = dests.replace_token(s.store, s.box, d, body.token, now=now, by=by)
        else:
            changed, secret = dests.rotate_secret(
                s.store, s.box, d, overlap=timedelta(seconds=body.overlap_seconds), now=now, by=by
            )
        out = destination_out(s.store, changed)
        return DestinationCreated(**out.model_dump(), secret=secret)

    return model_response(await store_call(rotate), headers=_NO_STORE)


async def list_dead_letters(request: web.Request) -> web.Response:
    query = query_params(request, DeadLettersQuery)
    d = await _found(request)
    s = services_of(request)
    rows = await store_call(s.store.dead_letters, d.tenant, d.id, query.after, query.limit)
    page = DeadLetterPage(
        destination=d.id,
        dead_letters=[
            DeadLetterOut(seq=r.seq, subject_id=r.subject_id, reason=r.reason, dead_at=r.dead_at)
            for r in rows
        ],
        next_after=rows[-1].seq if rows else query.after,
    )
    return model_response(page)


async def replay_dead_letters(request: web.Request) -> web.Response:
    d = await _found(request)
    s = services_of(request)
    now = s.clock()
    count = await store_call(dests.replay, s.store, d, now=now, by=acting(request, d.tenant))
    return model_response(ReplayOut(destination=d.id, dead_letters=count, replay_requested_at=now))


async def push_workers(app: web.Application) -> AsyncIterator[None]:
    """The app's push workers (`cleanup_ctx`): one task per destination this replica holds,
    started with the app, cancelled and awaited at shutdown."""
    s = app[SERVICES]
    cfg = s.settings
    private, timeout = cfg.allow_private_sources, cfg.push_timeout
    openers = {
        "webhook": webhook_opener(s.box, allow_private=private, timeout=timeout),
        "scim": scim_opener(
            lambda d: dests.open_secrets(s.box, d).current, allow_private=private, timeout=timeout
        ),
    }
    worker = PushWorker(
        s.store, s.ledger, s.metrics, s.clock, lambda d: openers[d.kind](d),
        owner=s.engine.replica, lease=cfg.push_lease_seconds, idle=cfg.push_interval,
        policy=RetryPolicy(first=cfg.push_retry_first, cap=cfg.push_retry_cap),
    )  # fmt: skip
    workers = PushWorkers(s.store, worker, interval=cfg.push_interval)
    async with in_background(workers.run()):
        yield


def add_routes(router: web.UrlDispatcher, *, tenant_path: str) -> None:
    base = tenant_path + "/destinations"
    one = base + "/{destination:dst_[0-9a-f]{16}}"
    router.add_post(base, post_destination)
    router.add_get(base, list_destinations, allow_head=False)
    router.add_get(one, get_destination, allow_head=False)
    router.add_patch(one, patch_destination)
    router.add_delete(one, delete_destination)
    router.add_post(one + "/secret", rotate_secret)
    router.add_get(one + "/dead-letters", list_dead_letters, allow_head=False)
    router.add_post(one + "/dead-letters/replay", replay_dead_letters)
