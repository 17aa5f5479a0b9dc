"""Who is calling the admin API, and may they: one middleware and one table.

Every `/admin/v1` request carries `Authorization: Bearer <token>`: an API token made by an
account (`sluis_tok_...`), or, until the first operator has enrolled, the bootstrap token
from the configuration. The middleware turns it into a `Principal` and looks the route up
in `POLICY` (method and path template → the capabilities any one of which suffices); the
path's `{tenant}` must be the principal's own. A route without a rule is refused: nothing
is open by default, and `tests/api/test_access_matrix.py` proves every documented route
refuses every other tenant's principals and every role below its rule.

Actions that change what may be processed (grant or revoke an authorisation, change a
mapping or credentials, create a feed consumer or give it a new token) also need a step-up:
a fresh TOTP code given on the same credential (`POST /admin/v1/step-up`) within the last
five minutes (`STEP_UP`, checked here; a mapping or credentials change is checked by its
handler, since it depends on the body).
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from gateway.accounts.errors import Forbidden
from gateway.accounts.policy import Capability, allowed, check_step_up
from gateway.accounts.principal import Principal
from gateway.api.httpkit import bearer_token, services_of, unauthorized
from gateway.api.problems import Handler, Problem
from gateway.ledger.record import Acting

REALM: Final = "sluis-admin"
_PRINCIPAL: Final = web.RequestKey("sluis.principal", Principal)

T: Final = "/tenants/{tenant}"
C: Final = T + "/connectors/{connector}"
D: Final = T + "/destinations/{destination}"
Rule = tuple[Capability, ...]
READ: Final[Rule] = ("tenant.read",)
CONFIGURE: Final[Rule] = ("tenant.configure",)
AUTHORISE: Final[Rule] = ("tenant.authorise",)
AUDIT: Final[Rule] = ("tenant.audit",)
OPERATE: Final[Rule] = ("gateway.operate",)
SELF: Final[Rule] = ("self",)

#: (method, path below /admin/v1) -> capabilities, any one of which lets the call through.
POLICY: Final[dict[tuple[str, str], Rule]] = {
    ("GET", "/me"): SELF,
    ("POST", "/step-up"): SELF,
    ("GET", "/tokens"): SELF,
    ("POST", "/tokens"): SELF,
    ("DELETE", "/tokens/{token}"): SELF,
    ("POST", "/operators"): ("gateway.bootstrap",),
    ("GET", "/operators"): OPERATE,
    ("DELETE", "/operators/{account}"): OPERATE,
    ("POST", "/tenants"): OPERATE,
    ("GET", "/tenants"): OPERATE,
    ("GET", T): ("gateway.operate", "tenant.read"),
    ("POST", T + "/accounts"): ("gateway.operate", "tenant.accounts"),
    ("GET", T + "/accounts"): ("gateway.operate", "tenant.accounts", "tenant.audit"),
    ("DELETE", T + "/accounts/{account}"): ("gateway.operate", "tenant.accounts"),
    ("GET", T + "/oidc"): ("tenant.accounts", "tenant.audit"),
    ("PUT", T + "/oidc"): ("tenant.accounts",),
    ("DELETE", T + "/oidc"): ("tenant.accounts",),
    ("POST", T + "/connectors"): CONFIGURE,
    ("GET", T + "/connectors"): READ,
    ("GET", C): READ,
    ("PATCH", C): CONFIGURE,
    ("DELETE", C): CONFIGURE,
    ("POST", C + "/mapping-preview"): CONFIGURE,
    ("POST", C + "/preview"): AUTHORISE,
    ("GET", C + "/previews/{preview}"): AUTHORISE,
    ("POST", C + "/instructions"): AUTHORISE,
    ("GET", C + "/instructions"): READ,
    ("DELETE", C + "/instructions/{instruction}"): AUTHORISE,
    ("POST", C + "/syncs"): CONFIGURE,
    ("GET", C + "/syncs"): READ,
    ("GET", C + "/syncs/{run}"): READ,
    ("GET", T + "/ledger"): AUDIT,
    ("GET", T + "/ledger/proof/{index}"): AUDIT,
    ("GET", T + "/checkpoints"): AUDIT,
    ("GET", T + "/checkpoints/latest"): AUDIT,
    ("GET", T + "/reports/breach"): AUDIT,
    ("GET", T + "/reports/processing-record"): AUDIT,
    ("POST", T + "/subjects/search"): AUDIT,
    ("POST", T + "/subjects/export"): AUDIT,
    ("POST", T + "/subjects/rectify"): CONFIGURE,
    ("POST", T + "/subjects/erase"): AUTHORISE,
    ("POST", T + "/subjects/restrict"): AUTHORISE,
    ("GET", T + "/suppressions"): AUDIT,
    ("POST", T + "/terminate"): OPERATE,
    ("POST", T + "/destroy"): OPERATE,
    ("POST", T + "/requests"): CONFIGURE,
    ("GET", T + "/requests"): AUDIT,
    ("GET", T + "/requests/{request}"): AUDIT,
    ("POST", T + "/requests/{request}/close"): CONFIGURE,
    ("DELETE", T + "/suppressions/{subject}"): AUTHORISE,
    ("GET", T + "/retention"): READ,
    ("PUT", T + "/retention"): CONFIGURE,
    ("GET", T + "/checkpoint-push"): AUDIT,
    ("PUT", T + "/checkpoint-push"): CONFIGURE,
    ("DELETE", T + "/checkpoint-push"): CONFIGURE,
    ("POST", T + "/destinations"): CONFIGURE,
    ("GET", T + "/destinations"): READ,
    ("GET", D): READ,
    ("PATCH", D): CONFIGURE,
    ("DELETE", D): CONFIGURE,
    ("POST", D + "/secret"): CONFIGURE,
    ("GET", D + "/dead-letters"): READ,
    ("POST", D + "/dead-letters/replay"): CONFIGURE,
    ("POST", T + "/consumers"): CONFIGURE,
    ("GET", T + "/consumers"): READ,
    ("DELETE", T + "/consumers/{consumer}"): CONFIGURE,
    ("POST", T + "/consumers/{consumer}/token"): CONFIGURE,
    ("POST", C + "/scim-token"): CONFIGURE,
}
#: Routes that always need a fresh second factor on the calling credential.
#: POST routes that only read: their body holds what must not be in a URL (and so in an
#: access log), such as the email of a person being looked up.
READ_ONLY_POSTS: Final[frozenset[tuple[str, str]]] = frozenset(
    {("POST", T + "/subjects/search"), ("POST", T + "/subjects/export")}
)
STEP_UP: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("POST", C + "/instructions"),
        ("DELETE", C + "/instructions/{instruction}"),
        ("POST", T + "/consumers"),
        ("POST", T + "/destinations"),
        ("POST", D + "/secret"),
        ("POST", T + "/consumers/{consumer}/token"),
        ("POST", C + "/scim-token"),
        ("PUT", T + "/oidc"),
        ("POST", T + "/subjects/erase"),
        ("POST", T + "/destroy"),
        ("POST", T + "/subjects/restrict"),
        ("DELETE", T + "/suppressions/{subject}"),
    }
)
PREFIX: Final = "/admin/v1"


def principal_of(request: web.Request) -> Principal:
    try:
        return request[_PRINCIPAL]
    except KeyError:  # pragma: no cover - the middleware sets it
        raise Problem(401, "not authenticated") from None


def acting(request: web.Request, tenant: str) -> Acting:
    """The caller acting on `tenant`, for the domain functions that record audit entries."""
    services = services_of(request)
    return Acting(principal_of(request).actor(), services.ledger(tenant))


def require_step_up(request: web.Request) -> None:
    check_step_up(principal_of(request), services_of(request).clock())


def route_template(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    path = resource.canonical
    return path.removeprefix(PREFIX)


def _allowed(principal: Principal, rule: Rule, tenant: str | None) -> None:
    if principal.is_bootstrap:
        if rule == ("gateway.bootstrap",):
            return
        raise Forbidden("the bootstrap token can only invite the first operator")
    if any(allowed(principal, cap, tenant) for cap in rule):
        return
    other = tenant is not None and principal.tenant not in (None, tenant)
    article = "an" if principal.role[0] in "aeiou" else "a"
    raise Forbidden(
        f"{article} {principal.role} may not do this" + (" for this tenant" if other else "")
    )


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = bearer_token(request)
    if token is None:
        raise unauthorized(REALM, "the admin API needs a bearer token")
    services = services_of(request)
    principal = await asyncio.to_thread(services.accounts.bearer, token)
    if principal is None:
        raise unauthorized(REALM, "the bearer token is not valid (unknown, expired or revoked)")
    if request.match_info.http_exception is not None:
        return await handler(request)  # unknown route or method: its own 404/405
    template = route_template(request)
    rule = POLICY.get((request.method, template or ""))
    if rule is None:
        raise Problem(403, "no access rule covers this route; it is refused")
    _allowed(principal, rule, request.match_info.get("tenant"))
    request[_PRINCIPAL] = principal
    if (request.method, template) in STEP_UP:
        check_step_up(principal, services.clock())
    return await handler(request)
