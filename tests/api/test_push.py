"""Webhook push end to end: the app's own push workers deliver a tenant's feed events to a
real receiver on 127.0.0.1, which verifies every request with the `standardwebhooks`
package as a platform would. In order, at least once, on the ledger, never after a
revocation; retries honour Retry-After and a slow receiver; dead letters park a person and
come back in order on replay; secrets rotate with an overlap; thin mode; pause."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.delivery.destinations import url_problem
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from tests.api.conftest import (
    ADMIN_TOKEN,
    MASTER_KEY,
    Api,
    insert_events,
    setup_feed,
    subject_id,
    transfers,
)

T = "/admin/v1/tenants/acme"


def push_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for push tests: private addresses allowed (the receivers are on
    127.0.0.1), no scheduler, and workers that poll and retry in hundredths of a second."""
    given: dict[str, Any] = {
        "data_dir": tmp_path, "admin_token": ADMIN_TOKEN, "master_key": MASTER_KEY,
        "scheduler": False, "allow_private_sources": True, "push_interval": 0.02,
        "push_retry_first": 0.01, "push_retry_cap": 0.05, "push_timeout": 0.5,
    }  # fmt: skip
    return Settings(**{**given, **overrides})


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(push_settings(tmp_path))
    yield s
    s.close()


@dataclass
class Receiver:
    """A platform's webhook endpoint: verifies each request with the secrets it was given,
    answers with `script` first (status, headers, seconds to wait), then 204."""

    secrets: list[str] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    #: (webhook-id, events) of every verified request, repeats included.
    seen: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    unverified: int = 0
    verified_by: list[set[int]] = field(default_factory=list)
    refuse: Callable[[list[dict[str, Any]]], bool] | None = None

    def app(self) -> web.Application:
        async def take(request: web.Request) -> web.Response:
            body = await request.read()
            by = set()
            for i, secret in enumerate(self.secrets):
                try:
                    Webhook(secret).verify(body, dict(request.headers))
                    by.add(i)
                except WebhookVerificationError:
                    pass
            if not by:
                self.unverified += 1
                return web.Response(status=401)
            payload = orjson.loads(body)
            events = payload["data"]["events"]
            if self.script:
                status, headers, wait = self.script.pop(0)
                await asyncio.sleep(wait)
                self.seen.append((request.headers["webhook-id"], events))
                return web.Response(status=status, headers=headers, text="receiver's words")
            if self.refuse is not None and self.refuse(events):
                return web.Response(status=400, text="no")
            self.seen.append((request.headers["webhook-id"], events))
            self.verified_by.append(by)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hooks", take)
        return app

    def delivered(self) -> list[dict[str, Any]]:
        """Events as applied: each webhook-id once, the last answer that was a 2xx."""
        out: list[dict[str, Any]] = []
        done: set[str] = set()
        for message, events in self.seen:
            if message not in done:
                done.add(message)
                out += events
        return out


async def until(check: Callable[[], Any], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def _receiver(aiohttp_server: Any, receiver: Receiver) -> str:
    server = await aiohttp_server(receiver.app(), host="127.0.0.1")
    return str(server.make_url("/hooks"))


async def _destination(api: Api, url: str, **options: Any) -> dict[str, Any]:
    made = await api.post(f"{T}/destinations", {"url": url, **options})
    assert made.status == 201, made.body
    body: dict[str, Any] = made.body
    return body


async def test_events_arrive_signed_in_order_once_each_and_on_the_ledger(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 250, deleted_every=7)
    receiver = Receiver()
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url, batch_size=100)
    assert dest["secret"].startswith("whsec_")
    receiver.secrets.append(dest["secret"])
    await until(lambda: len(receiver.delivered()) == 250)
    got = receiver.delivered()
    assert [e["seq"] for e in got] == list(range(1, 251))
    assert receiver.unverified == 0
    assert len({m for m, _ in receiver.seen}) == 3
    assert got[1]["data"]["email"] == "person1@example-employer.nl"
    assert got[0]["type"] == "subject.deleted" and got[0]["data"] is None
    page = await api.get(f"{T}/destinations/{dest['id']}")
    assert (page.body["after_seq"], page.body["lag"], page.body["dead_letters"]) == (250, 0, 0)
    assert page.body["delivered_at"] is not None and "secret" not in page.body
    ledger = await api.get(f"{T}/ledger", params={"limit": 1000})
    out = [e for e in transfers(ledger.body) if e["destination"] == f"webhook:{dest['id']}"]
    assert sum(e["counts"]["records"] for e in out) == 250
    assert {e["direction"] for e in out} == {"outbound"}
    assert set(out[0]["fields"]) == {"first_name", "last_name", "email", "job_title"}
    metrics = await api.get("/metrics")
    assert (
        f'sluis_push_events_total{{destination="{dest["id"]}",outcome="delivered",'
        'tenant="acme"} 250.0'
    ) in metrics.text
    assert f'sluis_push_lag_events{{destination="{dest["id"]}",tenant="acme"}} 0.0' in metrics.text


async def test_retries_honour_retry_after_and_a_slow_receiver_without_reordering(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 30)
    receiver = Receiver(
        script=[
            (503, {"Retry-After": "0"}, 0),
            (429, {"Retry-After": "0"}, 0),
            (204, {}, 1.0),  # a 2xx after the sender's timeout: not seen as delivered
            (500, {}, 0),
        ]
    )
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url, batch_size=10)
    receiver.secrets.append(dest["secret"])
    await until(lambda: len(receiver.delivered()) == 30 and not receiver.script)
    # The first batch went five times (the slow answer's handler may be cut off when the
    # sender gives up), always with the same id; nothing overtook it.
    ids = [m for m, _ in receiver.seen]
    first = [i for i, m in enumerate(ids) if m == ids[0]]
    assert len(first) >= 4 and first == list(range(len(first)))
    assert [e["seq"] for e in receiver.delivered()] == list(range(1, 31))
    page = await api.get(f"{T}/destinations/{dest['id']}")
    assert (page.body["attempts"], page.body["failure"], page.body["dead_letters"]) == (0, None, 0)


async def test_a_revocation_stops_a_failing_batch_before_its_next_attempt(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    _, instruction = await setup_feed(api)
    insert_events(services, "acme", 5)
    receiver = Receiver(script=[(503, {"Retry-After": "1"}, 0)])
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url)
    receiver.secrets.append(dest["secret"])
    await until(lambda: not receiver.script)
    revoked = await api.delete(f"{T}/connectors/hr/instructions/{instruction}")
    assert revoked.status == 200, revoked.body
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 5)
    await asyncio.sleep(0.2)
    assert len(receiver.seen) == 1  # the one refused attempt, nothing after the revocation
    ledger = await api.get(f"{T}/ledger", params={"limit": 1000})
    mine = [e for e in transfers(ledger.body) if e["destination"] == f"webhook:{dest['id']}"]
    assert [e["direction"] for e in mine] == ["outbound", "refused"]
    assert mine[1]["counts"]["records"] == 5


async def test_dead_letters_park_a_person_and_come_back_in_order_on_replay(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 2)  # people 0 and 1
    poisoned = subject_id(0)
    receiver = Receiver()
    receiver.refuse = lambda events: any(e["subject_id"] == poisoned for e in events)
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url, batch_size=1)
    receiver.secrets.append(dest["secret"])
    d = f"{T}/destinations/{dest['id']}"
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 2)
    insert_events(services, "acme", 2, start=0)  # people 0 (parked) and 1 again
    insert_events(services, "acme", 1, start=2)
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 5)
    letters = await api.get(d + "/dead-letters")
    assert [(x["seq"], x["reason"]) for x in letters.body["dead_letters"]] == [
        (1, "status-400"), (3, "parked")]  # fmt: skip
    assert [e["seq"] for e in receiver.delivered()] == [2, 4, 5]
    assert (await api.get(d)).body["dead_letters"] == 2
    # A replay the receiver still refuses ends, leaving the dead letters as they were.
    await api.post(d + "/dead-letters/replay")
    await until(
        lambda: services.store.get_destination("acme", dest["id"]).replay_requested_at is None
    )
    assert (await api.get(d)).body["dead_letters"] == 2
    assert (await api.get(d)).body["attempts"] == 0
    receiver.refuse = None
    replay = await api.post(d + "/dead-letters/replay")
    assert replay.status == 200 and replay.body["dead_letters"] == 2
    await until(lambda: len(receiver.delivered()) == 5)
    assert [e["seq"] for e in receiver.delivered()] == [2, 4, 5, 1, 3]
    await until(
        lambda: services.store.get_destination("acme", dest["id"]).replay_requested_at is None
    )
    assert (await api.get(d + "/dead-letters")).body["dead_letters"] == []
    # The person is no longer parked: their next change goes straight out.
    insert_events(services, "acme", 1, start=0)
    await until(lambda: len(receiver.delivered()) == 6)
    assert receiver.delivered()[-1]["seq"] == 6


async def test_a_rotated_secret_overlaps_then_the_old_one_ends(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    receiver = Receiver()
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url)
    d = f"{T}/destinations/{dest['id']}"
    rotated = await api.post(d + "/secret", {"overlap_seconds": 3600})
    assert rotated.status == 200 and rotated.body["secret"] != dest["secret"]
    assert rotated.body["previous_secret_valid_until"] is not None
    receiver.secrets += [dest["secret"], rotated.body["secret"]]
    insert_events(services, "acme", 3)
    await until(lambda: len(receiver.delivered()) == 3)
    assert receiver.verified_by[-1] == {0, 1}  # either secret verifies it
    ended = await api.post(d + "/secret", {"overlap_seconds": 0})
    receiver.secrets = [rotated.body["secret"], ended.body["secret"]]
    insert_events(services, "acme", 1, start=3)
    await until(lambda: len(receiver.delivered()) == 4)
    assert receiver.verified_by[-1] == {1}


async def test_thin_mode_event_types_and_pause(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    receiver = Receiver()
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url, thin=True, event_types=["subject.upserted"])
    receiver.secrets.append(dest["secret"])
    d = f"{T}/destinations/{dest['id']}"
    paused = await api.patch(d, {"paused": True})
    assert paused.body["paused"] is True
    insert_events(services, "acme", 6, deleted_every=3)
    await asyncio.sleep(0.3)
    assert receiver.seen == []
    await api.patch(d, {"paused": False})
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 6)
    got = receiver.delivered()
    assert [e["seq"] for e in got] == [2, 3, 5, 6]  # the deletions (0 and 3) not taken
    assert all("data" not in e and e["subject_id"] for e in got)
    ledger = await api.get(f"{T}/ledger", params={"limit": 1000})
    mine = [e for e in transfers(ledger.body) if e["destination"] == f"webhook:{dest['id']}"]
    assert all(e["fields"] == {} for e in mine)  # thin: no egress field left


async def test_an_erasure_reaches_the_destination_and_comes_back_as_a_receipt(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 2)
    receiver = Receiver()
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url)
    receiver.secrets.append(dest["secret"])
    await until(lambda: len(receiver.delivered()) == 2)
    await api.patch(f"{T}/destinations/{dest['id']}", {"paused": True})
    erased = await api.post(f"{T}/subjects/erase", {"subject_ids": [subject_id(1)]})
    assert erased.status == 200, erased.body
    waiting = (await api.get(f"{T}/suppressions")).body["suppressions"][0]
    assert f"webhook:{dest['id']}" in waiting["pending"]
    await api.patch(f"{T}/destinations/{dest['id']}", {"paused": False})
    await until(lambda: any(e["type"] == "subject.erased" for e in receiver.delivered()))
    kept = await api.get(f"{T}/suppressions")
    (row,) = kept.body["suppressions"]
    assert [r["consumer_id"] for r in row["receipts"]] == [f"webhook:{dest['id']}"]
    assert f"webhook:{dest['id']}" not in row["pending"]


async def test_bad_destinations_are_refused_with_problems(api: Api) -> None:
    await setup_feed(api)
    bad = await api.post(f"{T}/destinations", {"url": "ftp://x.example/"})
    assert bad.status == 422
    bad = await api.post(f"{T}/destinations", {"url": "https://x.example/", "batch_size": 0})
    assert bad.status == 422
    missing = await api.get(f"{T}/destinations/dst_0000000000000000")
    assert missing.status == 404
    assert (
        await api.post(f"{T}/destinations/dst_0000000000000000/dead-letters/replay")
    ).status == 404
    made = await _destination(api, "http://127.0.0.1:9/hooks", from_start=False)
    d = f"{T}/destinations/{made['id']}"
    assert (await api.patch(d, {})).status == 200
    for body in ({"event_types": []}, {"paused": "yes"}, {"batch_size": 1.5}, {"url": "x"},
                 {"max_age_seconds": 10}, {"event_types": ["subject.created"]}):  # fmt: skip
        assert (await api.patch(d, body)).status == 422, body
    assert (await api.post(d + "/secret", data="{nope")).status == 400
    assert (await api.post(d + "/secret", {"overlap_seconds": -1})).status == 422
    assert (await api.get(d + "/dead-letters", params={"after": "-1"})).status == 422
    assert (await api.get(d + "/dead-letters", params={"limit": "5000"})).status == 422
    assert (await api.get(f"{T}/destinations/nope")).status == 404
    assert "secret" not in (await api.get(d)).body
    assert url_problem("http://127.0.0.1/hooks", allow_private=False) is not None
    assert url_problem("http://10.1.2.3/hooks", allow_private=False) is not None
    assert url_problem("https://93.184.216.34/hooks", allow_private=False) is None


async def test_two_replicas_one_owner_and_a_takeover(
    services: Services, aiohttp_server: Any
) -> None:
    """Two replicas' workers over one store: one holds the destination and sends, the other
    stays out; when the holder stops, the other carries on from the stored cursor once the
    lease has run out. No batch goes twice."""
    await _takeover(services, aiohttp_server)


async def test_two_replicas_one_owner_and_a_takeover_on_postgres(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    from tests.pg import database_url, fresh_schema, require_postgres

    require_postgres()
    with fresh_schema() as schema:
        services = Services.open(
            Settings(
                data_dir=tmp_path / "pg", admin_token=ADMIN_TOKEN, master_key=MASTER_KEY,
                scheduler=False, allow_private_sources=True, database_url=database_url(schema),
            )
        )  # fmt: skip
        try:
            await _takeover(services, aiohttp_server)
        finally:
            services.close()


async def _takeover(services: Services, aiohttp_server: Any) -> None:
    from datetime import UTC, datetime

    from gateway.delivery.destinations import WebhookSettings, create_webhook
    from gateway.delivery.push import PushWorker, PushWorkers, RetryPolicy
    from gateway.delivery.webhook import webhook_opener
    from gateway.ledger.audit import SYSTEM
    from gateway.ledger.record import Acting
    from gateway.sync.instructions import grant
    from gateway.tenancy import create_connector, create_tenant
    from mappings import bundled_mapping

    store, now = services.store, datetime.now(UTC)
    by = Acting(SYSTEM, services.ledger("acme"))
    create_tenant(store, services.box, "acme", "Acme BV", now, by=by)
    create_connector(
        store, services.box, by=by, tenant="acme", connector_id="hr", type_name="afas",
        base_url="http://127.0.0.1:9/x", credentials={"token": "x"},
        mapping_text=bundled_mapping("afas").read_text(encoding="utf-8"), now=now,
    )  # fmt: skip
    grant(store, by=by, connector="hr", purpose="lms accounts", now=now)
    receiver = Receiver()
    url = await _receiver(aiohttp_server, receiver)
    made, secret = create_webhook(
        store, services.box, WebhookSettings(url=url, batch_size=10), now=now, by=by
    )
    receiver.secrets.append(secret)

    def replica(name: str) -> PushWorkers:
        worker = PushWorker(
            store, services.ledger, services.metrics, services.clock,
            webhook_opener(services.box, allow_private=True), owner=name, lease=0.3,
            idle=0.02, policy=RetryPolicy(first=0.01, cap=0.02),
        )  # fmt: skip
        return PushWorkers(store, worker, interval=0.02)

    a, b = replica("replica-a"), replica("replica-b")
    await a.start_due()
    await asyncio.sleep(0.05)
    task_b = asyncio.create_task(b.run())
    insert_events(services, "acme", 50)
    await until(lambda: len(receiver.delivered()) == 50)
    assert len({m for m, _ in receiver.seen}) == 5  # five batches (see below on repeats)
    await a.stop()  # replica a dies
    insert_events(services, "acme", 20, start=50)
    await until(lambda: len(receiver.delivered()) == 70)
    assert [e["seq"] for e in receiver.delivered()] == list(range(1, 71))
    # Seven batches. At least once: a batch whose send the old owner finished but whose
    # cursor move it did not (its lease ran out under load) goes again with the same id,
    # right after itself, never after a later batch.
    ids = [m for m, _ in receiver.seen]
    runs = [m for i, m in enumerate(ids) if i == 0 or ids[i - 1] != m]
    assert len(runs) == len(set(ids)) == 7
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)
    row = store.database.all(  # type: ignore[attr-defined]
        "SELECT claimed_by FROM destinations WHERE id = ?", (made.id,)
    )
    assert row[0][0] == "replica-b"


async def test_an_erasure_is_never_parked_behind_a_dead_letter(
    api: Api, services: Services, aiohttp_server: Any
) -> None:
    await setup_feed(api)
    insert_events(services, "acme", 1)
    poisoned = subject_id(0)
    receiver = Receiver()
    receiver.refuse = lambda events: any(
        e["subject_id"] == poisoned and e["type"] == "subject.upserted" for e in events
    )
    url = await _receiver(aiohttp_server, receiver)
    dest = await _destination(api, url, batch_size=1)
    receiver.secrets.append(dest["secret"])
    d = f"{T}/destinations/{dest['id']}"
    await until(lambda: services.store.get_destination("acme", dest["id"]).after_seq == 1)
    assert (await api.get(d)).body["dead_letters"] == 1
    erased = await api.post(f"{T}/subjects/erase", {"subject_ids": [poisoned]})
    assert erased.status == 200, erased.body
    await until(lambda: [e["type"] for e in receiver.delivered()] == ["subject.erased"])
    # The dead letter's event went with the erasure: a replay has nothing left to send.
    await api.post(d + "/dead-letters/replay")
    await until(lambda: (services.store.get_destination("acme", dest["id"]).replay_requested_at
                         is None))  # fmt: skip
    assert (await api.get(d)).body["dead_letters"] == 0
    assert [e["type"] for e in receiver.delivered()] == ["subject.erased"]
