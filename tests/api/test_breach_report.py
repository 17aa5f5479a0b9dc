"""The breach scope report over the API and the CLI, after a real sync from the AFAS emulator
and a feed page: the numbers match what moved, and nothing in it is a personal data value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli.main import main
from gateway.runtime.services import Services
from tests.api.conftest import Api, grant, make_consumer
from tests.api.test_syncs import C, afas_connector, wait_for_run

T = "/admin/v1/tenants/acme"
PEOPLE = 60


async def _synced_and_read(api: Api, aiohttp_server: Any) -> tuple[datetime, datetime]:
    """Tenant acme: a full sync of 60 people, then one feed page of 25 read; the window."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    await afas_connector(api, aiohttp_server, people=PEOPLE)
    await grant(api)
    run = await wait_for_run(
        api, (await api.post(f"{C}/syncs", {"mode": "full"})).headers["Location"]
    )
    assert run["status"] == "succeeded", run
    token = await make_consumer(api)
    page = await api.get(
        "/feed/v1/tenants/acme/events", params={"limit": 25},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert page.status == 200 and len(page.body["events"]) == 25
    return start, datetime.now(UTC) + timedelta(seconds=1)


async def test_the_scope_of_a_sync_and_a_feed_page(
    api: Api, aiohttp_server: Any, services: Services
) -> None:
    start, end = await _synced_and_read(api, aiohttp_server)
    window = {"from": start.isoformat(), "to": end.isoformat()}
    reply = await api.get(f"{T}/reports/breach", params=window)
    assert reply.status == 200, reply.body
    scope = reply.body
    fetched = (await api.get(f"{C}/syncs")).body["runs"][0]["counts"]
    assert scope["subjects"] == len(scope["subject_ids"]) == fetched["passed"]
    assert scope["records_in"] == fetched["fetched"] and scope["records_out"] == 25
    assert scope["sources"] == ["hr"] and scope["destinations"][0].startswith("feed:")
    assert set(scope["categories"]) <= {
        "user.name", "user.name.first", "user.name.last", "user.contact.email", "user.job_title"
    }  # fmt: skip
    assert [a["connector"] for a in scope["authorisations"]] == ["hr"]
    assert scope["ledger"]["stop_index"] <= scope["ledger"]["log_size"]
    # Keyed ids and names only: no value a person could be recognised by.
    body = orjson.dumps(scope)
    for person in services.store.events_after("acme", 0, 1000):
        for value in (person.data or {}).values():
            if value:
                assert str(value).encode() not in body
    counted = await api.get(f"{T}/reports/breach", params={**window, "ids": "false"})
    assert counted.body["subject_ids"] is None and counted.body["subjects"] == scope["subjects"]
    before = await api.get(
        f"{T}/reports/breach",
        params={"from": (start - timedelta(days=2)).isoformat(),
                "to": (start - timedelta(days=1)).isoformat()},
    )  # fmt: skip
    assert before.status == 200 and before.body["subjects"] == 0


async def test_bad_windows_are_422s_and_other_tenants_are_refused(
    api: Api, aiohttp_server: Any
) -> None:
    await _synced_and_read(api, aiohttp_server)
    now = datetime.now(UTC)
    later = (now + timedelta(hours=1)).isoformat()
    cases: list[tuple[dict[str, str], int]] = [
        ({"from": later, "to": now.isoformat()}, 422),  # ends before it starts
        ({"from": "2026-11-30T10:00:00", "to": later}, 422),  # no zone
        ({"from": "yesterday", "to": later}, 422),
        ({"to": later}, 422),
        ({"from": now.isoformat(), "to": later, "connector": "../x"}, 422),
        ({"from": now.isoformat(), "to": later, "extra": "1"}, 422),
    ]
    for params, status in cases:
        reply = await api.get(f"{T}/reports/breach", params=params)
        assert reply.status == status, (params, reply.body)
        assert reply.body["status"] == status
    missing = await api.get(
        "/admin/v1/tenants/nobody/reports/breach", params={"from": now.isoformat(), "to": later}
    )
    assert missing.status in (403, 404)


async def test_the_cli_prints_the_same_scope(
    api: Api, aiohttp_server: Any, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = await _synced_and_read(api, aiohttp_server)
    window = {"from": start.isoformat(), "to": end.isoformat()}
    reply = await api.get(f"{T}/reports/breach", params=window)
    data_dir = str(services.settings.data_dir)
    args = ["report", "breach", "--data-dir", data_dir, "--tenant", "acme",
            "--from", window["from"], "--to", window["to"]]  # fmt: skip
    assert main([*args, "--format", "json"]) == 0
    printed = orjson.loads(capsys.readouterr().out)
    assert printed["subject_ids"] == reply.body["subject_ids"]
    assert printed["records_in"] == reply.body["records_in"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"data subjects: {reply.body['subjects']}" in text and "sources: hr" in text
    assert main([*args[:-4], "--from", window["to"], "--to", window["from"]]) == 2
    assert "end after" in capsys.readouterr().err
    nowhere = str(Path(data_dir) / "nope")
    assert main(["report", "breach", "--data-dir", nowhere, "--tenant", "acme",
                 "--from", window["from"], "--to", window["to"]]) == 2  # fmt: skip
