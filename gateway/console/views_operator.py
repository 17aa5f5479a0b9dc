"""The operator's pages: tenants (list, create) and the invitation of a tenant's first
customer admin. The operator sees no tenant's people, connectors or authorisations."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from gateway.accounts.errors import AccountExists
from gateway.accounts.policy import check
from gateway.accounts.principal import Principal
from gateway.console.guard import acting
from gateway.console.i18n import translator
from gateway.console.kit import (
    Flash,
    PageError,
    call,
    lang_of,
    posted,
    prefill,
    render,
    services,
    signed_in,
    url,
)
from gateway.console.views_tenant import MAX_NAME, invitation_link, read_invitee
from gateway.store.records import AlreadyExists, NotFound, Tenant
from gateway.tenancy import create_tenant

TENANT_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


async def _tenants_page(
    request: web.Request,
    principal: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
) -> web.Response:
    tenants = await call(services(request).store.list_tenants)
    return render(
        request,
        "tenants.html",
        status,
        principal=principal,
        tenants=tenants,
        values=values or {},
        errors=errors or {},
        flashes=flashes or [],
    )


async def tenants(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    check(principal, "gateway.operate", None)
    kept = prefill(request)
    t = translator(lang_of(request))
    flashes = [Flash("info", t("signin.resumed"))] if kept else []
    return await _tenants_page(request, principal, values=kept, flashes=flashes)


async def create(request: web.Request) -> web.StreamResponse:
    principal, form = await posted(request, back=url("operator", "tenants"))
    check(principal, "gateway.operate", None)
    t = translator(lang_of(request))
    values = {"id": form.get("id", "").strip(), "name": form.get("name", "").strip()}
    errors: dict[str, str] = {}
    if not TENANT_ID.fullmatch(values["id"]):
        errors["id"] = t("tenants.bad_id")
    if not values["name"] or len(values["name"]) > MAX_NAME:
        errors["name"] = t("accounts.bad_name")
    if errors:
        return await _tenants_page(request, principal, values=values, errors=errors, status=422)
    s = services(request)
    try:
        await call(
            create_tenant,
            s.store,
            s.box,
            values["id"],
            values["name"],
            s.clock(),
            by=acting(s, principal, values["id"]),
        )
    except AlreadyExists:
        errors["id"] = t("tenants.exists")
        return await _tenants_page(request, principal, values=values, errors=errors, status=409)
    raise web.HTTPSeeOther(url("operator", "tenants", values["id"]) + "?created=1")


async def _tenant_page(
    request: web.Request,
    principal: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    invited: tuple[str, str, str] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
) -> web.Response:
    try:
        tenant: Tenant = await call(
            services(request).store.get_tenant, request.match_info["tenant"]
        )
    except NotFound:
        raise PageError(404, "error.not_found") from None
    return render(
        request,
        "operator_tenant.html",
        status,
        principal=principal,
        tenant=tenant,
        values=values or {},
        errors=errors or {},
        invited=invited,
        flashes=flashes or [],
    )


async def tenant_page(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    check(principal, "gateway.operate", None)
    kept = prefill(request)
    t = translator(lang_of(request))
    flashes = [Flash("info", t("signin.resumed"))] if kept else []
    if request.query.get("created"):
        flashes.append(Flash("ok", t("tenants.created")))
    return await _tenant_page(request, principal, values=kept, flashes=flashes)


async def invite_admin(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    principal, form = await posted(request, back=url("operator", "tenants", tenant))
    check(principal, "gateway.operate", None)
    t = translator(lang_of(request))
    values, errors = read_invitee({**form, "role": "admin"}, ("admin",), t)
    if errors:
        return await _tenant_page(request, principal, values=values, errors=errors, status=422)
    s = services(request)
    try:
        await call(s.store.get_tenant, tenant)
        invitation = await call(
            s.accounts.invite,
            principal,
            tenant=tenant,
            role="admin",
            email=values["email"],
            name=values["name"],
        )
    except NotFound:
        raise PageError(404, "error.not_found") from None
    except AccountExists:
        errors["email"] = t("accounts.exists")
        return await _tenant_page(request, principal, values=values, errors=errors, status=409)
    link = invitation_link(request, invitation.token)
    expires = invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return await _tenant_page(request, principal, invited=(values["name"], link, expires))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/operator/tenants", tenants, allow_head=False)
    router.add_post("/operator/tenants", create)
    router.add_get("/operator/tenants/{tenant}", tenant_page, allow_head=False)
    router.add_post("/operator/tenants/{tenant}/invitations", invite_admin)
