"""API tokens for automation, made by a signed-in person: named, with a role no higher
than the account's own, expiring within a year, shown once, listed and revocable. An admin
(or an operator) sees and may revoke all tokens of the tenant (or of the operators); others
their own. The accounts service enforces all of it; this page asks and shows."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from aiohttp import web

from gateway.accounts.errors import Forbidden, UnknownAccount
from gateway.accounts.policy import check
from gateway.accounts.principal import Principal, at_most
from gateway.console.i18n import translator
from gateway.console.kit import (
    Flash,
    PageError,
    call,
    lang_of,
    now,
    posted,
    prefill,
    render,
    services,
    signed_in,
    url,
)
from gateway.store.account_records import Role

MAX_NAME: Final = 100
MAX_DAYS: Final = 366
ROLES: Final[tuple[Role, ...]] = ("operator", "admin", "auditor", "viewer")


def grantable(principal: Principal) -> list[Role]:
    return [r for r in ROLES if at_most(r, principal.role)]


async def tokens_view(
    request: web.Request,
    principal: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[str, str] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
) -> web.Response:
    found = await call(services(request).accounts.list_tokens, principal)
    return render(
        request,
        "tokens.html",
        status,
        principal=principal,
        tokens=sorted(found, key=lambda t: t.created_at, reverse=True),
        roles=grantable(principal),
        values=values or {"role": principal.role, "days": "90"},
        errors=errors or {},
        created=created,
        at=now(request),
        flashes=flashes or [],
    )


async def tokens(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    check(principal, "self", principal.tenant)
    kept = prefill(request)
    t = translator(lang_of(request))
    flashes = [Flash("info", t("signin.resumed"))] if kept else []
    if request.query.get("revoked"):
        flashes.append(Flash("ok", t("tokens.revoked_done")))
    return await tokens_view(request, principal, values=kept or None, flashes=flashes)


async def create(request: web.Request) -> web.StreamResponse:
    principal, form = await posted(request, back=url("tokens"))
    check(principal, "self", principal.tenant)
    t = translator(lang_of(request))
    values = {
        "name": form.get("name", "").strip(),
        "role": form.get("role", principal.role),
        "days": form.get("days", "").strip(),
    }
    errors: dict[str, str] = {}
    if not values["name"] or len(values["name"]) > MAX_NAME:
        errors["name"] = t("accounts.bad_name")
    role = next((r for r in grantable(principal) if r == values["role"]), None)
    if role is None:
        errors["role"] = t("accounts.bad_role")
    try:
        days = int(values["days"])
        if not 1 <= days <= MAX_DAYS:
            raise ValueError
    except ValueError:
        errors["days"] = t("tokens.bad_days")
        days = 0
    if errors or role is None:
        return await tokens_view(request, principal, values=values, errors=errors, status=422)
    record, plain = await call(
        services(request).accounts.create_token, principal, name=values["name"], role=role,
        expires_at=now(request) + timedelta(days=days),
    )  # fmt: skip
    return await tokens_view(request, principal, created=(record.name, plain))


async def revoke(request: web.Request) -> web.StreamResponse:
    principal, _ = await posted(request, back=url("tokens"))
    check(principal, "self", principal.tenant)
    try:
        await call(services(request).accounts.revoke_token, principal, request.match_info["token"])
    except (UnknownAccount, Forbidden):
        raise PageError(404, "error.not_found") from None
    raise web.HTTPSeeOther(url("tokens") + "?revoked=1")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/tokens", tokens, allow_head=False)
    router.add_post("/tokens", create)
    router.add_post("/tokens/{token}/revoke", revoke)
