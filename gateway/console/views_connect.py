""" "Connect with <vendor>": the browser's side of connecting a source by signing in at the
vendor (`gateway.sync.connect` holds the protocol and what is sealed).

An admin, with the connector's client id and secret saved, presses "Connect" on the
connector's page (a form with the console's CSRF token and a step-up, as a credentials
change is). The page that answers moves on to the vendor by itself (the console's
`form-action 'self'` holds a form's redirect to another site) and gives the browser the
sealed state in a short-lived cookie, `SameSite=Lax` because the vendor's redirect back is a
cross-site navigation, kept for the callback path only. The callback opens that cookie with
the `state` the vendor sends back, so only the browser that began the connect can finish it,
on any replica. As the session cookie (`SameSite=Strict`) does not come along on that
cross-site navigation, the callback acts as the admin the sealed state names, once the
register says that account is still active and still allowed to configure the tenant; the
page it answers with moves on to the connector's page, where the session is back.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from gateway.accounts.errors import AccountsError
from gateway.accounts.policy import check
from gateway.accounts.principal import Principal
from gateway.console.guard import acting, stepped_up
from gateway.console.i18n import translator
from gateway.console.kit import (
    PageError,
    call,
    is_secure,
    lang_of,
    posted,
    public_base,
    render,
    services,
    url,
)
from gateway.console.views_connectors import CONNECT_CALLBACK, connector_view, find_connector
from gateway.runtime.services import Services
from gateway.store.records import NotFound
from gateway.sync.connect import (
    PENDING_SECONDS,
    ConnectFailed,
    Pending,
    begin,
    exchange,
    keep_refresh_token,
    opened,
    still_current,
)

STATE_COOKIE: Final = "sluis_connect"
CALLBACK: Final = CONNECT_CALLBACK
_ERROR_CODE: Final = re.compile(r"[a-z_]{1,64}")


def redirect_uri(request: web.Request) -> str:
    """What an admin registers at the vendor as the app's redirect URI."""
    return public_base(request) + CALLBACK


async def begin_connect(request: web.Request) -> web.StreamResponse:
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    principal, form = await posted(request, back=url("t", tenant, "connectors", connector))
    check(principal, "tenant.configure", tenant)
    record = await find_connector(request)
    s = services(request)
    t = translator(lang_of(request))
    errors: dict[str, str] = {}
    stamped = await stepped_up(s, principal, form, errors, t)
    if stamped is None:
        return await connector_view(request, principal, record, connect_errors=errors, status=422)
    try:
        begun = await call(
            begin, s.box, record, redirect_uri=redirect_uri(request),
            account_id=stamped.account_id, credential=stamped.credential,
            step_up_at=stamped.step_up_at, now=s.clock(),
        )  # fmt: skip
    except ConnectFailed as exc:
        raise PageError(exc.status, exc.key, **exc.values) from None
    response = render(
        request, "moving_on.html", target=begun.authorize_url, message=t("connect.moving_on")
    )
    response.set_cookie(
        STATE_COOKIE, begun.sealed, path=CALLBACK, max_age=PENDING_SECONDS, httponly=True,
        secure=is_secure(request), samesite="Lax",
    )  # fmt: skip
    return response


def _admin(s: Services, pending: Pending) -> Principal:
    """The admin who began the connect, as the register says now."""
    try:
        account = s.accounts.get_account(pending.account_id)
    except (NotFound, AccountsError):
        raise ConnectFailed(403, "error.forbidden") from None
    principal = Principal(
        account.id, account.role, account.tenant, pending.credential, pending.step_up_at
    )
    try:
        if account.status != "active":
            raise ConnectFailed(403, "error.forbidden")
        check(principal, "tenant.configure", pending.tenant)
    except AccountsError:
        raise ConnectFailed(403, "error.forbidden") from None
    return principal


async def callback(request: web.Request) -> web.StreamResponse:
    s = services(request)
    query = request.query
    try:
        pending = opened(
            s.box, request.cookies.get(STATE_COOKIE, ""), query.get("state", ""), s.clock()
        )
    except ConnectFailed as exc:
        return _refused(request, exc)
    try:
        await _finish(request, s, pending)
    except ConnectFailed as exc:
        response = _refused(request, exc)
    else:
        t = translator(lang_of(request))
        target = url("t", pending.tenant, "connectors", pending.connector) + "?connected=1"
        response = render(
            request, "moving_on.html", target=target, message=t("connect.done"), here=CALLBACK
        )
    response.del_cookie(STATE_COOKIE, path=CALLBACK)
    return response


def _refused(request: web.Request, exc: ConnectFailed) -> web.Response:
    """The error page, its links not repeating the callback's query (the vendor's code)."""
    return render(
        request, "error.html", exc.status, message_key=exc.key, message_values=exc.values,
        here=CALLBACK,
    )  # fmt: skip


async def _finish(request: web.Request, s: Services, pending: Pending) -> None:
    query = request.query
    error = query.get("error")
    if error is not None:
        if error == "access_denied":
            raise ConnectFailed(403, "connect.denied")
        raise ConnectFailed(
            400, "connect.vendor_error", code=error if _ERROR_CODE.fullmatch(error) else "?"
        )
    code = query.get("code", "")
    if not code or len(code) > 4096:
        raise ConnectFailed(400, "connect.bad_state")
    principal = await call(_admin, s, pending)
    try:
        record = await call(s.store.get_connector, pending.tenant, pending.connector)
    except NotFound:
        raise ConnectFailed(404, "connector.not_found", connector=pending.connector) from None
    still_current(record, pending)
    refresh = await exchange(
        s.store, s.box, record, pending, code, allow_private=s.settings.allow_private_sources
    )
    await call(
        keep_refresh_token, s.store, s.box, pending, refresh, now=s.clock(),
        by=acting(s, principal, pending.tenant),
    )  # fmt: skip


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/t/{tenant}/connectors/{connector}/connect", begin_connect)
    router.add_get("/connect/callback", callback, allow_head=False)
