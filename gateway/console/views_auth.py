"""Signing in and out, accepting an invitation, and the language toggle.

Sign-in gives one message for every wrong input (which of email, password or code was
wrong is not told) and keeps the email; throttling says when to try again. Every sign-in
sets a new session cookie (the old session, if any, is ended), so a session id planted
before sign-in is worth nothing after it.
"""

from __future__ import annotations

from typing import Final

import segno
from aiohttp import web

from gateway.accounts.errors import (
    BadCode,
    InvitationInvalid,
    SignInFailed,
    Throttled,
    WeakPassword,
)
from gateway.accounts.policy import check
from gateway.accounts.service import Enrolment, PendingInvitation
from gateway.console.i18n import COOKIE as LANG_COOKIE
from gateway.console.i18n import LANGS, translator
from gateway.console.kit import (
    PageError,
    call,
    clear_session,
    current,
    is_secure,
    lang_of,
    posted,
    read_form,
    render,
    safe_next,
    services,
    session_value,
    set_session,
    url,
)

MAX_INPUT: Final = 1024


async def home(request: web.Request) -> web.StreamResponse:
    principal = await current(request)
    if principal is None:
        raise web.HTTPSeeOther(url("sign-in"))
    if principal.role == "operator":
        raise web.HTTPSeeOther(url("operator", "tenants"))
    if principal.tenant is None:
        raise PageError(403, "error.forbidden")
    raise web.HTTPSeeOther(url("t", principal.tenant))


def _sign_in_page(
    request: web.Request,
    *,
    status: int = 200,
    email: str = "",
    next_path: str = "",
    resume: str = "",
    message: str | None = None,
    kind: str = "error",
    headers: dict[str, str] | None = None,
) -> web.Response:
    return render(
        request,
        "sign_in.html",
        status,
        headers=headers,
        email=email,
        next=safe_next(next_path),
        resume=resume,
        message=message,
        message_kind=kind,
        errors={},
    )


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    t = translator(lang_of(request))
    message, kind = None, "info"
    if request.query.get("expired"):
        message = t("signin.expired")
    elif request.query.get("out"):
        message = t("signout.done")
    return _sign_in_page(
        request,
        next_path=request.query.get("next", ""),
        resume=request.query.get("resume", "")[:64],
        message=message,
        kind=kind,
    )


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    t = translator(lang_of(request))
    email = form.get("email", "").strip()[:MAX_INPUT]
    next_path = safe_next(form.get("next"))
    resume = form.get("resume", "")[:64]
    s = services(request)
    try:
        signed = await call(
            s.accounts.sign_in,
            email=email,
            password=form.get("password", "")[:MAX_INPUT],
            code=form.get("code", "").strip()[:MAX_INPUT],
            client=request.remote or "unknown",
        )
    except Throttled as exc:
        seconds = max(1, int(exc.retry_after))
        return _sign_in_page(
            request,
            status=429,
            email=email,
            next_path=next_path,
            resume=resume,
            message=t("signin.throttled", seconds=seconds),
            headers={"Retry-After": str(seconds)},
        )
    except SignInFailed:
        return _sign_in_page(
            request,
            status=401,
            email=email,
            next_path=next_path,
            resume=resume,
            message=t("signin.failed"),
        )
    old = session_value(request)
    if old is not None:
        await call(s.accounts.sign_out, old)
    target = next_path
    if resume:
        target += ("&" if "?" in target else "?") + "resume=" + resume
    response = web.HTTPSeeOther(target)
    set_session(response, request, signed.session)
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    principal, _ = await posted(request)
    check(principal, "self", principal.tenant)
    value = session_value(request)
    if value is not None:
        await call(services(request).accounts.sign_out, value)
    response = web.HTTPSeeOther(url("sign-in") + "?out=1")
    clear_session(response, request)
    raise response


async def set_language(request: web.Request) -> web.StreamResponse:
    """A preference only: the toggle is a plain link, so it works without JavaScript."""
    chosen = request.query.get("set", "")
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    if chosen in LANGS:
        response.set_cookie(
            LANG_COOKIE,
            chosen,
            path="/",
            max_age=365 * 24 * 3600,
            samesite="Strict",
            secure=is_secure(request),
            httponly=True,
        )
    raise response


# --------------------------------------------------------------------------- invitations


async def _pending(request: web.Request, token: str) -> tuple[PendingInvitation, Enrolment]:
    s = services(request)
    try:
        pending = await call(s.accounts.invitation, token)
        enrolment = await call(s.accounts.begin_enrolment, token)
    except InvitationInvalid:
        raise PageError(410, "invite.invalid") from None
    return pending, enrolment


def qr_code(uri: str) -> str:
    """The otpauth URI as a QR code (an SVG data URI), for the authenticator app's camera."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=4))


async def invitation_form(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    pending, enrolment = await _pending(request, token)
    return render(
        request,
        "invitation.html",
        pending=pending,
        enrolment=enrolment,
        qr=qr_code(enrolment.uri),
        errors={},
        action=request.path,
    )


async def accept_invitation(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    form = await read_form(request)
    t = translator(lang_of(request))
    pending, enrolment = await _pending(request, token)
    password = form.get("password", "")[:MAX_INPUT]
    errors: dict[str, str] = {}
    if not password:
        errors["password"] = t("common.required")
    elif password != form.get("password2", ""):
        errors["password2"] = t("invite.mismatch")
    code = form.get("code", "").strip()[:64]
    if not code:
        errors["code"] = t("common.code_missing")
    if not errors:
        try:
            codes = await call(
                services(request).accounts.complete_enrolment,
                token,
                password=password,
                code=code,
            )
        except WeakPassword as exc:
            # The accounts service names the rule the password breaks (in English).
            errors["password"] = t("invite.weak", rule=str(exc))
        except BadCode:
            errors["code"] = t("common.code_bad")
        except InvitationInvalid:
            raise PageError(410, "invite.invalid") from None
        else:
            return render(request, "invitation_done.html", codes=codes)
    return render(
        request,
        "invitation.html",
        422,
        pending=pending,
        enrolment=enrolment,
        qr=qr_code(enrolment.uri),
        errors=errors,
        action=request.path,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", home, allow_head=False)
    router.add_get("/sign-in", sign_in_form, allow_head=False)
    router.add_post("/sign-in", sign_in)
    router.add_post("/sign-out", sign_out)
    router.add_get("/lang", set_language, allow_head=False)
    router.add_get("/invitations/{token}", invitation_form, allow_head=False)
    router.add_post("/invitations/{token}", accept_invitation)


__all__ = ["add_routes"]
