"""Every admin route refuses every other tenant's principals and every role below its rule.

The route list comes from the OpenAPI document (which `test_ops` proves equal to the app's
route table), so a route added later is covered without touching this file; one without an
access rule fails here (and is refused by the gateway). Allowed principals are checked too:
they get past authorisation (no 401/403), whatever the route then answers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.accounts.policy import GRANTS
from gateway.api.auth import POLICY, PREFIX, READ_ONLY_POSTS, STEP_UP
from gateway.api.openapi import document
from gateway.runtime.services import Services
from gateway.store.account_records import Role
from tests.api.conftest import ADMIN_TOKEN, Api, make_connector, make_tenant
from tests.principals import People

PARAMS = {
    "tenant": "acme", "connector": "hr", "instruction": "ins_x", "run": "run_x",
    "consumer": "con_x", "index": "0", "token": "tok_x", "account": "acc_0000000000000000",
    "preview": "pv_x", "subject": "0" * 32, "request": "dsr_" + "0" * 16,
    "destination": "dst_" + "0" * 16,
}  # fmt: skip
TENANT_ROLES: tuple[Role, ...] = ("admin", "auditor", "viewer")


def admin_routes() -> list[tuple[str, str]]:
    doc = document()
    return sorted(
        (method.upper(), path.removeprefix(PREFIX))
        for path, ops in doc["paths"].items()
        if path.startswith(PREFIX + "/")
        for method in ops
    )


def allowed_roles(method: str, template: str) -> set[Role]:
    return {role for cap in POLICY[(method, template)] for role in GRANTS[cap]}


def concrete(template: str) -> str:
    return PREFIX + re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], template)


def test_every_documented_admin_route_has_an_access_rule() -> None:
    routes = admin_routes()
    assert len(routes) > 30
    missing = [r for r in routes if r not in POLICY]
    assert not missing, f"admin routes without an access rule: {missing}"
    # Nothing in the table that no route uses (a typo would leave a route ruleless).
    documented = set(routes)
    stale = [r for r in POLICY if r not in documented]
    # (Rules written ahead of routes another change adds are allowed, and only those.)
    ahead = ("/tenants/{tenant}/checkpoint", "/tenants/{tenant}/connectors/{connector}/preview")
    assert all(path.startswith(ahead) for _, path in stale), stale


#: Ending a tenant's contract is the operator's (the platform's), and shows no one's data.
_CONTRACT_ROUTES = ("/tenants/{tenant}/terminate", "/tenants/{tenant}/destroy")


def test_the_rules_say_what_the_roles_promise() -> None:
    for method, template in admin_routes():
        roles = allowed_roles(method, template)
        tenant_route = template.startswith("/tenants/{tenant}")
        read_only = method == "GET" or (method, template) in READ_ONLY_POSTS
        if not read_only and POLICY[(method, template)] != ("self",):
            # Read-only roles change nothing but their own tokens and step-up.
            assert "auditor" not in roles and "viewer" not in roles, (method, template)
        if (
            tenant_route
            and not template.startswith("/tenants/{tenant}/accounts")
            and template not in ("/tenants/{tenant}", *_CONTRACT_ROUTES)
        ):
            # Operators run the gateway: no tenant's people, connectors or authorisations.
            assert "operator" not in roles, (method, template)
        if "/instructions" in template and method != "GET":
            assert roles == {"admin"} and (method, template) in STEP_UP
    for route in (("GET", "/tenants/{tenant}/ledger"), ("GET", "/tenants/{tenant}/accounts")):
        assert "auditor" in allowed_roles(*route)
    assert "viewer" not in allowed_roles("GET", "/tenants/{tenant}/ledger")


@pytest.fixture
async def world(api: Api, services: Services, people: People) -> Api:
    for tenant in ("acme", "globex"):
        await make_tenant(api, tenant)
        await make_connector(api, tenant)
    for tenant in ("acme", "globex"):
        for role in TENANT_ROLES:
            people.token(tenant, role)
    return api


def _body(method: str) -> Any:
    return {} if method in ("POST", "PUT", "PATCH") else None


async def test_every_route_refuses_other_tenants_and_lower_roles(
    world: Api, people: People
) -> None:
    api = world
    refused = allowed = 0
    for method, template in admin_routes():
        path = concrete(template)
        roles = allowed_roles(method, template)
        callers: list[tuple[str, Role, str | None]] = [("operator", "operator", None)]
        callers += [(f"acme {r}", r, "acme") for r in TENANT_ROLES]
        callers += [(f"globex {r}", r, "globex") for r in TENANT_ROLES]
        for label, role, tenant in callers:
            token = people.token(tenant, role)
            reply = await api.call(method, path, token=token, json=_body(method))
            own = tenant is None or "{tenant}" not in template or tenant == "acme"
            if role in roles and own and (role == "operator") == (tenant is None):
                assert reply.status not in (401, 403), (label, method, template, reply.body)
                allowed += 1
            else:
                assert reply.status == 403, (label, method, template, reply.status)
                assert reply.body["type"] == "urn:sluis:problem:forbidden"
                refused += 1
    assert refused > 100 and allowed > 20


async def test_without_a_valid_token_every_route_is_401(world: Api) -> None:
    for method, template in admin_routes():
        for token in (None, "sluis_tok_not-a-real-token", ADMIN_TOKEN):
            reply = await world.call(method, concrete(template), token=token, json=_body(method))
            assert reply.status == 401, (method, template, token)


async def test_the_bootstrap_token_only_invites_the_first_operator(
    api: Api, services: Services
) -> None:
    for method, template in admin_routes():
        if (method, template) == ("POST", "/operators"):
            continue
        reply = await api.call(method, concrete(template), token=ADMIN_TOKEN, json=_body(method))
        assert reply.status == 403, (method, template)
    invite = {"email": "first@ops.example", "name": "First Operator", "role": "operator"}
    reply = await api.post("/admin/v1/operators", invite, token=ADMIN_TOKEN)
    assert reply.status == 201
    assert reply.body["invitation_url"].startswith("/console/invitations/sluis_inv_")
    assert reply.headers["Cache-Control"] == "no-store"
    admin = {"email": "a@acme.example", "name": "A", "role": "admin"}
    assert (await api.post("/admin/v1/operators", admin, token=ADMIN_TOKEN)).status == 422
