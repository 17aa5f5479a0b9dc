""" "Connect with <vendor>" behind a balancer: begun on one replica, finished on another (the
sealed state travels with the browser; replicas share the store and the master key only),
and finished once, whichever replica a replayed callback reaches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from connectors.emulator_kit import AUTHORIZATION
from connectors.hubspot.emulator import make_app as hubspot_emulator
from gateway.api.app import make_app
from gateway.console.views_connect import STATE_COOKIE
from gateway.runtime.services import Services
from tests.console.conftest import Clock, Console, Person, World, enrol, make_tenants
from tests.console.test_connect import CRM, Vendor, add_crm, at_vendor, begin, stored
from tests.console.test_oidc_replicas import _open
from tests.pg import database_url, fresh_schema


@dataclass
class Pair:
    a: Services
    b: Services
    admin: Person
    world: World


@pytest.fixture(params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    clock = Clock()
    with ExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = database_url(stack.enter_context(fresh_schema()))
        a = _open(tmp_path / "a", url, clock)
        stack.callback(a.close)
        b = _open(tmp_path / "a" if url is None else tmp_path / "b", url, clock)
        stack.callback(b.close)
        make_tenants(a, clock, "acme")
        admin = enrol(a, clock, role="admin", tenant="acme", email="admin@acme.example")
        # `add_crm` and `begin` need only the admin of a world.
        world = World(admin, admin, admin, admin, admin)
        yield Pair(a, b, admin, world)


async def test_a_connect_begun_on_one_replica_is_finished_on_another_once(
    aiohttp_client: Any, aiohttp_server: Any, pair: Pair
) -> None:
    app = hubspot_emulator(people=5)
    server = await aiohttp_server(app, host="127.0.0.1")
    vendor = Vendor(str(server.make_url("")).rstrip("/"), app[AUTHORIZATION])
    add_crm(pair.a, pair.world, vendor)
    on_a = Console(await aiohttp_client(make_app(pair.a)))
    on_b = Console(await aiohttp_client(make_app(pair.b)))
    await on_a.sign_in(pair.admin)
    target, sealed = await begin(on_a, pair.world)
    back = urlsplit(await at_vendor(target))
    callback = f"{back.path}?{back.query}"

    on_b.client.session.cookie_jar.update_cookies({STATE_COOKIE: sealed})
    done = await on_b.get(callback)
    assert done.status == 200, done.html
    assert "refresh_token" in stored(pair.a) and stored(pair.a) == stored(pair.b)
    page = await on_a.get(CRM)
    assert "Connected: HubSpot gave Sluis access" in page.html
    for replica in (on_a, on_b):
        replica.client.session.cookie_jar.update_cookies({STATE_COOKIE: sealed})
        replayed = await replica.get(callback)
        assert replayed.status == 409 and "finished already" in replayed.html
    assert len(vendor.auth.token_requests) == 1
