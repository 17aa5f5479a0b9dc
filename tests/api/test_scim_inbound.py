"""The inbound SCIM endpoint with the request bodies Entra ID and Okta send, literally:
what is kept, what is dropped, the feed and the ledger after each, and the refusals."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, make_consumer, read_feed
from tests.api.scim_helpers import PATCH, USER, scim_source

# Entra ID's create request (its documented example, with the enterprise extension).
ENTRA_CREATE: dict[str, Any] = {
    "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
    "active": True,
    "emails": [{"primary": True, "type": "work",
                "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "givenName familyName", "familyName": "familyName",
             "givenName": "givenName"},
    "title": "Trainer",
    "phoneNumbers": [{"type": "mobile", "value": "+31 6 12345678"}],
    "addresses": [{"type": "work", "streetAddress": "Damrak 1", "locality": "Amsterdam"}],
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
        "employeeNumber": "E-701984", "costCenter": "CostCentre-4130", "department": "HR",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"},
    },
}  # fmt: skip
# Okta's create request (its documented example).
OKTA_CREATE: dict[str, Any] = {
    "schemas": [USER],
    "userName": "test.user@okta.local",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#: Values the gateway must drop: long and distinctive enough not to turn up by chance in a
#: time's microseconds or a hex id (a bare "4130" once did).
SENSITIVE = ("12345678", "Damrak", "E-701984", "CostCentre-4130", "26118915", "1mz050nq",
             "0a21f0f2", "00ujl29u0le5T6Aj10h7", "Test_User_ab6490ee")  # fmt: skip


def _leaks(api: Api) -> list[str]:
    text = "\n".join(api.transcript)
    return [v for v in SENSITIVE if v in text]


async def test_entra_id_create_patch_and_soft_delete(api: Api) -> None:
    scim = await scim_source(api)
    feed = await make_consumer(api)
    status, user = await scim.call("POST", "/Users", ENTRA_CREATE)
    assert status == 201, user
    uid = user["id"]
    assert user["name"] == {"givenName": "givenName", "familyName": "familyName"}
    assert user["emails"][0]["value"].startswith("test_user_fd0ea19b")
    assert user["title"] == "Trainer" and user["active"] is True
    assert "userName" not in user and "phoneNumbers" not in user and "externalId" not in user
    # Entra ID matches by userName first.
    wanted = ENTRA_CREATE["userName"]
    status, found = await scim.call("GET", "/Users", params={"filter": f'userName eq "{wanted}"'})
    assert status == 200 and found["totalResults"] == 1 and found["Resources"][0]["id"] == uid
    status, none = await scim.call("GET", "/Users", params={"filter": 'userName eq "x@y.z"'})
    assert none["totalResults"] == 0
    # Entra ID's PATCH habits: capitalised ops, a filtered email path, a path-less replace
    # with dotted keys, "False" as text.
    status, user = await scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.com"},
        {"op": "Replace", "value": {"name.givenName": "Anna", "name.familyName": "Jansen"}},
        {"op": "Add", "path": "title", "value": "Senior trainer"},
        {"op": "Replace", "path": ENTERPRISE + ":employeeNumber", "value": "999"},
    ]})  # fmt: skip
    assert status == 200, user
    assert user["name"] == {"givenName": "Anna", "familyName": "Jansen"}
    assert user["emails"][0]["value"] == "new@contoso.com"
    assert user["title"] == "Senior trainer"
    status, user = await scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]})  # fmt: skip
    assert status == 200 and user["active"] is False
    status, user = await scim.call("GET", f"/Users/{uid}")
    assert status == 200 and user["active"] is False
    events = await read_feed(api, feed)
    kinds = [e["type"] for e in events]
    assert kinds == ["subject.upserted", "subject.upserted", "subject.deleted"]
    assert events[1]["data"] == {
        "first_name": "Anna", "last_name": "Jansen", "email": "new@contoso.com",
        "job_title": "Senior trainer",
    }  # fmt: skip
    assert all(e["subject_id"] == uid for e in events)
    ledger = await api.get("/admin/v1/tenants/acme/ledger", params={"limit": 1000})
    inbound = [e for e in ledger.body["entries"] if e["entry"].get("direction") == "inbound"]
    assert len(inbound) == 3
    assert inbound[0]["entry"]["counts"]["dropped_fields"] > 0
    assert not _leaks(api)


async def test_okta_put_replace_and_delete(api: Api) -> None:
    scim = await scim_source(api, connector="okta")
    feed = await make_consumer(api)
    status, user = await scim.call("POST", "/Users", OKTA_CREATE)
    assert status == 201
    uid = user["id"]
    shouting = {**OKTA_CREATE, "userName": "TEST.User@okta.local"}
    again, dup = await scim.call("POST", "/Users", shouting)
    assert again == 409 and dup["scimType"] == "uniqueness"
    replaced = {**OKTA_CREATE, "id": uid, "name": {"givenName": "Tess", "familyName": "User"}}
    status, user = await scim.call("PUT", f"/Users/{uid}", replaced)
    assert status == 200 and user["name"]["givenName"] == "Tess"
    # Okta deactivates with a PATCH of active.
    status, user = await scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "value": {"active": False}}]})  # fmt: skip
    assert status == 200 and user["active"] is False
    status, user = await scim.call("PATCH", f"/Users/{uid}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "value": {"active": True}}]})  # fmt: skip
    assert status == 200 and user["active"] is True
    status, _ = await scim.call("DELETE", f"/Users/{uid}")
    assert status == 204
    status, _ = await scim.call("GET", f"/Users/{uid}")
    assert status == 404
    types = [e["type"] for e in await read_feed(api, feed)]
    assert types == ["subject.upserted", "subject.upserted", "subject.deleted",
                     "subject.upserted", "subject.deleted"]  # fmt: skip
    # Created again after the delete: the same keyed id comes back.
    status, user = await scim.call("POST", "/Users", OKTA_CREATE)
    assert status == 201 and user["id"] == uid
    assert not _leaks(api)


async def test_without_an_authorisation_the_provider_gets_a_scim_403(api: Api) -> None:
    scim = await scim_source(api, authorise=False)
    status, error = await scim.call("POST", "/Users", OKTA_CREATE)
    assert status == 403 and "not authorised" in error["detail"]
    assert "no instruction" in error["detail"]
    ledger = await api.get("/admin/v1/tenants/acme/ledger", params={"limit": 1000})
    kinds = [e["entry"].get("direction") for e in ledger.body["entries"]]
    assert "refused" in kinds and "inbound" not in kinds
    # Revocation: nothing more is accepted.
    granted = await api.post("/admin/v1/tenants/acme/connectors/entra/instructions",
                             {"purpose": "training records"})  # fmt: skip
    assert (await scim.call("POST", "/Users", OKTA_CREATE))[0] == 201
    await api.delete(f"/admin/v1/tenants/acme/connectors/entra/instructions/{granted.body['id']}")
    status, error = await scim.call("POST", "/Users", {**OKTA_CREATE, "userName": "b@okta.local"})
    assert status == 403 and "revoked" in error["detail"]


async def test_tokens_bodies_and_errors_are_scim_errors(api: Api) -> None:
    scim = await scim_source(api)
    old = scim.token
    issued = await api.post("/admin/v1/tenants/acme/connectors/entra/scim-token", None)
    scim.token = issued.body["token"]
    assert (await scim.call("GET", "/Users"))[0] == 200
    scim.token = old
    status, _ = await scim.call("GET", "/Users")
    assert status == 401
    scim.token = issued.body["token"]
    assert (await scim.call("POST", "/Users", {"userName": "x"}))[0] == 400
    status, err = await scim.call("POST", "/Users", {**OKTA_CREATE, "emails": []})
    assert status == 400 and "email is required" in err["detail"]
    status, err = await scim.call("POST", "/Users", {**OKTA_CREATE, "title": "BSN 111222333"})
    assert status == 400 and err["scimType"] == "invalidValue"
    assert (await scim.call("POST", "/Users", {**OKTA_CREATE, "x": "a" * 70_000}))[0] == 413
    assert (await scim.call("GET", "/Groups"))[0] == 404
    assert (await scim.call("GET", "/Users", params={"filter": 'title co "x"'}))[0] == 400
    assert (await scim.call("GET", "/Users/" + "0" * 32))[0] == 404
    bad = {"schemas": [PATCH], "Operations": [{"op": "move", "path": "title"}]}
    assert (await scim.call("PATCH", "/Users/" + "0" * 32, bad))[0] == 404
    # Not a SCIM connector: no token.
    await api.post("/admin/v1/tenants/acme/connectors", {
        "id": "hr", "type": "afas", "base_url": "http://127.0.0.1:9/x",
        "credentials": {"token": "secret-token-value-xyz"}, "mapping": "afas"})  # fmt: skip
    refused = await api.post("/admin/v1/tenants/acme/connectors/hr/scim-token", None)
    assert refused.status == 409
    # A SCIM connector is not synced.
    sync = await api.post("/admin/v1/tenants/acme/connectors/entra/syncs", None)
    assert sync.status == 409 and sync.body["type"].endswith("connector-pushed")


async def test_discovery_and_paging(api: Api) -> None:
    scim = await scim_source(api)
    status, config = await scim.call("GET", "/ServiceProviderConfig")
    assert status == 200 and config["patch"]["supported"] is True
    status, schemas = await scim.call("GET", "/Schemas")
    names = {a["name"] for a in schemas["Resources"][0]["attributes"]}
    assert names == {"userName", "name", "title", "active", "emails"}
    status, types = await scim.call("GET", "/ResourceTypes")
    assert [t["name"] for t in types["Resources"]] == ["User"]
    for n in range(5):
        body = {**OKTA_CREATE, "userName": f"u{n}@okta.local",
                "emails": [{"value": f"u{n}@okta.local", "primary": True}]}  # fmt: skip
        assert (await scim.call("POST", "/Users", body))[0] == 201
    status, page = await scim.call("GET", "/Users", params={"startIndex": "2", "count": "2"})
    assert page["totalResults"] == 5 and page["itemsPerPage"] == 2 and page["startIndex"] == 2


async def test_search_requests_in_a_body_are_the_users_search(api: Api) -> None:
    scim = await scim_source(api)
    for n in range(3):
        body = {**OKTA_CREATE, "userName": f"s{n}@okta.local",
                "emails": [{"value": f"s{n}@okta.local", "primary": True}]}  # fmt: skip
        assert (await scim.call("POST", "/Users", body))[0] == 201
    search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
    for path in ("/.search", "/Users/.search"):
        status, page = await scim.call(
            "POST", path,
            {"schemas": [search], "filter": 'userName eq "s1@okta.local"',
             "attributes": ["name"]},
        )  # fmt: skip
        assert status == 200, page
        assert page["totalResults"] == 1
        (user,) = page["Resources"]
        assert set(user) == {"schemas", "id", "meta", "name"}
        status, page = await scim.call(
            "POST", path, {"schemas": [search], "startIndex": 2, "count": 1}
        )
        assert status == 200 and page["totalResults"] == 3 and page["itemsPerPage"] == 1
    for bad in ({"filter": "x"}, {"schemas": [search], "count": "2"},
                {"schemas": [search], "filter": 7}, {"schemas": [search], "attributes": "name"},
                {"schemas": [search], "filter": "userName sw \"s\""}):  # fmt: skip
        status, error = await scim.call("POST", "/.search", bad)
        assert status == 400, bad
        assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_a_pushed_connector_has_no_credentials_to_change(api: Api) -> None:
    await scim_source(api, authorise=False)
    for credentials in ({"api_key": "x"}, {}):
        refused = await api.patch(
            "/admin/v1/tenants/acme/connectors/entra", {"credentials": credentials}
        )
        assert refused.status == 422, refused.body
        assert refused.body["errors"][0]["field"] == "credentials"


async def test_a_pushed_write_leaves_no_seen_log(api: Api) -> None:
    """A SCIM write commits as a throwaway run that never sweeps for leavers: the people
    it finds unchanged are not marked seen, so no keyed ids pile up in `run_seen`."""
    scim = await scim_source(api, connector="okta")
    status, user = await scim.call("POST", "/Users", OKTA_CREATE)
    assert status == 201
    for _ in range(2):  # the same user again: unchanged
        status, _user = await scim.call(
            "PUT", f"/Users/{user['id']}", {**OKTA_CREATE, "id": user["id"]}
        )
        assert status == 200
    assert api.people is not None
    store: Any = api.people.services.store
    assert store.count_present("acme", "okta") == 1
    assert store.database.all("SELECT count(*) FROM run_seen")[0][0] == 0
