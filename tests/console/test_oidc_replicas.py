"""Sign-in through a tenant's identity provider with two replicas behind a balancer: the
login begun on one is finished by the other, once, within ten minutes, and what the store
keeps of it opens nobody's login.

Two `Services` with their own apps on one store are two replicas (one SQLite file, or one
PostgreSQL schema), with the same master key as replicas must have. The browser's
`sluis_oidc` cookie goes with it to whichever replica the balancer picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from gateway.accounts.oidc import code_challenge, state_hash
from gateway.accounts.principal import Principal
from gateway.api.app import make_app
from gateway.console.views_oidc import STATE_COOKIE
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.gateway_sql import SqlStore
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY
from tests.console.conftest import Clock, Console, Page, Person, enrol, make_tenants
from tests.console.test_oidc import at_provider, begin
from tests.pg import database_url, fresh_schema


@dataclass
class Pair:
    a: Services
    b: Services
    clock: Clock
    viewer: Person


def _open(data_dir: Path, url: str | None, clock: Clock) -> Services:
    settings = Settings(
        data_dir=data_dir, admin_token=ADMIN_TOKEN, master_key=MASTER_KEY, scheduler=False,
        allow_private_sources=True, database_url=url,
    )  # fmt: skip
    return Services.open(settings, clock=clock)


@pytest.fixture(params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest, tmp_path: Path, oidc_issuer: str) -> Iterator[Pair]:
    clock = Clock()
    with ExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = database_url(stack.enter_context(fresh_schema()))
        a = _open(tmp_path / "a", url, clock)
        stack.callback(a.close)
        # On SQLite the replicas share the file (one process by construction, but the
        # store is all they share); on PostgreSQL the schema.
        b = _open(tmp_path / "a" if url is None else tmp_path / "b", url, clock)
        stack.callback(b.close)
        make_tenants(a, clock, "acme")
        admin = enrol(a, clock, role="admin", tenant="acme", email="admin@acme.example")
        viewer = enrol(a, clock, role="viewer", tenant="acme", email="view@acme.example")
        a.accounts.configure_oidc(
            Principal(admin.account_id, "admin", "acme", "test"), "acme",
            issuer=oidc_issuer, client_id="sluis-acme", client_secret="s3cret",
        )  # fmt: skip
        yield Pair(a, b, clock, viewer)


async def _consoles(aiohttp_client: Any, pair: Pair) -> tuple[Console, Console]:
    return (
        Console(await aiohttp_client(make_app(pair.a))),
        Console(await aiohttp_client(make_app(pair.b))),
    )


async def _callback(console: Console, back: str, state: str) -> Page:
    """The provider's redirect, followed by a browser holding the login's cookie, through
    whichever replica the balancer chose."""
    console.client.session.cookie_jar.update_cookies({STATE_COOKIE: state})
    parts = urlsplit(back)
    return await console.get(f"{parts.path}?{parts.query}")


def _pending_rows(services: Services) -> list[tuple[Any, ...]]:
    store = services.store
    assert isinstance(store, SqlStore)
    return [tuple(r) for r in store.database.all("SELECT * FROM oidc_pending")]


async def test_a_login_begun_on_one_replica_is_finished_on_another_once(
    aiohttp_client: Any, pair: Pair, oidc_issuer: str
) -> None:
    on_a, on_b = await _consoles(aiohttp_client, pair)
    to_provider = await begin(on_a)
    state = parse_qs(urlsplit(to_provider).query)["state"][0]
    back = await at_provider(to_provider, oidc_issuer, "ann", pair.viewer.email)

    done = await _callback(on_b, back, state)
    assert done.status == 200 and 'http-equiv="refresh"' in done.html
    home = await on_b.get("/console/t/acme")
    assert home.status == 200 and "Signed in as viewer" in home.html
    assert _pending_rows(pair.a) == []

    # The same callback again, on either replica: the login was used.
    for replica in (on_a, on_b):
        replayed = await _callback(replica, back, state)
        assert replayed.status == 400 and "did not work or expired" in replayed.html


async def test_a_login_finished_after_ten_minutes_fails_and_is_purged(
    aiohttp_client: Any, pair: Pair, oidc_issuer: str
) -> None:
    on_a, on_b = await _consoles(aiohttp_client, pair)
    to_provider = await begin(on_a)
    state = parse_qs(urlsplit(to_provider).query)["state"][0]
    back = await at_provider(to_provider, oidc_issuer, "ann", pair.viewer.email)
    pair.clock.offset += timedelta(minutes=10, seconds=1)
    late = await _callback(on_b, back, state)
    assert late.status == 400 and "did not work or expired" in late.html
    assert len(_pending_rows(pair.b)) == 1
    await begin(on_b)  # any login begun anywhere purges the expired ones
    assert [r[1] for r in _pending_rows(pair.a)] == ["acme"]
    assert state_hash(state) not in [bytes(r[0]) for r in _pending_rows(pair.a)]


async def test_the_store_keeps_no_state_nonce_or_verifier_in_clear(
    aiohttp_client: Any, pair: Pair
) -> None:
    on_a, _ = await _consoles(aiohttp_client, pair)
    to_provider = await begin(on_a)
    query = parse_qs(urlsplit(to_provider).query)
    state, nonce = query["state"][0], query["nonce"][0]
    challenge, redirect = query["code_challenge"][0], query["redirect_uri"][0]
    (row,) = _pending_rows(pair.a)
    assert bytes(row[0]) == state_hash(state)
    flat = b"".join(v if isinstance(v, bytes | memoryview) else str(v).encode() for v in row)
    for secret in (state, nonce, redirect, "127.0.0.1"):
        assert secret.encode() not in flat
    # The verifier is there, sealed: opened with the master key it matches the challenge.
    opened = pair.b.box.open(bytes(row[2]), f"oidc-pending:acme:{state_hash(state).hex()}")
    verifier = orjson.loads(opened)["verifier"]
    assert code_challenge(verifier) == challenge
    assert verifier.encode() not in flat
