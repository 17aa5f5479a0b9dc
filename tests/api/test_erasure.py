"""Erasure end to end over the API, against the AFAS emulator: a person synced through two
connectors is erased; the feed never serves their data again (also not to a consumer
reading from the start) and tells every consumer with `subject.erased`; a re-sync does not
bring them back until the suppression is lifted; nothing of them is left in the data
directory, WAL included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.runtime.services import Services
from tests.api.conftest import Api, make_consumer, read_feed
from tests.api.test_subjects import T, _two_sources, two_sources
from tests.api.test_syncs import wait_for_run


def _files_holding(directory: Path, needle: bytes) -> list[str]:
    return [p.name for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def _full_sync(api: Api, connector: str) -> dict[str, Any]:
    started = await api.post(f"{T}/connectors/{connector}/syncs", {"mode": "full"})
    run = await wait_for_run(api, started.headers["Location"])
    assert run["status"] == "succeeded", run
    return run


async def test_an_erased_person_is_gone_stays_gone_and_every_consumer_is_told(
    api: Api, aiohttp_server: Any, services: Services
) -> None:
    person = await _two_sources(api, aiohttp_server)
    email = person["Email_werk"].lower()
    found = await api.post(f"{T}/subjects/search", {"email": email})
    (subject,) = found.body["subjects"]
    sid = subject["subject_id"]
    data_dir = services.settings.data_dir
    assert _files_holding(data_dir, email.encode())  # held before

    erased = await api.post(f"{T}/subjects/erase", {"subject_ids": [sid]})
    assert erased.status == 200, erased.body
    (done,) = erased.body["erased"]
    assert done["sources"] == ["hr", "hr2"] and done["events_deleted"] >= 2

    # Nothing of them left on disk: events deleted, cells zeroed, the WAL emptied.
    assert _files_holding(data_dir, email.encode()) == []
    # A consumer reading from the start gets no data of theirs, and the erasure per source.
    fresh = await make_consumer(api)
    events = await read_feed(api, fresh)
    theirs = [e for e in events if e["subject_id"] == sid]
    assert [(e["type"], e["source"], e["data"]) for e in theirs] == [
        ("subject.erased", "hr", None), ("subject.erased", "hr2", None),
    ]  # fmt: skip
    assert email not in str(events)
    assert (await api.post(f"{T}/subjects/search", {"email": email})).body == {"subjects": []}
    export = await api.post(f"{T}/subjects/export", {"subject_ids": [sid]})
    assert {h["state"] for h in export.body["held"]} == {"erased"}
    assert all(h["data"] is None for h in export.body["held"])

    # The source still holds them: a full sync does not bring them back.
    run = await _full_sync(api, "hr")
    assert run["counts"]["suppressed"] == 1
    again = await read_feed(api, fresh)
    assert [e["type"] for e in again if e["subject_id"] == sid] == ["subject.erased"] * 2
    assert _files_holding(data_dir, email.encode()) == []
    listed = (await api.get(f"{T}/suppressions")).body["suppressions"]
    assert [(s["subject_id"], s["kind"]) for s in listed] == [(sid, "erased")]
    consumers = [c["id"] for c in (await api.get(f"{T}/consumers")).body["consumers"]]
    assert len(consumers) == 2 and sorted(listed[0]["pending"]) == sorted(consumers)
    assert listed[0]["receipts"] == []

    # The consumer confirms it removed them: the receipt of this destination.
    ack = f"/feed/v1/tenants/acme/erasures/{sid}/ack"
    bearer = {"Authorization": f"Bearer {fresh}"}
    first = await api.post(ack, None, headers=bearer)
    assert first.status == 200, first.body
    assert (await api.post(ack, None, headers=bearer)).body == first.body  # once, the first time
    assert (await api.post(ack, None)).status == 401
    other = f"/feed/v1/tenants/acme/erasures/{'0' * 32}/ack"
    assert (await api.post(other, None, headers=bearer)).status == 404  # not erased
    listed = (await api.get(f"{T}/suppressions")).body["suppressions"]
    assert [r["consumer_id"] for r in listed[0]["receipts"]] == [first.body["consumer_id"]]
    assert first.body["consumer_id"] not in listed[0]["pending"]
    request = await api.post(f"{T}/requests", {"kind": "erasure", "subject_ids": [sid]})
    assert [r["consumer_id"] for r in request.body["receipts"]] == [first.body["consumer_id"]]

    # The ledger says who erased whom, by keyed id, and never the email.
    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body
    actions = [e["entry"] for e in ledger["entries"] if e["entry"].get("action")]
    assert any(a["action"] == "subject.erased" and a["target"] == sid for a in actions)
    assert email not in str(ledger)

    # Lifted: the next sync brings them back as new.
    lifted = await api.delete(f"{T}/suppressions/{sid}")
    assert lifted.status == 200 and lifted.body["subject_id"] == sid
    assert (await api.delete(f"{T}/suppressions/{sid}")).status == 404
    await _full_sync(api, "hr")
    back = [e for e in await read_feed(api, fresh) if e["subject_id"] == sid]
    assert back[-1]["type"] == "subject.upserted" and back[-1]["data"]["email"] == email


async def test_erasure_needs_an_admin_and_a_known_shape(api: Api, aiohttp_server: Any) -> None:
    await _two_sources(api, aiohttp_server)
    for body in ({}, {"subject_ids": []}, {"subject_ids": ["nope"]}):
        assert (await api.post(f"{T}/subjects/erase", body)).status == 422
    unknown = await api.post(f"{T}/subjects/erase", {"subject_ids": ["0" * 32]})
    assert unknown.status == 200 and unknown.body["erased"][0]["events_deleted"] == 0
    assert (await api.delete(f"{T}/suppressions/{'1' * 32}")).status == 404


async def test_a_restricted_person_is_withheld_kept_and_comes_back_when_lifted(
    api: Api, aiohttp_server: Any
) -> None:
    person, env = await two_sources(api, aiohttp_server)
    email = person["Email_werk"].lower()
    sid = (await api.post(f"{T}/subjects/search", {"email": email})).body["subjects"][0][
        "subject_id"
    ]
    reply = await api.post(f"{T}/subjects/restrict", {"subject_ids": [sid]})
    assert reply.status == 200 and reply.body == {"restricted": [sid]}
    # The feed withholds what it holds of them; nothing is deleted.
    fresh = await make_consumer(api)
    assert [e for e in await read_feed(api, fresh) if e["subject_id"] == sid] == []
    export = await api.post(f"{T}/subjects/export", {"subject_ids": [sid]})
    assert {h["data"]["email"] for h in export.body["held"]} == {email}
    # A change at the source is neither stored nor delivered while restricted.
    person["Functie"] = "Chief Restriction Officer"
    person["Gewijzigd_op"] = env.now_stamp()
    env.version += 1
    run = await _full_sync(api, "hr")
    assert run["counts"]["suppressed"] == 1
    held = (await api.post(f"{T}/subjects/export", {"subject_ids": [sid]})).body["held"]
    assert "Chief Restriction Officer" not in str(held)
    # Lifted: their newest state is sent again at once; the next sync brings the change.
    assert (await api.delete(f"{T}/suppressions/{sid}")).status == 200
    back = [e for e in await read_feed(api, fresh) if e["subject_id"] == sid]
    # From the start: their events from before, no longer withheld, and the newest again.
    assert [(e["type"], e["source"]) for e in back] == [
        ("subject.upserted", "hr"), ("subject.upserted", "hr2"),
    ] * 2  # fmt: skip
    assert back[2]["data"] == back[0]["data"] and back[2]["id"] != back[0]["id"]
    await _full_sync(api, "hr")
    latest = [e for e in await read_feed(api, fresh) if e["subject_id"] == sid][-1]
    assert latest["data"]["job_title"] == "Chief Restriction Officer"
    # An erased person cannot be restricted back into processing.
    await api.post(f"{T}/subjects/erase", {"subject_ids": [sid]})
    again = await api.post(f"{T}/subjects/restrict", {"subject_ids": [sid]})
    assert again.body == {"restricted": []}
