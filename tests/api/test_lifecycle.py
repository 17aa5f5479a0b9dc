"""Connector and consumer lifecycle through the admin API: change the mapping (with its
difference shown and a new authorisation needed), rotate credentials, change settings, pause
and resume, delete (with an explicit choice for the subjects already delivered), list
tenants, and list, revoke and re-key feed consumers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from connectors.emulator_kit import CONTROL, Fault
from gateway.runtime.services import Services
from gateway.sync.scheduler import Scheduler
from gateway.tenancy import connector_credentials
from tests.api.conftest import CONNECTOR, Api, grant, make_connector, make_consumer, make_tenant
from tests.api.test_syncs import afas_connector, wait_for_run

afas_emulator = pytest.importorskip("connectors.afas.emulator")

T = "/admin/v1/tenants/acme"
C = T + "/connectors/hr"
FEED = "/feed/v1/tenants/acme/events"

#: The bundled AFAS mapping without job_title, with email from another column, and one new
#: source field read by the leaver rule.
NARROWER = """connector = "afas"
[identity]
fields = ["Medewerker"]
namespace = "afas.employee"

[fields.first_name]
source = ["Roepnaam", "Voornaam"]
category = "user.name.first"

[fields.last_name]
join = ["Voorvoegsel", "Achternaam"]
category = "user.name.last"

[fields.email]
source = ["Email_werk", "Email_alt"]
category = "user.contact.email"
required = true

[[leaver]]
field = "Datum_uit_dienst"
when = "date_past"
"""


async def drain(api: Api, token: str, after: str | None = None) -> tuple[list[Any], str | None]:
    events: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"after": after} if after else {})}
        reply = await api.get(FEED, token=token, params=params)
        assert reply.status == 200, reply.body
        events += reply.body["events"]
        if not reply.body["events"] and reply.body["next_cursor"] == after:
            return events, after
        after = reply.body["next_cursor"]


def apply(state: dict[str, Any], events: list[dict[str, Any]], source: str) -> None:
    """What a platform does: upsert replaces, delete removes, keyed by subject id."""
    for e in events:
        if e["source"] != source:
            continue
        if e["type"] == "subject.upserted":
            state[e["subject_id"]] = e["data"]
        else:
            state.pop(e["subject_id"], None)


async def full_sync(api: Api, path: str = C, **body: Any) -> dict[str, Any]:
    started = await api.post(f"{path}/syncs", {"mode": "full", **body})
    assert started.status == 202, started.body
    return await wait_for_run(api, started.headers["Location"])


# --------------------------------------------------------------------------- tenants


async def test_list_tenants(api: Api) -> None:
    assert (await api.get("/admin/v1/tenants")).body == {"tenants": []}
    await make_tenant(api, "globex")
    await make_tenant(api, "acme")
    listed = (await api.get("/admin/v1/tenants")).body["tenants"]
    assert [t["id"] for t in listed] == ["acme", "globex"]
    assert "sealed_key" not in str(listed)


# --------------------------------------------------------------------------- mapping


async def test_new_mapping_shows_the_difference_and_needs_a_new_authorisation(api: Api) -> None:
    await make_tenant(api)
    created = await make_connector(api)
    old = await grant(api)
    preview = await api.post(f"{C}/mapping-preview", {"mapping": {"toml": NARROWER}})
    assert preview.status == 200, preview.body
    diff = preview.body
    assert diff["before_digest"] == created["mapping"]["digest"] != diff["after_digest"]
    assert diff["removed"] == {"job_title": {"category": "user.job_title", "sources": ["Functie"]}}
    assert diff["added"] == {}
    assert diff["changed"] == {
        "email": {
            "before": {"category": "user.contact.email", "sources": ["Email_werk"]},
            "after": {"category": "user.contact.email", "sources": ["Email_werk", "Email_alt"]},
        }
    }
    assert diff["source_fields_added"] == ["Email_alt"]
    assert diff["source_fields_removed"] == ["Functie"]
    assert diff["identity_changed"] is False and diff["needs_authorisation"] is True
    # A preview changes nothing.
    assert (await api.get(C)).body["mapping"]["digest"] == created["mapping"]["digest"]
    assert (await api.post(f"{C}/syncs")).status == 202

    for _ in range(200):  # let the background run (to an unreachable source) end
        if (await api.get(f"{C}/syncs")).body["runs"][0]["status"] != "running":
            break
        await asyncio.sleep(0.02)
    changed = await api.patch(C, {"mapping": {"toml": NARROWER}})
    assert changed.status == 200, changed.body
    assert changed.body["mapping_change"] == diff
    assert changed.body["connector"]["mapping"]["digest"] == diff["after_digest"]
    assert changed.body["connector"]["mapping"]["fields"] == {
        "first_name": "user.name.first",
        "last_name": "user.name.last",
        "email": "user.contact.email",
    }
    refused = await api.post(f"{C}/syncs")
    assert refused.status == 409 and refused.body["code"] == "mapping_changed"
    assert old["id"] in refused.body["detail"] and diff["after_digest"] in refused.body["detail"]
    new = await grant(api)
    assert new["mapping_digest"] == diff["after_digest"] and "job_title" not in new["fields"]
    assert (await api.post(f"{C}/syncs")).status == 202
    # Going back to the bundled mapping is again a change, shown the other way round.
    back = await api.post(f"{C}/mapping-preview", {"mapping": "afas"})
    assert back.body["added"] == {"job_title": diff["removed"]["job_title"]}


async def test_identity_change_is_flagged(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    other = NARROWER.replace('"afas.employee"', '"afas.employee.v2"')
    diff = (await api.post(f"{C}/mapping-preview", {"mapping": {"toml": other}})).body
    assert diff["identity_changed"] is True
    same = (await api.post(f"{C}/mapping-preview", {"mapping": "afas"})).body
    assert same["same"] is True and same["needs_authorisation"] is False
    assert same["added"] == same["removed"] == same["changed"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"mapping": "hubspot"}, "mapping"),
        ({"mapping": "nope"}, "mapping"),
        ({"mapping": {"toml": "connector = "}}, "mapping"),
        ({"credentials": {}}, "credentials.token"),
        ({"credentials": {"token": ""}}, "credentials.token"),
        ({"interval_seconds": 10}, "interval_seconds"),
        ({"max_delete_share": 1.5}, "max_delete_share"),
        ({"paused": "yes please"}, "paused"),
        ({"base_url": "http://example.com"}, "base_url"),
    ],
)
async def test_bad_changes_are_field_problems(api: Api, body: Any, field: str) -> None:
    await make_tenant(api)
    before = await make_connector(api)
    reply = await api.patch(C, body)
    assert reply.status == 422, reply.body
    assert field in {e["field"] for e in reply.body["errors"]}, reply.body
    assert (await api.get(C)).body == before


async def test_changes_to_unknown_connectors_are_404(api: Api) -> None:
    await make_tenant(api)
    assert (await api.patch(C, {"interval_seconds": 600})).status == 404
    assert (await api.post(f"{C}/mapping-preview", {"mapping": "afas"})).status == 404
    assert (await api.delete(C, params={"subjects": "keep"})).status == 404
    bad_json = await api.patch(C, data="{", headers={"Content-Type": "application/json"})
    assert bad_json.status == 400


# --------------------------------------------------------------------------- settings


async def test_interval_and_delete_share_change(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    reply = await api.patch(C, {"interval_seconds": 600, "max_delete_share": 0.5})
    assert reply.status == 200 and reply.body["mapping_change"] is None
    got = (await api.get(C)).body
    assert got["interval_seconds"] == 600 and got["max_delete_share"] == 0.5


async def test_rotated_credentials_are_sealed_used_and_never_returned(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    server = await aiohttp_server(afas_emulator.make_app(people=30, seed=3), host="127.0.0.1")
    await make_tenant(api)
    await make_connector(
        api,
        base_url=str(server.make_url("/profitrestservices")),
        credentials={"token": "an-old-token-the-source-refuses"},
    )
    await grant(api)
    failed = await full_sync(api)
    assert failed["status"] == "failed"
    new_token = afas_emulator.EMULATOR_TOKEN
    reply = await api.patch(C, {"credentials": {"token": new_token}})
    assert reply.status == 200
    assert new_token not in reply.text and "credentials" not in reply.body["connector"]
    record = services.store.get_connector("acme", "hr")
    assert new_token.encode() not in record.sealed_credentials
    assert connector_credentials(services.box, record) == {"token": new_token}
    assert (await full_sync(api))["status"] == "succeeded"
    assert all(new_token not in text for text in api.transcript)


# --------------------------------------------------------------------------- pause


async def test_pause_and_resume(api: Api, services: Services) -> None:
    await make_tenant(api)
    await make_connector(api)
    await grant(api)
    scheduler = Scheduler(services)
    assert scheduler.due(services.store.get_connector("acme", "hr"), services.clock())
    paused = await api.patch(C, {"paused": True})
    assert paused.status == 200 and paused.body["connector"]["paused_at"] is not None
    again = await api.patch(C, {"paused": True})
    assert again.body["connector"]["paused_at"] == paused.body["connector"]["paused_at"]
    record = services.store.get_connector("acme", "hr")
    assert not scheduler.due(record, services.clock())
    refused = await api.post(f"{C}/syncs", {"mode": "full"})
    assert refused.status == 409
    assert refused.body["type"] == "urn:sluis:problem:connector-paused"
    assert "paused" in refused.body["detail"] and '"paused": false' in refused.body["detail"]
    resumed = await api.patch(C, {"paused": False})
    assert resumed.body["connector"]["paused_at"] is None
    assert scheduler.due(services.store.get_connector("acme", "hr"), services.clock())
    assert (await api.post(f"{C}/syncs", {"mode": "full"})).status == 202


async def test_pause_stops_a_running_sync_before_its_next_page(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=200)
    await grant(api)

    changed_at: list[float] = []

    async def pause_after_first(run_id: str, pages: int) -> None:
        if pages == 1:
            assert (await api.patch(C, {"paused": True})).status == 200
            changed_at.append(time.monotonic())

    services.engine.after_page = pause_after_first
    run = await full_sync(api)
    assert run["status"] == "stopped" and run["pages"] == 1
    assert "paused" in run["error"]
    _asked_for_nothing_after(emulator, changed_at[0])
    services.engine.after_page = None
    await api.patch(C, {"paused": False})
    assert (await full_sync(api))["status"] == "succeeded"


async def test_a_new_mapping_stops_a_running_sync_before_its_next_page(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=200)
    ins = await grant(api)

    changed_at: list[float] = []

    async def change_after_first(run_id: str, pages: int) -> None:
        if pages == 1:
            assert (await api.patch(C, {"mapping": {"toml": NARROWER}})).status == 200
            changed_at.append(time.monotonic())

    services.engine.after_page = change_after_first
    run = await full_sync(api)
    assert run["status"] == "stopped" and run["pages"] == 1
    assert "mapping" in run["error"] and ins["id"] in run["error"]
    _asked_for_nothing_after(emulator, changed_at[0])


def _asked_for_nothing_after(emulator: Any, changed_at: float) -> None:
    """Pages after the first may have been on their way (each is asked for as the one
    before it arrives, while that one commits); none was committed, and as every request is
    checked before it leaves, none reached the source later than a moment after the
    change."""
    fetches = emulator[CONTROL].requests_to("/profitrestservices/connectors")
    assert all(f.at < changed_at + 0.1 for f in fetches), (fetches, changed_at)


# --------------------------------------------------------------------------- delete


async def test_delete_with_subjects_delete_tells_the_platform(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await afas_connector(api, aiohttp_server, people=60)
    ins = await grant(api)
    token = await make_consumer(api)
    run = await full_sync(api)
    assert run["status"] == "succeeded"
    events, cursor = await drain(api, token)
    held: dict[str, Any] = {}
    apply(held, events, "hr")
    assert len(held) == run["counts"]["upserted"] > 0

    assert (await api.delete(C)).status == 422  # the choice must be made
    assert (await api.delete(C, params={"subjects": "maybe"})).status == 422
    deleted = await api.delete(C, params={"subjects": "delete"})
    assert deleted.status == 200, deleted.body
    assert deleted.body["subjects"] == "delete"
    assert deleted.body["instructions_revoked"] == [ins["id"]]
    assert deleted.body["deletion_events"] == len(held) and deleted.body["subjects_kept"] == 0

    after, _ = await drain(api, token, cursor)
    assert {e["type"] for e in after} == {"subject.deleted"}
    assert all(e["data"] is None for e in after)
    apply(held, after, "hr")
    assert held == {}
    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body["entries"]
    last = ledger[-1]["entry"]
    assert last["direction"] == "outbound" and last["fields"] == {}
    assert len(ledger[-1]["subject_ids"]) == deleted.body["deletion_events"]
    assert last["subjects"]["count"] == deleted.body["deletion_events"]

    gone = await api.get(C)
    kept = services.store.deleted_connector("acme", "hr")
    assert kept is not None and kept.sealed_credentials == b""  # the secret went with it
    assert gone.status == 404 and "deleted" in gone.body["detail"]
    assert (await api.get(f"{T}/connectors")).body == {"connectors": []}
    assert (await api.post(f"{C}/syncs")).status == 404
    assert (await api.post(f"{C}/instructions", {"purpose": "b"})).status == 404
    assert (await api.patch(C, {"paused": True})).status == 404
    reused = await api.post(f"{T}/connectors", CONNECTOR)
    assert reused.status == 409 and "not reused" in reused.body["detail"]
    assert services.store.running_runs() == []


async def test_delete_with_subjects_keep_leaves_them(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await afas_connector(api, aiohttp_server, people=40)
    await grant(api)
    token = await make_consumer(api)
    run = await full_sync(api)
    events, cursor = await drain(api, token)
    deleted = await api.delete(C, params={"subjects": "keep"})
    assert deleted.status == 200
    assert deleted.body["deletion_events"] == 0
    assert deleted.body["subjects_kept"] == run["counts"]["upserted"] == len(events)
    assert (await drain(api, token, cursor))[0] == []
    # Nothing of the deleted connector leaves any more, not even from the start.
    again = await api.get(FEED, token=token)
    assert again.body["events"] == [] and again.body["withheld"] == len(events)


async def test_delete_stops_a_running_sync_and_the_source_hears_nothing_more(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=200)
    await grant(api)
    control = emulator[CONTROL]
    control.inject(Fault("slow", seconds=0.5))
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    deleted = await api.delete(C, params={"subjects": "keep"})
    assert deleted.body["runs_stopped"] == [started.body["id"]]
    run = services.store.get_run(started.body["id"])
    assert run.status == "stopped"
    seen = len(control.requests_to("/profitrestservices"))
    await asyncio.sleep(1.0)
    assert len(control.requests_to("/profitrestservices")) <= max(seen, 1)
    assert services.store.get_run(started.body["id"]).status == "stopped"


# --------------------------------------------------------------------------- consumers


async def test_consumers_list_revoke_and_rotate(api: Api, services: Services) -> None:
    await make_tenant(api)
    await make_tenant(api, "globex")
    first = await make_consumer(api)
    listed = (await api.get(f"{T}/consumers")).body["consumers"]
    assert len(listed) == 1 and listed[0]["revoked_at"] is None
    assert first not in str(listed) and "token" not in listed[0]
    cid = listed[0]["id"]
    assert (await api.get(FEED, token=first)).status == 200

    rotated = await api.post(f"{T}/consumers/{cid}/token")
    assert rotated.status == 200 and rotated.headers["Cache-Control"] == "no-store"
    second = rotated.body["token"]
    assert second != first and rotated.body["id"] == cid
    assert (await api.get(FEED, token=first)).status == 401
    assert (await api.get(FEED, token=second)).status == 200

    assert (await api.post(f"/admin/v1/tenants/globex/consumers/{cid}/token")).status == 404
    assert (await api.delete(f"/admin/v1/tenants/globex/consumers/{cid}")).status == 404
    revoked = await api.delete(f"{T}/consumers/{cid}")
    assert revoked.status == 200 and revoked.body["revoked_at"] is not None
    assert (await api.get(FEED, token=second)).status == 401
    again = await api.post(f"{T}/consumers/{cid}/token")
    assert again.status == 409 and again.body["type"] == "urn:sluis:problem:consumer-revoked"
    assert (await api.get(FEED, token=second)).status == 401
    listed = (await api.get(f"{T}/consumers")).body["consumers"]
    assert listed[0]["revoked_at"] == revoked.body["revoked_at"]
    assert (await api.get("/admin/v1/tenants/nope/consumers")).status == 403
    assert (await api.delete(f"{T}/consumers/con_nope")).status == 404


async def test_a_patch_must_change_something_and_takes_exact_types(api: Api) -> None:
    """What the OpenAPI document says (minProperties 1, booleans and numbers as such) is
    what the route enforces."""
    await make_tenant(api)
    await make_connector(api)
    path = "/admin/v1/tenants/acme/connectors/hr"
    assert (await api.patch(path, {})).status == 422
    for body in ({"paused": 0}, {"paused": "true"}, {"interval_seconds": "3600"},
                 {"max_delete_share": False}):  # fmt: skip
        reply = await api.patch(path, body)
        assert reply.status == 422, body
    # JSON Schema's integer includes 3600.0, so the route takes it too.
    changed = await api.patch(path, {"interval_seconds": 7200.0})
    assert changed.status == 200 and changed.body["connector"]["interval_seconds"] == 7200
    schema = (await api.get("/openapi.json")).body["components"]["schemas"]["ConnectorUpdate"]
    assert schema["minProperties"] == 1


async def test_a_patch_based_on_an_old_version_is_refused_with_what_changed(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    seen = await api.get(C)
    tag = seen.headers["ETag"]
    first = await api.patch(C, {"interval_seconds": 900}, headers={"If-Match": tag})
    assert first.status == 200 and first.headers["ETag"] != tag
    second = await api.patch(C, {"paused": True}, headers={"If-Match": tag})
    assert second.status == 412 and second.body["type"] == "urn:sluis:problem:connector-changed"
    assert second.body["changed"] == ["interval"]
    assert second.headers["ETag"] == first.headers["ETag"]
    assert (await api.get(C)).body["paused_at"] is None  # nothing of the refused edit landed
    again = await api.patch(C, {"paused": True}, headers={"If-Match": second.headers["ETag"]})
    assert again.status == 200 and again.body["connector"]["paused_at"] is not None
    assert (await api.patch(C, {"paused": False}, headers={"If-Match": "*"})).status == 200
    assert (await api.patch(C, {"paused": True}, headers={"If-Match": '"junk"'})).status == 412


async def test_odd_ids_and_headers_are_4xx_not_500(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    odd = "%40%C3%AA%21%C2%86.%C2%B9L%08"
    assert (await api.delete(f"{T}/consumers/{odd}")).status == 404
    long = await api.patch(C, {"interval_seconds": 900}, headers={"If-Match": "!" * 600})
    assert long.status == 400
