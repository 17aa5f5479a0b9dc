"""Sign-in through the organisation's own identity provider (OpenID Connect), for tenants
whose admin configured one (`PUT /admin/v1/tenants/{t}/oidc`).

The protocol (discovery, PKCE, state, nonce, the ID token's checks) is
`gateway.accounts.oidc`; this module is the browser's side of it. The login's `state` is
also kept in a short-lived cookie and must come back with the browser that began the login,
so a callback link made by someone else cannot sign a victim in to the sender's account
(login CSRF). That cookie is `SameSite=Lax`, since the identity provider's redirect back is
a cross-site navigation; for the same reason the session cookie (`SameSite=Strict`) is set
on a page that then moves on by itself, not on a redirect. The way out to the provider is
such a page too: browsers hold a form's redirect to the console's `form-action 'self'`.
"""

from __future__ import annotations

import hmac
from typing import Final
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from gateway.accounts.oidc import OidcFailed
from gateway.console.i18n import translator
from gateway.console.kit import (
    PageError,
    call,
    is_secure,
    lang_of,
    public_base,
    render,
    services,
    session_value,
    set_session,
    url,
)

STATE_COOKIE: Final = "sluis_oidc"
STATE_SECONDS: Final = 600
CALLBACK: Final = "/console/oidc/callback"


def redirect_uri(request: web.Request) -> str:
    return public_base(request) + CALLBACK


async def begin(request: web.Request) -> web.StreamResponse:
    tenant = request.query.get("tenant", "").strip()[:64]
    s = services(request)
    config = await call(s.accounts.oidc_client, tenant) if tenant else None
    if config is None:
        raise PageError(404, "oidc.not_configured")
    try:
        target = await s.oidc.begin(config, redirect_uri(request))
    except OidcFailed:
        raise PageError(502, "oidc.failed") from None
    state = parse_qs(urlsplit(target).query).get("state", [""])[0]
    # A page that moves on by itself, not a redirect: browsers apply the console's
    # `form-action 'self'` to a form's redirects, and the provider is another site.
    t = translator(lang_of(request))
    response = render(request, "moving_on.html", target=target, message=t("oidc.moving_on"))
    response.set_cookie(
        STATE_COOKIE, state, path=CALLBACK, max_age=STATE_SECONDS, httponly=True,
        secure=is_secure(request), samesite="Lax",
    )  # fmt: skip
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    state = request.query.get("state", "")
    code = request.query.get("code", "")
    kept = request.cookies.get(STATE_COOKIE, "")
    if not state or not code or not hmac.compare_digest(state.encode(), kept.encode()):
        raise PageError(400, "oidc.failed")
    s = services(request)
    tenant = await s.oidc.pending_tenant(state)
    config = await call(s.accounts.oidc_client, tenant) if tenant else None
    if config is None:
        raise PageError(400, "oidc.failed")
    try:
        identity = await s.oidc.complete(config, state, code)
        signed = await call(s.accounts.sign_in_oidc, identity)
    except OidcFailed:
        raise PageError(401, "oidc.no_account") from None
    old = session_value(request)
    if old is not None:
        await call(s.accounts.sign_out, old)
    t = translator(lang_of(request))
    response = render(
        request, "moving_on.html", principal=signed.principal, target=url(""),
        message=t("oidc.signed_in"),
    )  # fmt: skip
    set_session(response, request, signed.session)
    response.del_cookie(STATE_COOKIE, path=CALLBACK)
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/oidc", begin, allow_head=False)
    router.add_get("/oidc/callback", callback, allow_head=False)
