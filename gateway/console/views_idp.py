"""A tenant admin sets or removes the organisation's identity provider (OIDC), as the admin
API's `PUT`/`DELETE /tenants/{t}/oidc` do: setting it needs a fresh authenticator code, the
issuer's discovery document must answer (a typo fails here, not at someone's sign-in), and
the client secret is write-only."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.accounts.oidc import OidcFailed
from gateway.accounts.policy import check
from gateway.console.guard import stepped_up
from gateway.console.i18n import translator
from gateway.console.kit import call, lang_of, posted, services, url
from gateway.console.views_tenant import accounts_view

MAX_FIELD: Final = 512


async def set_idp(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    principal, form = await posted(request, back=url("t", tenant, "accounts"))
    check(principal, "tenant.accounts", tenant)
    s = services(request)
    t = translator(lang_of(request))
    values = {k: form.get(k, "").strip()[:MAX_FIELD] for k in ("issuer", "client_id")}
    secret = form.get("client_secret", "").strip()[:MAX_FIELD]
    errors: dict[str, str] = {}
    issuer = values["issuer"].rstrip("/")
    if not issuer.startswith("https://") and not (
        s.settings.allow_private_sources and issuer.startswith("http://")
    ):
        errors["issuer"] = t("idp.bad_issuer")
    for name, given in (("client_id", values["client_id"]), ("client_secret", secret)):
        if not given:
            errors[name] = t("common.required")
    if not errors:
        try:
            await s.oidc.discover(issuer)
        except OidcFailed:
            errors["issuer"] = t("idp.no_discovery")
    stamped = None if errors else await stepped_up(s, principal, form, errors, t)
    if stamped is None:
        return await accounts_view(
            request, principal, idp_values=values, idp_errors=errors, status=422
        )
    await call(
        s.accounts.configure_oidc, stamped, tenant, issuer=issuer,
        client_id=values["client_id"], client_secret=secret,
    )  # fmt: skip
    raise web.HTTPSeeOther(url("t", tenant, "accounts") + "?idp=set")


async def remove_idp(request: web.Request) -> web.StreamResponse:
    tenant = request.match_info["tenant"]
    principal, _ = await posted(request, back=url("t", tenant, "accounts"))
    check(principal, "tenant.accounts", tenant)
    await call(services(request).accounts.remove_oidc, principal, tenant)
    raise web.HTTPSeeOther(url("t", tenant, "accounts") + "?idp=removed")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/t/{tenant}/identity-provider", set_idp)
    router.add_post("/t/{tenant}/identity-provider/remove", remove_idp)
