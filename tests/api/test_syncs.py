"""Syncs through the admin API: refusals, busy connectors, shutdown, and one end-to-end run
against the AFAS emulator that checks nothing sensitive leaves through any door."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.emulator_kit import CONTROL, Fault
from gateway.runtime.services import Services
from tests.api.conftest import Api, grant, make_connector, make_consumer, make_tenant, transfers

afas_emulator = pytest.importorskip("connectors.afas.emulator")

C = "/admin/v1/tenants/acme/connectors/hr"


async def afas_connector(api: Api, aiohttp_server: Any, people: int = 120, **knobs: Any) -> Any:
    emulator = afas_emulator.make_app(people=people, seed=7, **knobs)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    await make_tenant(api)
    await make_connector(
        api,
        base_url=str(server.make_url("/profitrestservices")),
        credentials={"token": afas_emulator.EMULATOR_TOKEN},
        settings={"page_size": 50},
    )
    return emulator


async def wait_for_run(api: Api, location: str, seconds: float = 30.0) -> dict[str, Any]:
    for _ in range(int(seconds / 0.05)):
        reply = await api.get(location)
        assert reply.status == 200
        if reply.body["status"] != "running":
            body: dict[str, Any] = reply.body
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the run did not finish")


async def test_sync_without_instruction_is_refused(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    reply = await api.post(f"{C}/syncs", {"mode": "full"})
    assert reply.status == 409
    assert reply.body["type"] == "urn:sluis:problem:instruction-refused"
    assert reply.body["code"] == "missing"
    assert "no instruction" in reply.body["detail"] and "hr" in reply.body["detail"]
    runs = (await api.get(f"{C}/syncs")).body["runs"]
    assert [r["status"] for r in runs] == ["refused"]


async def test_sync_after_revocation_names_the_instruction(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    ins = await grant(api)
    await api.delete(f"{C}/instructions/{ins['id']}")
    reply = await api.post(f"{C}/syncs")
    assert reply.status == 409
    assert reply.body["code"] == "revoked"
    assert reply.body["instruction_id"] == ins["id"]
    assert ins["id"] in reply.body["detail"]


async def test_sync_errors(api: Api) -> None:
    await make_tenant(api)
    assert (await api.post(f"{C}/syncs")).status == 404
    assert (await api.get(f"{C}/syncs")).status == 404
    await make_connector(api)
    assert (await api.post(f"{C}/syncs", {"mode": "sideways"})).status == 422
    assert (await api.post(f"{C}/syncs", {"mode": "full", "x": 1})).status == 422
    assert (await api.get(f"{C}/syncs/run_nope")).status == 404
    assert (await api.get(f"{C}/syncs", params={"limit": "500"})).status == 422


async def test_busy_connector_and_shutdown(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server)
    await grant(api)
    emulator[CONTROL].inject(Fault("slow", seconds=30))
    first = await api.post(f"{C}/syncs", {"mode": "full"})
    assert first.status == 202
    run_id = first.body["id"]
    assert first.body["status"] == "running"
    assert first.headers["Location"] == f"{C}/syncs/{run_id}"
    busy = await api.post(f"{C}/syncs")
    assert busy.status == 409
    assert busy.body["type"] == "urn:sluis:problem:sync-busy"
    assert busy.body["run_id"] == run_id and run_id in busy.body["detail"]
    other = await api.get(f"/admin/v1/tenants/globex/connectors/hr/syncs/{run_id}")
    assert other.status == 403  # not a tenant of this admin (nor one at all)
    await api.client.close()  # app cleanup cancels the background run
    paused = services.store.get_run(run_id)
    assert paused.status == "running"  # still claimed: the next start resumes it
    assert [r.id for r in services.store.running_runs()] == [run_id]


async def test_sync_end_to_end_leaks_nothing(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=120)
    people = emulator[afas_emulator.ENVIRONMENT].people
    await grant(api)
    token = await make_consumer(api)
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    assert started.status == 202, started.body
    run = await wait_for_run(api, started.headers["Location"])
    assert run["status"] == "succeeded", run
    assert run["pages"] >= 3 and run["counts"]["fetched"] == 120
    listed = (await api.get(f"{C}/syncs")).body["runs"]
    assert listed[0] == run

    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 40, **({"after": cursor} if cursor else {})}
        body = (await api.get("/feed/v1/tenants/acme/events", token=token, params=params)).body
        if not body["events"]:
            break
        events += body["events"]
        cursor = body["next_cursor"]
    assert len(events) == run["counts"]["upserted"] > 0
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    work_emails = {p["Email_werk"] for p in people if p.get("Email_werk")}
    assert {e["data"]["email"] for e in events} <= {m.lower() for m in work_emails}

    ledger = await api.get("/admin/v1/tenants/acme/ledger", params={"limit": 1000})
    directions = [e["direction"] for e in transfers(ledger.body)]
    assert directions.count("inbound") == run["pages"]
    assert directions.count("outbound") == 3
    await api.get("/metrics")
    seen = "\n".join(api.transcript)
    assert afas_emulator.EMULATOR_TOKEN not in seen
    for person in people:
        for key in ("BSN", "IBAN", "Email_prive", "Telefoon_mobiel"):
            value = person.get(key)
            if value:
                assert str(value) not in seen, key


async def test_mass_delete_guard_can_be_confirmed_for_one_run_or_raised(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=100)
    env = emulator[afas_emulator.ENVIRONMENT]
    await grant(api)
    first = await wait_for_run(
        api, (await api.post(f"{C}/syncs", {"mode": "full"})).headers["Location"]
    )
    present = first["counts"]["upserted"]
    del env.people[:40]
    env.version += 1

    async def full(**extra: Any) -> dict[str, Any]:
        started = await api.post(f"{C}/syncs", {"mode": "full", **extra})
        assert started.status == 202, started.body
        return await wait_for_run(api, started.headers["Location"])

    stopped = await full()
    held = stopped["counts"]["deletes_held"]
    assert stopped["status"] == "stopped" and held > 0.2 * present
    assert stopped["counts"]["deleted"] == 0
    assert f'"confirm_deletes": {held}' in stopped["error"]
    assert "max_delete_share" in stopped["error"]
    assert services.store.count_present("acme", "hr") == present

    wrong = await full(confirm_deletes=held - 1)
    assert wrong["status"] == "stopped" and wrong["counts"]["deleted"] == 0
    assert f"confirmed for {held - 1}, not {held}" in wrong["error"]
    assert wrong["confirm_deletes"] == held - 1
    bad = await api.post(f"{C}/syncs", {"mode": "incremental", "confirm_deletes": held})
    assert bad.status == 422 and bad.body["errors"][0]["field"] == "confirm_deletes"
    assert (await api.post(f"{C}/syncs", {"mode": "full", "confirm_deletes": 0})).status == 422
    assert (await api.post(f"{C}/syncs", {"mode": "full", "confirm_deletes": "3"})).status == 422

    # A confirmation makes the run a full one when no mode is given.
    started = await api.post(f"{C}/syncs", {"confirm_deletes": held})
    assert started.status == 202, started.body
    confirmed = await wait_for_run(api, started.headers["Location"])
    assert confirmed["mode"] == "full"
    assert confirmed["status"] == "succeeded", confirmed
    assert confirmed["counts"]["deleted"] == held == confirmed["counts"]["deletes_confirmed"]
    assert confirmed["confirm_deletes"] == held
    assert services.store.count_present("acme", "hr") == present - held
    # The confirmation was for that run only: the next large drop stops again ...
    del env.people[:30]
    env.version += 1
    again = await full()
    assert again["status"] == "stopped" and again["counts"]["deletes_held"] > 0
    # ... unless the admin raises the setting.
    raised = await api.patch(C, {"max_delete_share": 0.9})
    assert raised.status == 200
    assert (await full())["status"] == "succeeded"
