"""Authorising a connector's current mapping and revoking an authorisation, each with a
fresh authenticator code (step-up); both are recorded in the tenant's ledger by the domain
functions, naming the account that gave the code."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Final

from aiohttp import web

from gateway.accounts.policy import check
from gateway.console.guard import acting, stepped_up
from gateway.console.i18n import Translate, translator
from gateway.console.kit import PageError, call, lang_of, posted, services, url
from gateway.console.views_connectors import connector_view, find_connector
from gateway.delivery.outbox import grant_and_converge
from gateway.store.records import Instruction, NotFound
from gateway.sync.instructions import revoke as revoke_instruction

MAX_PURPOSE: Final = 500


def _valid_until(text: str, t: Translate, at: datetime, errors: dict[str, str]) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        errors["valid_until"] = t("auth.bad_date")
        return None
    until = datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
    if until <= at:
        errors["valid_until"] = t("auth.bad_date")
        return None
    return until


async def authorise(request: web.Request) -> web.StreamResponse:
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    principal, form = await posted(request, back=url("t", tenant, "connectors", connector))
    check(principal, "tenant.authorise", tenant)
    record = await find_connector(request)
    s = services(request)
    t = translator(lang_of(request))
    at = s.clock()
    errors: dict[str, str] = {}
    purpose = form.get("purpose", "").strip()
    if not purpose or len(purpose) > MAX_PURPOSE:
        errors["purpose"] = t("common.required")
    until = _valid_until(form.get("valid_until", ""), t, at, errors)
    values = {"purpose": purpose, "valid_until": form.get("valid_until", "")}
    stamped = None if errors else await stepped_up(s, principal, form, errors, t)
    if stamped is None:
        return await connector_view(
            request, principal, record, auth_values=values, auth_errors=errors, status=422
        )
    await call(
        grant_and_converge,
        s.store,
        by=acting(s, stamped, tenant),
        connector=connector,
        purpose=purpose,
        now=at,
        valid_until=until,
    )
    raise web.HTTPSeeOther(url("t", tenant, "connectors", connector) + "?granted=1")


async def revoke(request: web.Request) -> web.StreamResponse:
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    principal, form = await posted(request, back=url("t", tenant, "connectors", connector))
    check(principal, "tenant.authorise", tenant)
    record = await find_connector(request)
    s = services(request)
    t = translator(lang_of(request))
    instruction_id = request.match_info["instruction"]
    try:
        found: Instruction = await call(s.store.get_instruction, instruction_id)
    except NotFound:
        found = None  # type: ignore[assignment]
    if found is None or (found.tenant, found.connector) != (tenant, connector):
        raise PageError(404, "auth.not_found")
    errors: dict[str, str] = {}
    stamped = await stepped_up(s, principal, form, errors, t)
    if stamped is None:
        return await connector_view(
            request, principal, record, auth_errors={f"revoke-{found.id}": errors["code"]},
            status=422,
        )  # fmt: skip
    await call(
        revoke_instruction,
        s.store,
        by=acting(s, stamped, tenant),
        instruction=found,
        now=s.clock(),
    )
    await s.engine.revocations.revoke(found.id)
    raise web.HTTPSeeOther(url("t", tenant, "connectors", connector) + "?revoked=1")


def add_routes(router: web.UrlDispatcher) -> None:
    c = "/t/{tenant}/connectors/{connector}"
    router.add_post(c + "/authorise", authorise)
    router.add_post(c + "/instructions/{instruction}/revoke", revoke)
