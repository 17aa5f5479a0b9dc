"""Every console route against every principal: the route list comes from the console app
itself, so a new page without a rule here fails, and each route refuses (403, nothing done)
every role that lacks its capability and every principal of another tenant."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.accounts.policy import GRANTS, Capability
from gateway.console.app import make_console_app
from gateway.runtime.services import Services
from tests.console.conftest import Console, Person, World
from tests.console.test_pages import make_connector

PUBLIC = "public"
#: (method, route template) -> the capability it needs (tenant routes on tenant `acme`).
RULES: dict[tuple[str, str], Capability | str] = {
    ("GET", "/"): PUBLIC,  # redirects to each principal's own start page
    ("GET", "/sign-in"): PUBLIC,
    ("POST", "/sign-in"): PUBLIC,
    ("POST", "/sign-out"): "self",
    ("GET", "/lang"): PUBLIC,
    ("GET", "/oidc"): PUBLIC,
    ("GET", "/oidc/callback"): PUBLIC,
    ("GET", "/connect/callback"): PUBLIC,  # the sealed state cookie is what it takes
    ("GET", "/invitations/{token}"): PUBLIC,
    ("POST", "/invitations/{token}"): PUBLIC,
    ("GET", "/t/{tenant}"): "tenant.read",
    ("GET", "/t/{tenant}/new-connector"): "tenant.configure",
    ("POST", "/t/{tenant}/new-connector"): "tenant.configure",
    ("GET", "/t/{tenant}/connectors/{connector}"): "tenant.read",
    ("POST", "/t/{tenant}/connectors/{connector}"): "tenant.configure",
    ("POST", "/t/{tenant}/connectors/{connector}/authorise"): "tenant.authorise",
    ("POST", "/t/{tenant}/connectors/{connector}/instructions/{instruction}/revoke"): (
        "tenant.authorise"
    ),
    ("POST", "/t/{tenant}/connectors/{connector}/sync"): "tenant.configure",
    ("POST", "/t/{tenant}/connectors/{connector}/connect"): "tenant.configure",
    ("POST", "/t/{tenant}/connectors/{connector}/live-preview"): "tenant.authorise",
    ("GET", "/t/{tenant}/connectors/{connector}/runs"): "tenant.read",
    ("GET", "/t/{tenant}/connectors/{connector}/runs/{run}"): "tenant.read",
    ("GET", "/t/{tenant}/authorisations"): "tenant.audit",
    ("GET", "/t/{tenant}/consumers"): "tenant.read",
    ("POST", "/t/{tenant}/consumers"): "tenant.configure",
    ("POST", "/t/{tenant}/consumers/{consumer}/revoke"): "tenant.configure",
    ("GET", "/t/{tenant}/ledger"): "tenant.audit",
    ("GET", "/t/{tenant}/ledger/export"): "tenant.audit",
    ("GET", "/t/{tenant}/ledger/public-key"): "tenant.audit",
    ("GET", "/t/{tenant}/ledger/checkpoint"): "tenant.audit",
    ("GET", "/t/{tenant}/accounts"): "tenant.accounts",
    ("POST", "/t/{tenant}/accounts"): "tenant.accounts",
    ("POST", "/t/{tenant}/accounts/{account}/disable"): "tenant.accounts",
    ("POST", "/t/{tenant}/identity-provider"): "tenant.accounts",
    ("POST", "/t/{tenant}/identity-provider/remove"): "tenant.accounts",
    ("GET", "/tokens"): "self",
    ("POST", "/tokens"): "self",
    ("POST", "/tokens/{token}/revoke"): "self",
    ("GET", "/operator/tenants"): "gateway.operate",
    ("POST", "/operator/tenants"): "gateway.operate",
    ("GET", "/operator/tenants/{tenant}"): "gateway.operate",
    ("POST", "/operator/tenants/{tenant}/invitations"): "gateway.operate",
}
VALUES = {
    "tenant": "acme",
    "connector": "hr",
    "token": "sluis_inv_unknown",
    "instruction": "ins_unknown",
    "run": "run_unknown",
    "consumer": "con_unknown",
    "account": "acc_0000000000000009",
}


def console_routes(services: Services) -> set[tuple[str, str]]:
    found = set()
    for route in make_console_app(services).router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("formatter") or info.get("path")
        if template is None or route.method == "HEAD":
            continue  # the static files
        found.add((route.method, template))
    return found


def test_every_console_route_has_a_rule(services: Services) -> None:
    assert console_routes(services) == set(RULES)


def may(person: Person, capability: str) -> bool:
    if capability == PUBLIC:
        return True
    if person.role not in GRANTS[capability]:  # type: ignore[index]
        return False
    return not capability.startswith("tenant.") or person.tenant == "acme"


async def signed_in_as(console: Console, person: Person) -> tuple[str, str]:
    console.client.session.cookie_jar.clear()
    page = await console.sign_in(person)
    jar = console.client.session.cookie_jar.filter_cookies(console.client.make_url("/"))
    value = jar["sluis_session"].value
    console.client.session.cookie_jar.clear()
    found = re.search(r'name="csrf" value="([^"]+)"', page.html)
    assert found
    return value, found.group(1)


@pytest.mark.slow
async def test_every_route_refuses_every_wrong_role_and_tenant(
    console: Console, world: World, services: Services
) -> None:
    await console.sign_in(world.admin)
    await make_connector(console, world)
    people = {
        "operator": world.operator,
        "admin": world.admin,
        "auditor": world.auditor,
        "viewer": world.viewer,
        "globex admin": world.other_admin,
    }
    sessions = {who: await signed_in_as(console, p) for who, p in people.items()}
    connectors_before = len(services.store.list_connectors("acme"))
    checked = 0
    for (method, template), capability in sorted(RULES.items()):
        if capability in (PUBLIC, "self"):
            continue
        path = "/console" + template.format(**VALUES)
        for who, person in people.items():
            value, csrf = sessions[who]
            kwargs: dict[str, Any] = {
                "headers": {"Cookie": f"sluis_session={value}"},
                "allow_redirects": False,
            }
            if method == "POST":
                kwargs["data"] = {"csrf": csrf, "id": "x", "name": "x", "purpose": "x"}
            resp = await console.client.request(method, path, **kwargs)
            console.client.session.cookie_jar.clear()
            if may(person, capability):
                assert resp.status != 403, (who, method, template)
            else:
                assert resp.status == 403, (who, method, template, resp.status)
                assert "does not allow it" in await resp.text()
            checked += 1
    assert checked > 100
    assert len(services.store.list_connectors("acme")) == connectors_before
