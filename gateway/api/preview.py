"""Admin routes of the live preview: a connector's mapping on one small page of the
customer's own data, before any authorisation exists.

`POST .../connectors/{connector}/preview` fetches and minimises the page
(`gateway.sync.preview.make_preview`, which also records the preview in the tenant's
ledger) and answers 201 with the result and its `Location`; `GET .../previews/{preview}`
reads it back for ten minutes (`gateway.sync.preview_cache`), after which, like any id of
another tenant, it is a 404. A source that fails is a 502 problem whose `code` is the
connector error kind (`auth`, `unavailable`, `too_large`, `config`, ...), never a response
body; a second preview of a connector while one is being made is a 409 `preview-busy`.

The result holds personal data (the sample people): it is sent with `Cache-Control:
no-store`, kept only in memory, and never logged.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from gateway.api.auth import principal_of
from gateway.api.httpkit import model_response, read_body, services_of, store_call
from gateway.api.mapping_views import change_out, mapping_text, usable_mapping
from gateway.api.models import (
    PreviewCreate,
    PreviewFieldOut,
    PreviewOut,
    PreviewPerson,
    QuarantinedOut,
)
from gateway.api.problems import Problem, invalid
from gateway.ledger.audit import Actor
from gateway.minimise.mapping import Mapping
from gateway.store.records import NotFound
from gateway.sync.preview import Preview, PreviewFailed, PreviewRefused, make_preview
from gateway.sync.preview_cache import PreviewCache

#: The previews this app made, until they expire.
PREVIEWS: Final = web.AppKey("previews", PreviewCache)
#: Connectors (tenant, connector) with a preview being made: one at a time each, so a
#: double click or a loop in a script cannot fire a burst of requests at the source.
MAKING: Final = web.AppKey("previews_making", set[tuple[str, str]])
_NO_STORE: Final = {"Cache-Control": "no-store"}


def _actor(request: web.Request) -> Actor:
    """Who is asking, as the ledger names them: the authenticated principal (the access
    table lets a tenant's admins only through to these routes)."""
    return principal_of(request).actor()


def preview_out(preview: Preview, cache: PreviewCache) -> PreviewOut:
    p = preview
    return PreviewOut(
        id=p.id,
        tenant=p.tenant,
        connector=p.connector,
        made_at=p.made_at,
        made_by=p.actor,
        expires_at=cache.expires_at(p),
        mapping_digest=p.mapping_digest,
        current_digest=p.current_digest,
        proposed=p.proposed,
        limit=p.limit,
        records_read=p.records_read,
        more_available=p.more_available,
        fields={f.name: PreviewFieldOut(category=f.category, sources=list(f.sources))
                for f in p.fields},
        people=[PreviewPerson.model_validate(person) for person in p.people],
        dropped=dict(p.dropped),
        quarantined=[QuarantinedOut(position=q.position, reason=q.reason) for q in p.quarantined],
        unseen_source_fields=list(p.unseen_source_fields),
        mapping_change=change_out(p.diff) if p.diff is not None else None,
    )  # fmt: skip


async def post_preview(request: web.Request) -> web.Response:
    body = await read_body(request, PreviewCreate, optional=True)
    m = request.match_info
    tenant, connector = m["tenant"], m["connector"]
    s = services_of(request)
    record = await store_call(s.store.get_connector, tenant, connector)
    proposed: Mapping | None = None
    if body.mapping is not None:
        text = await asyncio.to_thread(mapping_text, body.mapping)
        proposed = usable_mapping(text, record.type)
    making = request.config_dict[MAKING]
    if (tenant, connector) in making:
        raise Problem(
            409,
            "a preview of this connector is being made; ask again when it is done",
            slug="preview-busy",
        )
    making.add((tenant, connector))
    try:
        preview = await make_preview(
            s.store,
            s.box,
            s.ledger(tenant),
            tenant=tenant,
            connector=connector,
            actor=_actor(request),
            proposed=proposed,
            limit=body.limit,
            allow_private_sources=s.settings.allow_private_sources,
            clock=s.clock,
            workers=s.engine.source_workers,
        )
    except NotFound as exc:
        raise Problem(404, f"not found: {exc}") from None
    except PreviewRefused as exc:
        raise invalid("mapping", str(exc)) from None
    except PreviewFailed as exc:
        raise Problem(
            502,
            f"the source could not give a page: {exc}",
            slug="source-failed",
            title="Source failed",
            code=exc.kind,
        ) from None
    finally:
        making.discard((tenant, connector))
    cache = request.config_dict[PREVIEWS]
    cache.put(preview, s.clock())
    where = request.path.rstrip("/").removesuffix("/preview") + f"/previews/{preview.id}"
    return model_response(preview_out(preview, cache), 201, {**_NO_STORE, "Location": where})


async def get_preview(request: web.Request) -> web.Response:
    m = request.match_info
    cache = request.config_dict[PREVIEWS]
    found = cache.get(m["tenant"], m["preview"], services_of(request).clock())
    if found is None or found.connector != m["connector"]:
        minutes = int(cache.ttl.total_seconds() // 60)
        raise Problem(
            404, f"not found: no such preview of this connector (previews are kept {minutes} min)"
        )
    return model_response(preview_out(found, cache), 200, _NO_STORE)


def mount(app: web.Application, *, connector_path: str) -> None:
    """Add the preview routes (under `connector_path`) and their cache to the admin app."""
    app[PREVIEWS] = PreviewCache()
    app[MAKING] = set()
    app.router.add_post(connector_path + "/preview", post_preview)
    app.router.add_get(connector_path + "/previews/{preview}", get_preview, allow_head=False)
