"""Authorisations the customer signs: who granted, changed and revoked, in the ledger.

Every admin action through the API is an audit entry in the tenant's ledger naming the
principal by opaque account id and role; guarded actions carry the step-up time, and are
refused without a fresh second factor.
"""

from __future__ import annotations

from typing import Any

from gateway.api.auth import STEP_UP
from gateway.ledger.kinds import parse_entry
from gateway.runtime.services import Services
from tests.api.conftest import Api, make_connector, make_tenant
from tests.principals import TOTP_SECRET, People, code

C = "/admin/v1/tenants/acme/connectors/hr"


def audit_entries(services: Services, tenant: str = "acme") -> list[dict[str, Any]]:
    out = []
    for _, body, _ in services.store.ledger.iter_entries(tenant):
        entry = parse_entry(body)
        if hasattr(entry, "action"):
            out.append(entry.model_dump(mode="json"))
    return out


async def test_every_admin_action_names_who_did_it(
    api: Api, services: Services, people: People
) -> None:
    await make_tenant(api)
    await make_connector(api)
    admin = people.account("acme", "admin")
    operator = people.account(None, "operator")
    await api.post(f"{C}/instructions", {"purpose": "LMS accounts"})
    await api.patch(C, {"interval_seconds": 600})
    await api.patch(C, {"credentials": {"token": "new-secret-value-123"}})
    await api.patch(C, {"paused": True})
    await api.patch(C, {"paused": False})
    consumer = (await api.post("/admin/v1/tenants/acme/consumers", {"name": "lms"})).body
    await api.post(f"/admin/v1/tenants/acme/consumers/{consumer['id']}/token")
    await api.delete(f"/admin/v1/tenants/acme/consumers/{consumer['id']}")
    granted = (await api.get(f"{C}/instructions")).body["instructions"][0]
    await api.delete(f"{C}/instructions/{granted['id']}")
    await api.delete(C, params={"subjects": "keep"})
    trail = [(e["action"], e["actor"], e["role"]) for e in audit_entries(services)]
    # Setting up this test's people adds their enrolment (by the system) and API token.
    mine = [t for t in trail if t[1] != "system" and t[0] != "token.created"]
    assert mine == [
        ("tenant.created", operator, "operator"),
        ("connector.created", admin, "admin"),
        ("authorisation.granted", admin, "admin"),
        ("connector.changed", admin, "admin"),
        ("connector.changed", admin, "admin"),
        ("connector.paused", admin, "admin"),
        ("connector.resumed", admin, "admin"),
        ("consumer.created", admin, "admin"),
        ("consumer.token_rotated", admin, "admin"),
        ("consumer.revoked", admin, "admin"),
        ("authorisation.revoked", admin, "admin"),
        ("connector.deleted", admin, "admin"),
    ]
    entries = audit_entries(services)
    grant = next(e for e in entries if e["action"] == "authorisation.granted")
    assert grant["target"] == granted["id"] and grant["purpose"] == "LMS accounts"
    assert grant["mapping_digest"] == granted["mapping_digest"]
    assert grant["fields"] == granted["fields"] and grant["step_up_at"] is not None
    changed = [e["changed"] for e in entries if e["action"] == "connector.changed"]
    assert changed == [["interval_seconds"], ["credentials"]]
    raw = b"".join(body for _, body, _ in services.store.ledger.iter_entries("acme"))
    assert b"new-secret-value" not in raw and b"@" not in raw


async def test_guarded_actions_need_a_fresh_code(api: Api, people: People) -> None:
    await make_tenant(api)
    await make_connector(api)
    token = people.token("acme", "admin", step_up=False)
    people.services.store.accounts.set_token_step_up(
        people._make("acme", "admin")[1],
        people.services.clock().replace(year=2020),
    )
    grant = await api.post(f"{C}/instructions", {"purpose": "LMS"}, token=token)
    assert grant.status == 403 and grant.body["type"] == "urn:sluis:problem:step-up-required"
    creds = await api.patch(C, {"credentials": {"token": "abcdefghijkl"}}, token=token)
    assert creds.status == 403
    assert (await api.patch(C, {"interval_seconds": 900}, token=token)).status == 200
    bad = await api.post("/admin/v1/step-up", {"code": "000000"}, token=token)
    assert bad.status == 422 and bad.body["type"] == "urn:sluis:problem:bad-code"
    fresh = code(TOTP_SECRET)
    ok = await api.post("/admin/v1/step-up", {"code": fresh}, token=token)
    assert ok.status == 200 and ok.body["valid_seconds"] == 300
    again = await api.post("/admin/v1/step-up", {"code": fresh}, token=token)
    assert again.status == 422  # a code works once
    assert (await api.post(f"{C}/instructions", {"purpose": "LMS"}, token=token)).status == 201
    assert {m for m, _ in STEP_UP} <= {"POST", "PUT", "DELETE"}
