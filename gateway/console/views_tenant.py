"""A tenant's pages beyond its connectors: the authorisation history, feed consumers, the
ledger (for the auditor: entries, the latest checkpoint, verification, downloads) and the
tenant's accounts.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from gateway.accounts.errors import AccountExists
from gateway.accounts.policy import check
from gateway.accounts.principal import Principal
from gateway.console.guard import acting, allowed, fresh, stepped_up
from gateway.console.i18n import Translate, translator
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
from gateway.console.names import account_names
from gateway.keys.signing import public_key_pem
from gateway.ledger.export import write_export
from gateway.ledger.log import LedgerCorrupt
from gateway.ledger.verify import VerifyReport
from gateway.store.account_records import Role
from gateway.store.records import Instruction, NotFound
from gateway.tenancy import create_consumer
from gateway.tenancy import revoke_consumer as revoke_consumer_record

ENTRIES_SHOWN: Final = 50
MAX_NAME: Final = 100
INVITABLE: Final[tuple[Role, ...]] = ("admin", "auditor", "viewer")


def _tenant(request: web.Request) -> str:
    return request.match_info["tenant"]


async def _known_tenant(request: web.Request, tenant: str) -> None:
    try:
        await call(services(request).store.get_tenant, tenant)
    except NotFound:
        raise PageError(404, "error.not_found") from None


# --------------------------------------------------------------------------- history


async def history(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.audit", tenant)
    s = services(request)
    await _known_tenant(request, tenant)

    def gather() -> list[Instruction]:
        found: list[Instruction] = []
        for record in s.store.list_connectors(tenant):
            found.extend(s.store.list_instructions(tenant, record.id))
        return sorted(found, key=lambda i: i.granted_at, reverse=True)

    instructions = await call(gather)
    names = await account_names(s, principal, tenant)
    return render(
        request,
        "history.html",
        principal=principal,
        tenant=tenant,
        instructions=instructions,
        names=names,
        at=s.clock(),
    )


# --------------------------------------------------------------------------- consumers


async def _consumers_page(
    request: web.Request,
    principal: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: tuple[str, str] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
) -> web.Response:
    tenant = _tenant(request)
    consumers = await call(services(request).store.list_consumers, tenant)
    return render(
        request,
        "consumers.html",
        status,
        principal=principal,
        tenant=tenant,
        consumers=consumers,
        values=values or {},
        errors=errors or {},
        created=created,
        fresh=fresh(principal, now(request)),
        can_configure=allowed(principal, "tenant.configure", tenant),
        flashes=flashes or [],
    )


async def consumers(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.read", tenant)
    await _known_tenant(request, tenant)
    kept = prefill(request)
    t = translator(lang_of(request))
    flashes = [Flash("info", t("signin.resumed"))] if kept else []
    if request.query.get("revoked"):
        flashes.append(Flash("ok", t("consumers.revoked_done")))
    return await _consumers_page(request, principal, values=kept, flashes=flashes)


async def create_consumer_action(request: web.Request) -> web.StreamResponse:
    tenant = _tenant(request)
    principal, form = await posted(request, back=url("t", tenant, "consumers"))
    check(principal, "tenant.configure", tenant)
    await _known_tenant(request, tenant)
    s = services(request)
    t = translator(lang_of(request))
    name = form.get("name", "").strip()
    errors: dict[str, str] = {}
    if not name or len(name) > MAX_NAME:
        errors["name"] = t("consumers.bad_name")
    stamped = None if errors else await stepped_up(s, principal, form, errors, t)
    if stamped is None:
        return await _consumers_page(
            request, principal, values={"name": name}, errors=errors, status=422
        )
    consumer, token = await call(
        create_consumer,
        s.store,
        tenant=tenant,
        name=name,
        now=s.clock(),
        by=acting(s, stamped, tenant),
    )
    return await _consumers_page(request, stamped, created=(consumer.name, token))


async def revoke_consumer(request: web.Request) -> web.StreamResponse:
    tenant = _tenant(request)
    principal, _ = await posted(request, back=url("t", tenant, "consumers"))
    check(principal, "tenant.configure", tenant)
    s = services(request)
    try:
        await call(
            revoke_consumer_record,
            s.store,
            tenant=tenant,
            consumer_id=request.match_info["consumer"],
            now=s.clock(),
            by=acting(s, principal, tenant),
        )
    except NotFound:
        raise PageError(404, "error.not_found") from None
    raise web.HTTPSeeOther(url("t", tenant, "consumers") + "?revoked=1")


# --------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class EntryView:
    index: int
    kind: str
    summary: str


async def ledger(request: web.Request) -> web.StreamResponse:
    """Entries, the latest checkpoint and downloads; the whole log is recomputed and checked
    against its signed checkpoints only when asked (`?verify=1`): that reads every entry."""
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.audit", tenant)
    await _known_tenant(request, tenant)
    s = services(request)
    log = s.ledger(tenant)
    verify = request.query.get("verify") == "1"

    def read() -> tuple[int, str | None, VerifyReport | None, list[EntryView]]:
        size = log.size()
        latest = s.store.ledger.latest_checkpoint(tenant)
        report = log.verify(s.signer.public_key) if verify else None
        start = max(size - ENTRIES_SHOWN, 0)
        records = log.entries(start - 1 if start else None, ENTRIES_SHOWN)
        views = [
            EntryView(
                r.index,
                str(getattr(r.entry, "direction", None) or getattr(r.entry, "action", "?")),
                r.entry.model_dump_json(exclude_none=True)[:600],
            )
            for r in reversed(records)
        ]
        return size, latest.note if latest else None, report, views

    corrupt = False
    try:
        size, note, report, entries = await call(read)
    except LedgerCorrupt:
        size, note, report, entries, corrupt = 0, None, None, [], True
    return render(
        request,
        "ledger.html",
        principal=principal,
        tenant=tenant,
        size=size,
        checkpoint=note,
        report=report,
        corrupt=corrupt,
        entries=entries,
    )


async def ledger_export(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.audit", tenant)
    await _known_tenant(request, tenant)
    s = services(request)

    def export() -> bytes:
        out = io.BytesIO()
        with s.store.ledger.snapshot() as reader:
            write_export(reader, [tenant], out)
        return out.getvalue()

    body = await call(export)
    return web.Response(
        body=body,
        content_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="sluis-ledger-{tenant}.jsonl"'},
    )


async def latest_checkpoint(request: web.Request) -> web.StreamResponse:
    """The latest signed checkpoint as a file: what an auditor keeps, so that `sluis audit
    verify` later catches a history rewritten behind it."""
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.audit", tenant)
    await _known_tenant(request, tenant)
    latest = await call(services(request).store.ledger.latest_checkpoint, tenant)
    if latest is None:
        raise PageError(404, "ledger.no_checkpoint")
    return web.Response(
        text=latest.note,
        content_type="text/plain",
        headers={
            "Content-Disposition": (
                f'attachment; filename="sluis-checkpoint-{tenant}-{latest.size}.txt"'
            )
        },
    )


async def public_key(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.audit", tenant)
    pem = public_key_pem(services(request).signer.public_key)
    return web.Response(
        text=pem,
        content_type="application/x-pem-file",
        headers={"Content-Disposition": 'attachment; filename="sluis-ledger-public-key.pem"'},
    )


# --------------------------------------------------------------------------- accounts


async def accounts_view(
    request: web.Request,
    principal: Principal,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    invited: tuple[str, str, str] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
    idp_values: dict[str, str] | None = None,
    idp_errors: dict[str, str] | None = None,
) -> web.Response:
    tenant = _tenant(request)
    s = services(request)
    accounts = await call(s.accounts.list_accounts, principal, tenant)
    idp = await call(s.accounts.oidc_record, tenant)
    return render(
        request,
        "accounts.html",
        status,
        principal=principal,
        tenant=tenant,
        accounts=accounts,
        roles=INVITABLE,
        values=values or {"role": "viewer"},
        errors=errors or {},
        invited=invited,
        flashes=flashes or [],
        idp=idp,
        idp_values=idp_values or {},
        idp_errors=idp_errors or {},
        callback=f"{request.scheme}://{request.host}{url('oidc', 'callback')}",
        fresh=fresh(principal, s.clock()),
    )


async def accounts(request: web.Request) -> web.StreamResponse:
    principal = await signed_in(request)
    tenant = _tenant(request)
    check(principal, "tenant.accounts", tenant)
    await _known_tenant(request, tenant)
    kept = prefill(request)
    t = translator(lang_of(request))
    flashes = [Flash("info", t("signin.resumed"))] if kept else []
    if request.query.get("disabled"):
        flashes.append(Flash("ok", t("accounts.disabled")))
    if request.query.get("idp") in ("set", "removed"):
        flashes.append(Flash("ok", t("idp." + request.query["idp"])))
    return await accounts_view(
        request, principal, values=kept or None, idp_values=kept, flashes=flashes
    )


def invitation_link(request: web.Request, token: str) -> str:
    return f"{request.scheme}://{request.host}{url('invitations', token)}"


def read_invitee(
    form: Mapping[str, str], roles: tuple[str, ...], t: Translate
) -> tuple[dict[str, str], dict[str, str]]:
    """Name, email and role of an invitation form, checked."""
    values = {
        "name": form.get("name", "").strip(),
        "email": form.get("email", "").strip(),
        "role": form.get("role", roles[0]),
    }
    errors: dict[str, str] = {}
    if not values["name"] or len(values["name"]) > MAX_NAME:
        errors["name"] = t("accounts.bad_name")
    email = values["email"]
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 254 or " " in email:
        errors["email"] = t("accounts.bad_email")
    if values["role"] not in roles:
        errors["role"] = t("accounts.bad_role")
    return values, errors


async def invite(request: web.Request) -> web.StreamResponse:
    tenant = _tenant(request)
    principal, form = await posted(request, back=url("t", tenant, "accounts"))
    check(principal, "tenant.accounts", tenant)
    t = translator(lang_of(request))
    values, errors = read_invitee(form, INVITABLE, t)
    if errors:
        return await accounts_view(request, principal, values=values, errors=errors, status=422)
    try:
        invitation = await call(
            services(request).accounts.invite,
            principal,
            tenant=tenant,
            role=next(r for r in INVITABLE if r == values["role"]),
            email=values["email"],
            name=values["name"],
        )
    except AccountExists:
        errors["email"] = t("accounts.exists")
        return await accounts_view(request, principal, values=values, errors=errors, status=409)
    link = invitation_link(request, invitation.token)
    expires = invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return await accounts_view(request, principal, invited=(values["name"], link, expires))


async def disable(request: web.Request) -> web.StreamResponse:
    tenant = _tenant(request)
    principal, _ = await posted(request, back=url("t", tenant, "accounts"))
    check(principal, "tenant.accounts", tenant)
    s = services(request)
    account_id = request.match_info["account"]
    mine = {a.id for a in await call(s.accounts.list_accounts, principal, tenant)}
    if account_id not in mine:
        raise PageError(404, "error.not_found")
    await call(s.accounts.disable, principal, account_id)
    raise web.HTTPSeeOther(url("t", tenant, "accounts") + "?disabled=1")


def add_routes(router: web.UrlDispatcher) -> None:
    t = "/t/{tenant}"
    router.add_get(t + "/authorisations", history, allow_head=False)
    router.add_get(t + "/consumers", consumers, allow_head=False)
    router.add_post(t + "/consumers", create_consumer_action)
    router.add_post(t + "/consumers/{consumer}/revoke", revoke_consumer)
    router.add_get(t + "/ledger", ledger, allow_head=False)
    router.add_get(t + "/ledger/export", ledger_export, allow_head=False)
    router.add_get(t + "/ledger/public-key", public_key, allow_head=False)
    router.add_get(t + "/ledger/checkpoint", latest_checkpoint, allow_head=False)
    router.add_get(t + "/accounts", accounts, allow_head=False)
    router.add_post(t + "/accounts", invite)
    router.add_post(t + "/accounts/{account}/disable", disable)
