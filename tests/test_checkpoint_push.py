"""The checkpoint pusher against a real receiver on 127.0.0.1: every new signed checkpoint
arrives, in order, as signed; transient failures are retried, redirects are not followed,
private addresses are refused unless allowed, the backlog is bounded, failures are counted
without the URL in any label, log line or stored reason."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import generate_latest

from connectors.netguard import is_public
from gateway.delivery.checkpoint_push import CheckpointPusher, PushPolicy, clear, configure
from gateway.ledger.audit import Actor
from gateway.ledger.checkpoint import CheckpointSigner, open_checkpoint
from gateway.ledger.kinds import parse_entry
from gateway.ledger.log import Ledger
from gateway.ledger.record import Acting, record
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.records import Tenant
from gateway.store.sqlite import SqliteStore
from tests.ledger_helpers import T0, Clock, make_entry

FAST = PushPolicy(attempts=3, wait_first=0, wait_max=0, timeout=5)
ADMIN = Actor("acc_0123456789abcdef", "admin")


@dataclass
class Receiver:
    """What the tenant's archive saw; `fail` answers with these statuses first."""

    notes: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0
    fail: list[int] = field(default_factory=list)
    followed_redirect: bool = False

    def app(self) -> web.Application:
        async def take(request: web.Request) -> web.Response:
            self.attempts += 1
            if self.fail:
                return web.Response(status=self.fail.pop(0))
            self.notes.append(await request.text())
            self.headers.append(dict(request.headers))
            return web.Response(status=204)

        async def bounce(request: web.Request) -> web.Response:
            self.attempts += 1
            raise web.HTTPFound("/cp")

        async def elsewhere(request: web.Request) -> web.Response:
            self.followed_redirect = True
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/cp", take)
        app.router.add_post("/moved", bounce)
        app.router.add_get("/cp", elsewhere)
        return app


@dataclass
class World:
    store: SqliteStore
    ledger: Ledger
    key: Ed25519PrivateKey
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)

    @property
    def acting(self) -> Acting:
        return Acting(ADMIN, self.ledger)

    def grow(self, batches: int) -> None:
        for _ in range(batches):
            n = self.ledger.size()
            record(self.store, self.ledger, [make_entry(n)])

    def pusher(
        self,
        *,
        allow_private: bool = True,
        backlog: int = 100,
        pause: float = 0,
        owner: str = "replica-a",
    ) -> CheckpointPusher:
        return CheckpointPusher(
            self.store,
            self.metrics,
            lambda: datetime.now(UTC),
            allow_private=allow_private,
            policy=FAST,
            backlog=backlog,
            pause_after_failure=pause,
            owner=owner,
        )

    def counted(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "sluis_checkpoint_pushes_total", {"tenant": "acme", "outcome": outcome}
        )
        return value or 0.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = SqliteStore(tmp_path / "sluis.db")
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    key = Ed25519PrivateKey.generate()
    ledger = Ledger(store.ledger, "acme", CheckpointSigner(key), clock=Clock())
    yield World(store, ledger, key)
    store.close()


async def _receiver(aiohttp_server: Any) -> tuple[Receiver, str]:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app(), host="127.0.0.1")
    return receiver, str(server.make_url("/cp"))


async def test_new_checkpoints_arrive_in_order_as_signed(world: World, aiohttp_server: Any) -> None:
    receiver, url = await _receiver(aiohttp_server)
    world.grow(3)
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    pusher = world.pusher()
    # A new URL starts from the current checkpoint (the one the configuration appended).
    assert await pusher.push_once() == 1
    first = open_checkpoint(receiver.notes[0], world.key.public_key())
    assert first.size == world.ledger.size() == 4
    assert receiver.headers[0]["Content-Type"] == "text/plain; charset=utf-8"
    assert receiver.headers[0]["Sluis-Tenant"] == "acme"
    assert await pusher.push_once() == 0  # nothing new, nothing sent
    world.grow(2)
    world.ledger.checkpoint(refresh=True)  # an idle log's fresh checkpoint goes out too
    assert await pusher.push_once() == 3
    stored = list(world.store.ledger.iter_checkpoints("acme"))
    assert receiver.notes == [c.note for c in stored[-4:]]
    push = world.store.get_checkpoint_push("acme")
    assert push is not None and push.pushed_seq == stored[-1].seq and push.failure is None
    assert world.counted("delivered") == 4


async def test_transient_failures_are_retried(world: World, aiohttp_server: Any) -> None:
    receiver, url = await _receiver(aiohttp_server)
    world.grow(1)
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    receiver.fail = [503, 429]
    assert await world.pusher().push_once() == 1
    assert receiver.attempts == 3 and len(receiver.notes) == 1
    assert world.counted("failed") == 0


async def test_a_failure_is_counted_stored_and_pushed_again_next_round(
    world: World, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver, url = await _receiver(aiohttp_server)
    url += "?token=customer-secret-9f8e"
    world.grow(1)
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    receiver.fail = [500, 500, 500, 400]
    pusher = world.pusher()
    with caplog.at_level(logging.DEBUG):
        assert await pusher.push_once() == 0  # three attempts, all 500
        assert await pusher.push_once() == 0  # 400: not retried
    push = world.store.get_checkpoint_push("acme")
    assert push is not None and push.failure == "status-400" and push.pushed_seq is None
    assert receiver.attempts == 4 and world.counted("failed") == 2
    assert await pusher.push_once() == 1
    push = world.store.get_checkpoint_push("acme")
    assert push is not None and push.failure is None and push.pushed_seq is not None
    exposed = generate_latest(world.metrics.registry).decode()
    # Our own log lines (the receiver's access log is the receiver's business).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("sluis"))
    assert "status-400" in logged
    for text in (exposed, logged):
        assert "customer-secret" not in text and "127.0.0.1" not in text


async def test_a_failing_receiver_is_left_alone_for_a_while(
    world: World, aiohttp_server: Any
) -> None:
    receiver, url = await _receiver(aiohttp_server)
    world.grow(1)
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    receiver.fail = [404]
    pusher = world.pusher(pause=3600)
    assert await pusher.push_once() == 0
    assert await pusher.push_once() == 0
    assert receiver.attempts == 1 and world.counted("failed") == 1
    # Setting the URL again (the receiver is fixed) starts afresh at once.
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    assert await pusher.push_once() == 1


async def test_redirects_are_not_followed(world: World, aiohttp_server: Any) -> None:
    receiver, url = await _receiver(aiohttp_server)
    world.grow(1)
    moved = url.replace("/cp", "/moved")
    configure(world.store, moved, now=datetime.now(UTC), by=world.acting)
    assert await world.pusher().push_once() == 0
    assert receiver.attempts == 1 and not receiver.followed_redirect and not receiver.notes
    push = world.store.get_checkpoint_push("acme")
    assert push is not None and push.failure == "redirect-302"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254"])
async def test_private_addresses_are_refused_unless_allowed(
    world: World, aiohttp_server: Any, host: str
) -> None:
    receiver, url = await _receiver(aiohttp_server)
    world.grow(1)
    configure(world.store, url.replace("127.0.0.1", host), now=datetime.now(UTC), by=world.acting)
    assert await world.pusher(allow_private=False).push_once() == 0
    assert receiver.attempts == 0
    push = world.store.get_checkpoint_push("acme")
    assert push is not None and push.failure == "refused-address"


async def test_a_name_resolving_inward_is_refused_at_connect(
    world: World, aiohttp_server: Any
) -> None:
    """A DNS name passes the URL check; what it resolves to is judged before connecting."""
    name = socket.gethostname().lower()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80)}
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if not addresses or any(is_public(a) for a in addresses):
        pytest.skip("this machine's name does not resolve to a private address")
    receiver, url = await _receiver(aiohttp_server)
    world.grow(1)
    configure(world.store, url.replace("127.0.0.1", name), now=datetime.now(UTC), by=world.acting)
    assert await world.pusher(allow_private=False).push_once() == 0
    push = world.store.get_checkpoint_push("acme")
    assert push is not None and push.failure == "refused-address"
    assert receiver.attempts == 0


async def test_the_backlog_is_bounded(world: World, aiohttp_server: Any) -> None:
    receiver, url = await _receiver(aiohttp_server)
    world.grow(1)
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    pusher = world.pusher(backlog=3)
    assert await pusher.push_once() == 1
    world.grow(7)
    assert await pusher.push_once() == 3
    stored = list(world.store.ledger.iter_checkpoints("acme"))
    assert receiver.notes[1:] == [c.note for c in stored[-3:]]
    assert world.counted("skipped") == 4


async def test_setting_and_clearing_is_audited_without_the_url(world: World) -> None:
    url = "https://archive.acme.example/sluis?key=abc"
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    assert clear(world.store, now=datetime.now(UTC), by=world.acting) is True
    assert clear(world.store, now=datetime.now(UTC), by=world.acting) is False
    bodies = [body for _, body, _ in world.store.ledger.iter_entries("acme")]
    assert len(bodies) == 2
    entries = [parse_entry(b) for b in bodies]
    assert [(e.action, e.actor, e.target) for e in entries] == [  # type: ignore[union-attr]
        ("checkpoint_push.configured", ADMIN.id, None),
        ("checkpoint_push.cleared", ADMIN.id, None),
    ]
    assert not any(b"archive" in b or b"key=abc" in b for b in bodies)
    assert world.store.get_checkpoint_push("acme") is None


async def test_of_several_replicas_one_pushes_each_note(world: World, aiohttp_server: Any) -> None:
    receiver, url = await _receiver(aiohttp_server)
    configure(world.store, url, now=datetime.now(UTC), by=world.acting)
    a, b = world.pusher(owner="replica-a"), world.pusher(owner="replica-b")
    assert await a.push_once() == 1
    world.grow(2)
    assert await b.push_once() == 0  # replica-a holds the tenant's pushes
    assert await a.push_once() == 2
    assert len(receiver.notes) == len(set(receiver.notes)) == 3
