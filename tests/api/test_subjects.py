"""Data-subject requests over the API, against the AFAS emulator: a person synced through two
connectors is found by email and by their employee number, and exported (JSON and CSV) with
what Sluis holds and every transfer that carried them; each lookup is on the ledger, which
never holds the email."""

from __future__ import annotations

import csv
import io
from typing import Any

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT, AfasEnvironment
from gateway.runtime.services import Services
from tests.api.conftest import Api, grant, make_connector, make_consumer
from tests.api.test_syncs import afas_connector, wait_for_run

T = "/admin/v1/tenants/acme"


async def _two_sources(api: Api, aiohttp_server: Any) -> dict[str, Any]:
    """acme with connectors hr and hr2 on one AFAS emulator, both synced, one feed page
    read; returns the raw AFAS record of a person (for their email and number)."""
    person, _ = await two_sources(api, aiohttp_server)
    return person


async def two_sources(api: Api, aiohttp_server: Any) -> tuple[dict[str, Any], AfasEnvironment]:
    """`_two_sources`, with the emulator's environment (to change the person at the source)."""
    emulator = await afas_connector(api, aiohttp_server, people=20)
    base = (await api.get(f"{T}/connectors/hr")).body["base_url"]
    await make_connector(api, id="hr2", base_url=base, credentials={"token": EMULATOR_TOKEN},
                         settings={"page_size": 50})  # fmt: skip
    for connector in ("hr", "hr2"):
        await grant(api, connector=connector)
        started = await api.post(f"{T}/connectors/{connector}/syncs", {"mode": "full"})
        run = await wait_for_run(api, started.headers["Location"])
        assert run["status"] == "succeeded", run
    token = await make_consumer(api)
    page = await api.get("/feed/v1/tenants/acme/events", params={"limit": 100},
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert page.status == 200
    people = [p for p in emulator[ENVIRONMENT].people if p.get("Email_werk")]
    person: dict[str, Any] = people[3]
    return person, emulator[ENVIRONMENT]


async def test_a_person_is_found_by_email_and_by_number_in_both_sources(
    api: Api, aiohttp_server: Any, services: Services
) -> None:
    person = await _two_sources(api, aiohttp_server)
    email = person["Email_werk"]
    found = await api.post(f"{T}/subjects/search", {"email": f"  {email.upper()} "})
    assert found.status == 200, found.body
    assert found.headers["Cache-Control"] == "no-store"
    (subject,) = found.body["subjects"]
    assert subject["sources"] == ["hr", "hr2"]
    by_number = await api.post(
        f"{T}/subjects/search", {"connector": "hr", "identity": [str(person["Medewerker"])]}
    )
    assert by_number.body["subjects"] == [subject]
    nobody = await api.post(f"{T}/subjects/search", {"email": "nobody@nowhere.example"})
    assert nobody.body == {"subjects": []}
    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body
    searched = [e["entry"] for e in ledger["entries"]
                if e["entry"].get("action") == "subject.searched"]  # fmt: skip
    assert [s["counts"]["records"] for s in searched] == [1, 1, 0]
    assert email.lower().encode() not in str(ledger).lower().encode()


async def test_the_export_holds_the_data_per_source_and_every_transfer(
    api: Api, aiohttp_server: Any, services: Services
) -> None:
    person = await _two_sources(api, aiohttp_server)
    found = await api.post(f"{T}/subjects/search", {"email": person["Email_werk"]})
    subject_id = found.body["subjects"][0]["subject_id"]
    reply = await api.post(f"{T}/subjects/export", {"subject_ids": [subject_id]})
    assert reply.status == 200, reply.body
    export = reply.body
    assert [(h["source"], h["state"]) for h in export["held"]] == [
        ("hr", "present"), ("hr2", "present"),
    ]  # fmt: skip
    assert {h["data"]["email"] for h in export["held"]} == {person["Email_werk"].lower()}
    assert {e["source"] for e in export["events"]} == {"hr", "hr2"}
    directions = {(t["direction"], t["connector"]) for t in export["transfers"]}
    assert {("inbound", "hr"), ("inbound", "hr2")} <= directions
    assert any(t["direction"] == "outbound" and t["destination"].startswith("feed:")
               for t in export["transfers"])  # fmt: skip
    assert all(t["subject_ids"] == [subject_id] for t in export["transfers"])
    assert "nothing else" in export["nothing_else"]
    # The same transfers once the app's indexer has indexed the lists (read directly before).
    assert services.index_ledgers(2) > 0
    assert services.index_ledgers(2) == 0
    again = await api.post(f"{T}/subjects/export", {"subject_ids": [subject_id]})
    assert again.body["transfers"] == export["transfers"]
    # A damaged index would hide transfers; the full self-check finds and rebuilds it.
    db = getattr(services.store.ledger, "database")  # noqa: B009 - the SQL store's own
    db.execute("DELETE FROM ledger_subject_index")
    damaged = await api.post(f"{T}/subjects/export", {"subject_ids": [subject_id]})
    assert damaged.body["transfers"] != export["transfers"]
    assert services.verify_ledgers() == {"acme": True}
    repaired = await api.post(f"{T}/subjects/export", {"subject_ids": [subject_id]})
    assert repaired.body["transfers"] == export["transfers"]
    as_csv = await api.post(f"{T}/subjects/export", {"subject_ids": [subject_id], "format": "csv"})
    assert as_csv.status == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["record"] for r in rows} == {"held", "event", "transfer"}
    held = [r for r in rows if r["record"] == "held"]
    assert [r["email"] for r in held] == [person["Email_werk"].lower()] * 2
    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body
    exported = [e["entry"] for e in ledger["entries"]
                if e["entry"].get("action") == "subject.exported"]  # fmt: skip
    assert [x["target"] for x in exported] == [subject_id] * 5


async def test_bad_lookups_are_refused_with_the_field_named(api: Api, aiohttp_server: Any) -> None:
    await _two_sources(api, aiohttp_server)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 422, ""),
        ({"email": "a@b.example", "connector": "hr", "identity": ["1"]}, 422, ""),
        ({"connector": "hr"}, 422, ""),
        ({"email": "not an email"}, 422, "email"),
        ({"connector": "hr", "identity": ["1", "2"]}, 422, "identity"),
        ({"connector": "hr", "identity": ["  "]}, 422, "identity"),
        ({"connector": "nope", "identity": ["1"]}, 404, ""),
    ]
    for body, status, field in cases:
        reply = await api.post(f"{T}/subjects/search", body)
        assert reply.status == status, (body, reply.body)
        if field:
            assert reply.body["errors"][0]["field"] == field, reply.body
    unknown = await api.post(f"{T}/subjects/export", {"subject_ids": ["0" * 32]})
    assert unknown.status == 404
    assert (await api.post(f"{T}/subjects/export", {"subject_ids": ["x"]})).status == 422
    assert (await api.post(f"{T}/subjects/export", {"subject_ids": []})).status == 422
