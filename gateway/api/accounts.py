"""Account routes of the admin API: who am I, step-up, API tokens, operators, and a
tenant's accounts (invite, list, disable).

Signing in with a password and a second factor happens in the console (a browser with a
session); the API is for automation with API tokens, which a signed-in person makes here
or in the console. Invitations are answered with a one-time link to the console's
enrolment page, shown once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.accounts.oidc import OidcFailed
from gateway.accounts.policy import STEP_UP_SECONDS
from gateway.accounts.service import Account
from gateway.api.account_models import (
    AccountList,
    AccountOut,
    InvitationCreate,
    InvitationCreated,
    Me,
    OidcOut,
    OidcSet,
    OperatorInvitationCreate,
    StepUp,
    StepUpDone,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from gateway.api.auth import principal_of
from gateway.api.httpkit import location, model_response, read_body, services_of, store_call
from gateway.api.problems import Problem, invalid
from gateway.store.account_records import ApiTokenRecord, OidcRecord

INVITATION_PATH = "/console/invitations/"


def account_out(a: Account) -> AccountOut:
    return AccountOut(
        id=a.id, tenant=a.tenant, role=a.role, email=a.email, name=a.name,
        status=a.status,  # type: ignore[arg-type]
        created_at=a.created_at,
    )  # fmt: skip


def token_out(t: ApiTokenRecord) -> TokenOut:
    return TokenOut(
        id=t.id, account=t.account_id, tenant=t.tenant, role=t.role, name=t.name,
        created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at,
    )  # fmt: skip


async def me(request: web.Request) -> web.Response:
    p = principal_of(request)
    return model_response(
        Me(account=p.account_id, role=p.role, tenant=p.tenant, credential=p.credential,
           step_up_at=p.step_up_at)
    )  # fmt: skip


async def step_up(request: web.Request) -> web.Response:
    body = await read_body(request, StepUp)
    accounts = services_of(request).accounts
    done = await asyncio.to_thread(accounts.step_up, principal_of(request), body.code)
    assert done.step_up_at is not None
    return model_response(StepUpDone(step_up_at=done.step_up_at, valid_seconds=STEP_UP_SECONDS))


async def list_tokens(request: web.Request) -> web.Response:
    accounts = services_of(request).accounts
    found = await asyncio.to_thread(accounts.list_tokens, principal_of(request))
    return model_response(TokenList(tokens=[token_out(t) for t in found]))


async def post_token(request: web.Request) -> web.Response:
    body = await read_body(request, TokenCreate)
    p = principal_of(request)
    accounts = services_of(request).accounts
    record, plain = await asyncio.to_thread(
        accounts.create_token, p, name=body.name, role=body.role or p.role,
        expires_at=body.expires_at,
    )  # fmt: skip
    out = TokenCreated(**token_out(record).model_dump(), token=plain)
    return model_response(out, 201, {"Location": location(request, record.id)})


async def delete_token(request: web.Request) -> web.Response:
    accounts = services_of(request).accounts
    revoked = await asyncio.to_thread(
        accounts.revoke_token, principal_of(request), request.match_info["token"]
    )
    return model_response(token_out(revoked))


async def _invite(request: web.Request, tenant: str | None) -> web.Response:
    body: InvitationCreate | OperatorInvitationCreate
    if tenant is None:
        body = await read_body(request, OperatorInvitationCreate)
    else:
        body = await read_body(request, InvitationCreate)
    s = services_of(request)
    if tenant is not None:
        await store_call(s.store.get_tenant, tenant)
    invitation = await asyncio.to_thread(
        s.accounts.invite, principal_of(request), tenant=tenant, role=body.role,
        email=body.email, name=body.name,
    )  # fmt: skip
    account = await asyncio.to_thread(s.accounts.get_account, invitation.account_id)
    out = InvitationCreated(
        account=account_out(account),
        invitation_url=INVITATION_PATH + invitation.token,
        expires_at=invitation.expires_at,
    )
    headers = {"Location": location(request, account.id), "Cache-Control": "no-store"}
    return model_response(out, 201, headers)


async def invite_operator(request: web.Request) -> web.Response:
    return await _invite(request, None)


async def invite_account(request: web.Request) -> web.Response:
    return await _invite(request, request.match_info["tenant"])


async def list_operators(request: web.Request) -> web.Response:
    accounts = services_of(request).accounts
    found = await asyncio.to_thread(accounts.list_accounts, principal_of(request), None)
    return model_response(AccountList(accounts=[account_out(a) for a in found]))


async def list_accounts(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    found = await asyncio.to_thread(s.accounts.list_accounts, principal_of(request), tenant)
    return model_response(AccountList(accounts=[account_out(a) for a in found]))


async def _disable(request: web.Request, tenant: str | None) -> web.Response:
    s = services_of(request)
    account_id = request.match_info["account"]
    found = await asyncio.to_thread(s.accounts.get_account, account_id)
    if found.tenant != tenant:
        raise Problem(404, f"not found: account {account_id}")
    done = await asyncio.to_thread(s.accounts.disable, principal_of(request), account_id)
    return model_response(account_out(done))


async def disable_operator(request: web.Request) -> web.Response:
    return await _disable(request, None)


async def disable_account(request: web.Request) -> web.Response:
    return await _disable(request, request.match_info["tenant"])


OIDC_CALLBACK = "/console/oidc/callback"


def oidc_out(record: OidcRecord) -> OidcOut:
    return OidcOut(
        tenant=record.tenant, issuer=record.issuer, client_id=record.client_id,
        updated_at=record.updated_at, redirect_path=OIDC_CALLBACK,
    )  # fmt: skip


async def get_oidc(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    found = await asyncio.to_thread(services_of(request).accounts.oidc_record, tenant)
    if found is None:
        raise Problem(404, "this tenant has no identity provider configured")
    return model_response(oidc_out(found))


async def put_oidc(request: web.Request) -> web.Response:
    """Let the tenant's people sign in through their own identity provider; the issuer's
    discovery document must answer (so a typo fails here, not at someone's sign-in)."""
    body = await read_body(request, OidcSet)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    issuer = str(body.issuer).rstrip("/")
    if not issuer.startswith("https://") and not s.settings.allow_private_sources:
        raise invalid("issuer", "must be an https URL")
    try:
        await s.oidc.discover(issuer)
    except OidcFailed as exc:
        raise invalid("issuer", str(exc)) from None
    record = await asyncio.to_thread(
        s.accounts.configure_oidc, principal_of(request), tenant, issuer=issuer,
        client_id=body.client_id, client_secret=body.client_secret,
    )  # fmt: skip
    return model_response(oidc_out(record))


async def delete_oidc(request: web.Request) -> web.Response:
    """Stop sign-in through the identity provider; answers with what was removed."""
    tenant = request.match_info["tenant"]
    accounts = services_of(request).accounts
    found = await asyncio.to_thread(accounts.oidc_record, tenant)
    if found is None or not await asyncio.to_thread(
        accounts.remove_oidc, principal_of(request), tenant
    ):
        raise Problem(404, "this tenant has no identity provider configured")
    return model_response(oidc_out(found))


def add_routes(r: web.UrlDispatcher, *, tenant_path: str) -> None:
    r.add_get("/me", me, allow_head=False)
    r.add_post("/step-up", step_up)
    r.add_get("/tokens", list_tokens, allow_head=False)
    r.add_post("/tokens", post_token)
    r.add_delete("/tokens/{token}", delete_token)
    r.add_post("/operators", invite_operator)
    r.add_get("/operators", list_operators, allow_head=False)
    r.add_delete("/operators/{account}", disable_operator)
    r.add_post(tenant_path + "/accounts", invite_account)
    r.add_get(tenant_path + "/accounts", list_accounts, allow_head=False)
    r.add_delete(tenant_path + "/accounts/{account}", disable_account)
    r.add_get(tenant_path + "/oidc", get_oidc, allow_head=False)
    r.add_put(tenant_path + "/oidc", put_oidc)
    r.add_delete(tenant_path + "/oidc", delete_oidc)
