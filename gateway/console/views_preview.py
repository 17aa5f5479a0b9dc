"""The live preview: the connector's mapping (or a proposed one) on one small page of the
customer's own data, before authorising it.

The page is fetched and minimised by `gateway.sync.preview.make_preview`, exactly as a sync
would and bounded; it records the preview in the tenant's ledger. The console shows the
result in the answer to the form and keeps it nowhere: the sample people are personal data,
seen once by the admin who asked.
"""

from __future__ import annotations

from aiohttp import web

from gateway.accounts.policy import check
from gateway.console import connector_form as cf
from gateway.console.guard import acting
from gateway.console.i18n import translator
from gateway.console.kit import Flash, lang_of, posted, services, url
from gateway.console.views_connectors import connector_view, edit_values, find_connector
from gateway.sync.preview import Preview, PreviewFailed, PreviewRefused, make_preview


async def live_preview(request: web.Request) -> web.StreamResponse:
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    principal, form = await posted(request, back=url("t", tenant, "connectors", connector))
    check(principal, "tenant.authorise", tenant)
    record = await find_connector(request)
    s = services(request)
    t = translator(lang_of(request))
    # The connector page's own button sends no settings; the edit form's sends them all.
    given = {
        "interval": str(record.interval_seconds),
        "delete_share": str(record.max_delete_share),
        **form,
        "base_url": record.base_url,
    }
    got = cf.read_connector(
        given, t, existing=record, allow_private=s.settings.allow_private_sources
    )
    values = edit_values(record, form) if form.get("version") else None
    if got.errors:
        return await connector_view(
            request, principal, record, values=values, errors=got.errors, status=422
        )
    proposed = got.mapping
    if proposed is not None and proposed.digest == record.mapping_digest:
        proposed = None
    who = acting(s, principal, tenant)
    try:
        result: Preview = await make_preview(
            s.store,
            s.box,
            who.ledger,
            tenant=tenant,
            connector=connector,
            actor=who.actor,
            proposed=proposed,
            allow_private_sources=s.settings.allow_private_sources,
            clock=s.clock,
            workers=s.engine.source_workers,
        )
    except (PreviewFailed, PreviewRefused) as exc:
        flash = Flash("error", t("live.failed", reason=str(exc)))
        status = 502 if isinstance(exc, PreviewFailed) else 422
        return await connector_view(
            request, principal, record, values=values, flashes=[flash], status=status
        )
    return await connector_view(
        request, principal, record, values=values, live=result, diff=result.diff
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/t/{tenant}/connectors/{connector}/live-preview", live_preview)
