"""Admin API: authentication, tenant/connector/instruction/consumer lifecycle, and errors
that name fields without echoing values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.conftest import (
    ADMIN_TOKEN,
    CONNECTOR,
    Api,
    grant,
    make_connector,
    make_tenant,
)
from tests.principals import People

SECRET = CONNECTOR["credentials"]["token"]  # type: ignore[index]
BASE = "/admin/v1/tenants"


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", BASE),
        ("GET", f"{BASE}/acme"),
        ("GET", f"{BASE}/acme/connectors"),
        ("POST", f"{BASE}/acme/connectors/hr/syncs"),
        ("GET", f"{BASE}/acme/ledger"),
        ("DELETE", f"{BASE}/acme/connectors/hr/instructions/ins_x"),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token", ADMIN_TOKEN + "x", ""])
async def test_admin_needs_the_admin_token(api: Api, method: str, path: str, token: Any) -> None:
    reply = await api.call(method, path, token=token, json={"id": "acme", "name": "x"})
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert reply.body["type"] == "urn:sluis:problem:unauthorized"


async def test_admin_rejects_basic_auth_and_feed_tokens(api: Api) -> None:
    await make_tenant(api)
    token = (await api.post(f"{BASE}/acme/consumers", {"name": "lms"})).body["token"]
    assert (await api.get(f"{BASE}/acme", token=token)).status == 401
    reply = await api.call("GET", f"{BASE}/acme", token=None, headers={"Authorization": "Basic x"})
    assert reply.status == 401


# --------------------------------------------------------------------------- tenants


async def test_tenant_lifecycle(api: Api) -> None:
    reply = await api.post(BASE, {"id": "acme", "name": "Acme BV"})
    assert reply.status == 201
    assert reply.body["id"] == "acme" and reply.body["name"] == "Acme BV"
    assert reply.headers["Location"] == f"{BASE}/acme"
    got = await api.get(f"{BASE}/acme")
    assert got.status == 200 and got.body == reply.body
    again = await api.post(BASE, {"id": "acme", "name": "Other"})
    assert again.status == 409
    assert (await api.get(f"{BASE}/nope")).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "A", "name": "x"}, "id"),
        ({"id": "-acme", "name": "x"}, "id"),
        ({"id": "a" * 64, "name": "x"}, "id"),
        ({"id": "acme"}, "name"),
        ({"id": "acme", "name": "  "}, "name"),
        ({"id": "acme", "name": "bad\u202ename"}, "name"),
        ({"id": "acme", "name": "x", "extra": 1}, "extra"),
        (["acme"], "body"),
    ],
)
async def test_tenant_validation_names_the_field(api: Api, body: Any, field: str) -> None:
    reply = await api.post(BASE, body)
    assert reply.status == 422
    assert field in [e["field"] for e in reply.body["errors"]]


async def test_malformed_json_is_a_400_problem(api: Api) -> None:
    for raw in (b"{", b"not json", b"\xff\xfe"):
        reply = await api.call("POST", BASE, data=raw, headers={"Content-Type": "application/json"})
        assert reply.status == 400, raw
    assert (await api.call("POST", BASE, data=b"")).status == 400


async def test_oversized_body_is_a_413_problem(api: Api) -> None:
    reply = await api.post(BASE, {"id": "acme", "name": "x" * 400_000})
    assert reply.status == 413


async def test_validation_errors_do_not_echo_values(api: Api) -> None:
    bsn = "123456782"
    reply = await api.post(BASE, {"id": bsn + "@Private.example", "name": {"v": bsn}})
    assert reply.status == 422
    assert bsn not in reply.text


# --------------------------------------------------------------------------- connectors


async def test_connector_shows_what_will_pass_and_never_credentials(api: Api) -> None:
    await make_tenant(api)
    created = await make_connector(api, settings={"page_size": 50})
    assert created["mapping"]["fields"] == {
        "first_name": "user.name.first",
        "last_name": "user.name.last",
        "email": "user.contact.email",
        "job_title": "user.job_title",
    }
    assert created["mapping"]["digest"].startswith("sha256:")
    assert "Email_werk" in created["mapping"]["source_fields"]
    assert "BSN" not in created["mapping"]["source_fields"]
    assert created["settings"]["page_size"] == 50
    assert created["settings"]["connector_id"] == "Sluis_Medewerkers"
    replies = [
        await api.get(f"{BASE}/acme/connectors/hr"),
        await api.get(f"{BASE}/acme/connectors"),
    ]
    assert replies[0].body == created
    assert replies[1].body == {"connectors": [created]}
    for reply in replies:
        assert "credentials" not in reply.text and SECRET not in reply.text
    assert "credentials" not in str(created) and SECRET not in str(created)


async def test_connector_errors(api: Api) -> None:
    # No principal may act on a tenant that is not its own; one that does not exist is no
    # tenant of anyone's (an operator may not configure tenants' connectors at all).
    assert (await api.post(f"{BASE}/nope/connectors", CONNECTOR)).status == 403
    await make_tenant(api)
    await make_connector(api)
    assert (await api.post(f"{BASE}/acme/connectors", CONNECTOR)).status == 409
    assert (await api.get(f"{BASE}/acme/connectors/nope")).status == 404
    assert (await api.get(f"{BASE}/nope/connectors")).status == 403
    await make_tenant(api, "other")
    assert (await api.get(f"{BASE}/other/connectors/hr")).status == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "sap"}, "type"),
        ({"base_url": "ftp://127.0.0.1/x"}, "base_url"),
        ({"base_url": "file:///etc/passwd"}, "base_url"),
        ({"base_url": "http://user:pw@127.0.0.1/"}, "base_url"),
        ({"base_url": "127.0.0.1:8080"}, "base_url"),
        ({"credentials": {}}, "credentials.token"),
        ({"credentials": {"token": ""}}, "credentials.token"),
        ({"mapping": "nope"}, "mapping"),
        ({"mapping": "../afas"}, "mapping"),
        ({"mapping": "hubspot"}, "mapping"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"max_delete_share": 2}, "max_delete_share"),
        ({"id": "Bad Id"}, "id"),
        ({"password": "x"}, "password"),
    ],
)
async def test_connector_validation_names_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    await make_tenant(api)
    reply = await api.post(f"{BASE}/acme/connectors", {**CONNECTOR, **change})
    assert reply.status == 422, reply.body
    assert field in [e["field"] for e in reply.body["errors"]], reply.body
    assert SECRET not in reply.text


async def test_bad_mapping_names_line_and_field(api: Api) -> None:
    await make_tenant(api)
    toml = (
        'connector = "afas"\n'
        "[identity]\n"
        'fields = ["Medewerker"]\n'
        'namespace = "afas.employee"\n'
        "[fields.email]\n"
        'source = "Email_werk"\n'
        'category = "user.contact.phone"\n'
    )
    reply = await api.post(f"{BASE}/acme/connectors", {**CONNECTOR, "mapping": {"toml": toml}})
    assert reply.status == 422, reply.body
    (error,) = reply.body["errors"]
    assert error["field"] == "mapping"
    assert error["line"] == 7
    assert error["mapping_field"] == "fields.email.category"
    assert "line 7" in error["message"] and "fields.email.category" in error["message"]


async def test_bad_toml_names_the_line(api: Api) -> None:
    await make_tenant(api)
    mapping = {"toml": 'connector = "afas"\n[identity\n'}
    reply = await api.post(f"{BASE}/acme/connectors", {**CONNECTOR, "mapping": mapping})
    assert reply.status == 422
    assert reply.body["errors"][0]["line"] == 2


async def test_inline_mapping_is_accepted(api: Api) -> None:
    await make_tenant(api)
    toml = (
        'connector = "afas"\n[identity]\nfields = ["Medewerker"]\nnamespace = "afas.employee"\n'
        '[fields.email]\nsource = "Email_werk"\ncategory = "user.contact.email"\n'
    )
    created = await make_connector(api, mapping={"toml": toml})
    assert created["mapping"]["fields"] == {"email": "user.contact.email"}
    assert created["mapping"]["source_fields"] == ["Email_werk", "Medewerker"]


# --------------------------------------------------------------------------- instructions


async def test_instruction_lifecycle(api: Api, people: People) -> None:
    await make_tenant(api)
    connector = await make_connector(api)
    path = f"{BASE}/acme/connectors/hr/instructions"
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    reply = await api.post(path, {"purpose": "LMS accounts", "valid_until": until})
    assert reply.status == 201
    ins = reply.body
    assert ins["state"] == "active"
    assert ins["mapping_digest"] == connector["mapping"]["digest"]
    assert ins["fields"] == connector["mapping"]["fields"]
    admin = people.account("acme", "admin")
    assert ins["granted_by"] == admin and ins["valid_until"] is not None
    assert reply.headers["Location"] == f"{path}/{ins['id']}"
    listed = await api.get(path)
    assert listed.body == {"instructions": [ins]}
    revoked = await api.delete(f"{path}/{ins['id']}")
    assert revoked.status == 200
    assert revoked.body["state"] == "revoked" and revoked.body["revoked_by"] == admin
    again = await api.delete(f"{path}/{ins['id']}")
    assert again.status == 200 and again.body["revoked_at"] == revoked.body["revoked_at"]
    assert (await api.get(path)).body["instructions"][0]["state"] == "revoked"


async def test_instruction_errors(api: Api) -> None:
    await make_tenant(api)
    path = f"{BASE}/acme/connectors/hr/instructions"
    body = {"purpose": "p"}
    assert (await api.post(path, body)).status == 404
    assert (await api.get(path)).status == 404
    await make_connector(api)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for bad, field in [
        ({**body, "valid_until": past}, "valid_until"),
        ({**body, "valid_until": "2030-01-01T00:00:00"}, "valid_until"),
        ({**body, "valid_until": "tomorrow"}, "valid_until"),
        ({**body, "granted_by": "a@acme.nl"}, "granted_by"),
        ({**body, "fields": ["email"]}, "fields"),
        ({"purpose": "for jan@acme.nl"}, "purpose"),
        ({"purpose": "employee 123456789"}, "purpose"),
    ]:
        reply = await api.post(path, bad)
        assert reply.status == 422, bad
        assert field in [e["field"] for e in reply.body["errors"]]
    assert (await api.delete(f"{path}/ins_unknown")).status == 404
    assert (await api.delete(f"{path}/x", params={"other": "1"})).status == 422
    assert (await api.call("DELETE", f"{path}/x", json={"revoked_by": "a"})).status == 422


async def test_instruction_of_another_tenant_is_not_found(api: Api) -> None:
    for tenant in ("acme", "globex"):
        await make_tenant(api, tenant)
        await make_connector(api, tenant)
    ins = await grant(api, "acme")
    reply = await api.delete(f"{BASE}/globex/connectors/hr/instructions/{ins['id']}")
    assert reply.status == 404
    listed = await api.get(f"{BASE}/acme/connectors/hr/instructions")
    assert listed.body["instructions"][0]["state"] == "active"


# --------------------------------------------------------------------------- consumers


async def test_consumer_token_is_shown_once(api: Api) -> None:
    await make_tenant(api)
    reply = await api.post(f"{BASE}/acme/consumers", {"name": "lms"})
    assert reply.status == 201
    assert reply.body["token"].startswith("sluis_feed_")
    assert reply.body["id"].startswith("con_") and reply.body["tenant"] == "acme"
    assert reply.headers["Cache-Control"] == "no-store"
    assert (await api.post(f"{BASE}/nope/consumers", {"name": "lms"})).status == 403
    assert (await api.post(f"{BASE}/acme/consumers", {"name": ""})).status == 422
