"""The tenant overview and the connector pages: create, edit (with the mapping's changes
shown before anything is saved), authorise and revoke with step-up, and sync.

A connector's page is one form with two buttons: "preview changes" shows what the proposed
mapping changes for the platform and saves nothing; "save" saves, unless someone else saved
first (see `connector_form`). As in the admin API, authorising, revoking and changing the
mapping or the credentials need a fresh authenticator code (step-up); creating does not, as
nothing is processed before an authorisation.
"""

from __future__ import annotations

from collections.abc import Mapping as Fields
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from aiohttp import web

from gateway.accounts.policy import check
from gateway.accounts.principal import Principal
from gateway.console import connector_form as cf
from gateway.console.guard import acting, allowed, fresh, stepped_up
from gateway.console.i18n import translator
from gateway.console.kit import (
    Flash,
    PageError,
    call,
    lang_of,
    posted,
    prefill,
    public_base,
    render,
    services,
    signed_in,
    url,
)
from gateway.console.names import account_names
from gateway.minimise.mapping import Mapping, parse_mapping
from gateway.minimise.mapping_diff import MappingDiff
from gateway.runtime.services import Services
from gateway.store.records import AlreadyExists, ConnectorRecord, Instruction, NotFound, RunRecord
from gateway.sync.connect import connection
from gateway.sync.preview import Preview
from gateway.tenancy import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_MAX_DELETE_SHARE,
    create_connector,
    set_paused,
)
from gateway.tenancy import change_connector as change

T = TypeVar("T")

#: Where a vendor sends the browser back after "Connect" (`views_connect`): the redirect
#: URI an admin registers for the app at the vendor, under the console's public base.
CONNECT_CALLBACK: Final = "/console/connect/callback"


@dataclass
class Row:
    """A connector as the overview lists it."""

    record: ConnectorRecord
    last: RunRecord | None
    active: Instruction | None


def active_instruction(
    instructions: list[Instruction], record: ConnectorRecord, at: datetime
) -> Instruction | None:
    for i in reversed(instructions):
        if i.mapping_digest == record.mapping_digest and i.state(at) == "active":
            return i
    return None


def _tenant(request: web.Request) -> str:
    return request.match_info["tenant"]


async def find_connector(request: web.Request) -> ConnectorRecord:
    tenant, connector = _tenant(request), request.match_info["connector"]
    try:
        found: ConnectorRecord = await call(
            services(request).store.get_connector, tenant, connector
        )
    except NotFound:
        raise PageError(404, "connector.not_found", connector=connector) from None
    return found


# --------------------------------------------------------------------------- overview


async def overview(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.read", tenant)
    s = services(request)
    at = s.clock()

    def gather() -> list[Row]:
        s.store.get_tenant(tenant)
        rows = []
        for record in s.store.list_connectors(tenant):
            instructions = s.store.list_instructions(tenant, record.id)
            rows.append(
                Row(
                    record,
                    s.store.last_run(tenant, record.id),
                    active_instruction(instructions, record, at),
                )
            )
        return rows

    rows = await call(gather)
    t = translator(lang_of(request))
    alerts = []
    for row in rows:
        if row.record.paused_at is not None:
            alerts.append(t("alert.paused", connector=row.record.id))
        if row.active is None:
            alerts.append(t("alert.no_authorisation", connector=row.record.id))
        if row.last is not None and row.last.status in ("failed", "refused"):
            alerts.append(
                t("alert.run_failed", connector=row.record.id, error=row.last.error or "?")
            )
    return render(
        request,
        "overview.html",
        principal=principal,
        tenant=tenant,
        rows=rows,
        alerts=alerts,
        can_configure=allowed(principal, "tenant.configure", tenant),
    )


# --------------------------------------------------------------------------- create


def _new_values(form: Fields[str, str]) -> dict[str, str]:
    return {
        "id": form.get("id", ""),
        "type": form.get("type", ""),
        "base_url": form.get("base_url", ""),
        "mapping": form.get("mapping", ""),
        "mapping_toml": form.get("mapping_toml", ""),
        "interval": form.get("interval", str(DEFAULT_INTERVAL_SECONDS)),
        "delete_share": form.get("delete_share", str(DEFAULT_MAX_DELETE_SHARE)),
    }


def _new_page(
    request: web.Request,
    principal: Principal,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    status: int = 200,
    proposed: Mapping | None = None,
    flashes: list[Flash] | None = None,
) -> web.Response:
    return render(
        request,
        "connector_new.html",
        status,
        principal=principal,
        tenant=_tenant(request),
        values=values,
        errors=errors,
        types=cf.type_options(),
        credential_fields=cf.credential_fields(cf.type_options()),
        mappings=cf.mapping_options(),
        proposed=proposed,
        flashes=flashes or [],
    )


async def new_connector_form(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    check(principal, "tenant.configure", _tenant(request))
    kept = prefill(request)
    t = translator(lang_of(request))
    values = _new_values(kept)
    if not values["mapping"]:
        values["mapping"] = (cf.mapping_options() or [""])[0]
    flashes = [Flash("info", t("signin.resumed"))] if kept else []
    return _new_page(request, principal, values, {}, flashes=flashes)


async def create(request: web.Request) -> web.StreamResponse:
    tenant = _tenant(request)
    principal, form = await posted(request, back=url("t", tenant, "new-connector"))
    check(principal, "tenant.configure", tenant)
    s = services(request)
    t = translator(lang_of(request))
    got = cf.read_connector(form, t, existing=None, allow_private=s.settings.allow_private_sources)
    values = _new_values(form)
    if form.get("action") == "preview" or got.errors:
        status = 422 if got.errors else 200
        return _new_page(
            request, principal, values, got.errors, status=status, proposed=got.mapping
        )
    gone = await call(s.store.deleted_connector, tenant, got.id)
    if gone is not None:
        got.errors["id"] = t("connector.id_taken")
        return _new_page(request, principal, values, got.errors, status=409)
    if got.mapping_text is None:  # read_connector reports a missing mapping as an error
        raise PageError(422, "error.bad_request")
    try:
        await call(
            create_connector,
            s.store,
            s.box,
            tenant=tenant,
            connector_id=got.id,
            type_name=got.type,
            base_url=got.base_url,
            credentials=got.credentials,
            mapping_text=got.mapping_text,
            now=s.clock(),
            interval_seconds=got.interval_seconds,
            max_delete_share=got.max_delete_share,
            by=acting(s, principal, tenant),
        )
    except AlreadyExists:
        got.errors["id"] = t("connector.id_taken")
        return _new_page(request, principal, values, got.errors, status=409)
    raise web.HTTPSeeOther(url("t", tenant, "connectors", got.id) + "?created=1")


# --------------------------------------------------------------------------- one connector


def edit_values(record: ConnectorRecord, form: Fields[str, str] | None = None) -> dict[str, str]:
    if form is None:
        return {
            "mapping": "",
            "mapping_toml": record.mapping_text,
            "interval": str(record.interval_seconds),
            "delete_share": str(record.max_delete_share),
            "paused": "on" if record.paused_at is not None else "",
            "version": cf.version(record),
        }
    return {
        "mapping": form.get("mapping", ""),
        "mapping_toml": form.get("mapping_toml", record.mapping_text),
        "interval": form.get("interval", str(record.interval_seconds)),
        "delete_share": form.get("delete_share", str(record.max_delete_share)),
        "paused": form.get("paused", ""),
        "version": form.get("version", cf.version(record)),
    }


async def connector_view(
    request: web.Request,
    principal: Principal,
    record: ConnectorRecord,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    auth_values: dict[str, str] | None = None,
    auth_errors: dict[str, str] | None = None,
    diff: MappingDiff | None = None,
    conflict: dict[str, str] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
    live: Preview | None = None,
    connect_errors: dict[str, str] | None = None,
) -> web.Response:
    s = services(request)
    at = s.clock()
    linked = await call(connection, s.box, record)
    instructions = await call(s.store.list_instructions, record.tenant, record.id)
    mapping = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
    names = await account_names(s, principal, record.tenant)
    return render(
        request,
        "connector.html",
        status,
        principal=principal,
        tenant=record.tenant,
        record=record,
        mapping=mapping,
        instructions=list(reversed(instructions)),
        active=active_instruction(instructions, record, at),
        names=names,
        at=at,
        values=values or edit_values(record),
        errors=errors or {},
        auth_values=auth_values or {},
        auth_errors=auth_errors or {},
        diff=diff,
        conflict=conflict,
        live=live,
        credential_fields=cf.credential_fields([record.type]),
        mappings=cf.mapping_options(),
        fresh=fresh(principal, at),
        can_configure=allowed(principal, "tenant.configure", record.tenant),
        can_authorise=allowed(principal, "tenant.authorise", record.tenant),
        flashes=flashes or [],
        connection=linked,
        connect_errors=connect_errors or {},
        connect_redirect=public_base(request) + CONNECT_CALLBACK,
    )


async def connector_page(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    check(principal, "tenant.read", _tenant(request))
    record = await find_connector(request)
    t = translator(lang_of(request))
    kept = prefill(request)
    flashes = []
    for flag, key in (("created", "connector.created"), ("saved", "connector.saved"),
                      ("granted", "auth.granted"), ("revoked", "auth.revoked"),
                      ("connected", "connect.done")):  # fmt: skip
        if request.query.get(flag):
            flashes.append(Flash("ok", t(key)))
    values = auth_values = None
    if kept:
        flashes.append(Flash("info", t("signin.resumed")))
        if kept.get("form") == "authorise":
            auth_values = kept
        else:
            values = edit_values(record, kept)
    return await connector_view(
        request, principal, record, values=values, auth_values=auth_values, flashes=flashes
    )


async def save(request: web.Request) -> web.StreamResponse:
    tenant = _tenant(request)
    connector = request.match_info["connector"]
    principal, form = await posted(request, back=url("t", tenant, "connectors", connector))
    check(principal, "tenant.configure", tenant)
    record = await find_connector(request)
    s = services(request)
    t = translator(lang_of(request))
    got = cf.read_connector(
        {**form, "base_url": record.base_url},
        t,
        existing=record,
        allow_private=s.settings.allow_private_sources,
    )
    values = edit_values(record, form)
    diff = None
    if got.mapping is not None:
        diff = cf.mapping_changes(record, got.mapping)
    if form.get("action") == "preview" or got.errors:
        return await connector_view(
            request, principal, record, values=values, errors=got.errors, diff=diff,
            status=422 if got.errors else 200,
        )  # fmt: skip
    mapping_text = got.mapping_text if diff is not None and not diff.same else None
    sensitive = mapping_text is not None or bool(got.credentials)
    actor = principal
    if sensitive:
        stamped = await stepped_up(s, principal, form, got.errors, t)
        if stamped is None:
            return await connector_view(
                request, principal, record, values=values, errors=got.errors, diff=diff,
                status=422,
            )  # fmt: skip
        actor = stamped
    outcome = await call(
        _save_if_unchanged, s, record, values["version"], got, mapping_text=mapping_text, by=actor
    )
    if isinstance(outcome, list):
        current = await find_connector(request)
        diff = cf.mapping_changes(current, got.mapping) if got.mapping else None
        return await connector_view(
            request, principal, current, values={**values, "version": cf.version(current)},
            errors=got.errors, diff=diff, conflict=cf.now_showing(current, outcome), status=409,
        )  # fmt: skip
    raise web.HTTPSeeOther(url("t", tenant, "connectors", connector) + "?saved=1")


def _save_if_unchanged(
    s: Services,
    record: ConnectorRecord,
    seen: str,
    got: cf.ConnectorInput,
    *,
    mapping_text: str | None,
    by: Principal,
) -> ConnectorRecord | list[str]:
    """Save in one transaction, unless the stored connector moved on from `seen`: then the
    properties that changed, and nothing is written."""
    with s.store.transaction():
        current = s.store.get_connector(record.tenant, record.id)
        changed = cf.changed_since(current, seen)
        if changed:
            return changed
        who = acting(s, by, record.tenant)
        now = s.clock()
        updated: ConnectorRecord = change(
            s.store,
            s.box,
            current,
            credentials=got.credentials or None,
            mapping_text=mapping_text,
            interval_seconds=_changed(got.interval_seconds, current.interval_seconds),
            max_delete_share=_changed(got.max_delete_share, current.max_delete_share),
            now=now,
            by=who,
        )
        if got.paused != (updated.paused_at is not None):
            updated = set_paused(s.store, updated, paused=got.paused, now=now, by=who)
        return updated


def _changed(given: T, stored: T) -> T | None:
    """Only what differs is a change (so the ledger names only what really changed)."""
    return None if given == stored else given


def add_routes(router: web.UrlDispatcher) -> None:
    t = "/t/{tenant}"
    c = t + "/connectors/{connector}"
    router.add_get(t, overview, allow_head=False)
    router.add_get(t + "/new-connector", new_connector_form, allow_head=False)
    router.add_post(t + "/new-connector", create)
    router.add_get(c, connector_page, allow_head=False)
    router.add_post(c, save)
