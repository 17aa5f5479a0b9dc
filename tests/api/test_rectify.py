"""Rectification over the API, against the AFAS emulator: a person synced through two
connectors is corrected at the source; `POST .../subjects/rectify` says where each of
their fields comes from and syncs each source's changes, and the feed then carries the
corrected record. The request is on the ledger, which never holds the name."""

from __future__ import annotations

from typing import Any

from gateway.runtime.services import Services
from tests.api.conftest import Api, make_consumer, read_feed
from tests.api.test_subjects import T, two_sources
from tests.api.test_syncs import wait_for_run


async def test_a_correction_at_the_source_is_brought_through_on_request(
    api: Api, aiohttp_server: Any, services: Services
) -> None:
    person, source = await two_sources(api, aiohttp_server)
    found = await api.post(f"{T}/subjects/search", {"email": person["Email_werk"]})
    ((subject),) = found.body["subjects"]
    sid = subject["subject_id"]

    # Where to correct it, without starting anything.
    told = await api.post(f"{T}/subjects/rectify", {"subject_ids": [sid], "sync": False})
    assert told.status == 200, told.body
    assert told.headers["Cache-Control"] == "no-store"
    assert [s["connector"] for s in told.body["sources"]] == ["hr", "hr2"]
    hr = told.body["sources"][0]
    assert hr["connector_type"] == "afas" and hr["base_url"].startswith("http://127.0.0.1:")
    assert hr["fields"]["first_name"] == ["Roepnaam", "Voornaam"]
    assert set(hr["fields"]) == {"first_name", "last_name", "email", "job_title"}
    assert {s["sync"]["status"] for s in told.body["sources"]} == {"not-asked"}
    assert "system of record" in told.body["how"]

    # The customer corrects the name in AFAS; the request brings it through both sources.
    person["Roepnaam"] = "Corrected"
    person["Gewijzigd_op"] = source.now_stamp()
    source.version += 1
    asked = await api.post(f"{T}/subjects/rectify", {"subject_ids": [sid]})
    assert asked.status == 200, asked.body
    for src in asked.body["sources"]:
        assert src["sync"]["status"] == "started", src
        location = f"{T}/connectors/{src['connector']}/syncs/{src['sync']['run_id']}"
        run = await wait_for_run(api, location)
        assert run["status"] == "succeeded" and run["mode"] == "incremental", run
    token = await make_consumer(api)
    latest = {
        e["source"]: e for e in [e for e in await read_feed(api, token) if e["subject_id"] == sid]
    }
    assert {s: e["data"]["first_name"] for s, e in latest.items()} == {
        "hr": "Corrected", "hr2": "Corrected",
    }  # fmt: skip

    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body["entries"]
    resynced = [e["entry"] for e in ledger if e["entry"].get("action") == "subject.resynced"]
    assert [(r["target"], r["counts"]["records"]) for r in resynced] == [(sid, 0), (sid, 2)]
    assert "Corrected" not in str(ledger)


async def test_rectify_says_why_a_source_cannot_sync_and_404s_for_nobody(
    api: Api, aiohttp_server: Any
) -> None:
    person, _ = await two_sources(api, aiohttp_server)
    found = await api.post(f"{T}/subjects/search", {"email": person["Email_werk"]})
    sid = found.body["subjects"][0]["subject_id"]
    paused = await api.patch(f"{T}/connectors/hr2", {"paused": True})
    assert paused.status == 200, paused.body
    listed = (await api.get(f"{T}/connectors/hr/instructions")).body["instructions"]
    for instruction in listed:
        await api.delete(f"{T}/connectors/hr/instructions/{instruction['id']}")
    asked = await api.post(f"{T}/subjects/rectify", {"subject_ids": [sid]})
    assert asked.status == 200, asked.body
    statuses = {s["connector"]: s["sync"]["status"] for s in asked.body["sources"]}
    assert statuses == {"hr": "not-authorised", "hr2": "paused"}
    nobody = await api.post(f"{T}/subjects/rectify", {"subject_ids": ["0" * 32]})
    assert nobody.status == 404
    bad = await api.post(f"{T}/subjects/rectify", {"subject_ids": ["not-an-id"]})
    assert bad.status == 422
