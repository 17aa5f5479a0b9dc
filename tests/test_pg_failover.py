"""PostgreSQL going away under a running gateway: its connections killed (a restart, a
failover), or every pooled connection busy. The store reconnects by itself; what was in
flight fails as `StoreUnavailable` with nothing written; the API answers 503 with
Retry-After, never a 500."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.api.app import make_app
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store import postgres_db
from gateway.store.postgres import PostgresStore
from gateway.store.protocols import StoreUnavailable
from gateway.store.records import Tenant
from tests.pg import database_url, fresh_schema

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _kill_connections(schema: str) -> int:
    """Terminate every server process of the suite's database but this one's: what a
    server restart or a failover does to the gateway's pool."""
    with psycopg.connect(database_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name <> 'keep'"
        ).fetchall()
    return len(rows)


def test_the_pool_reconnects_after_its_connections_are_killed() -> None:
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=3)
        try:
            store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
            assert _kill_connections(schema) >= 1
            assert [t.id for t in store.list_tenants()] == ["acme"]  # a fresh connection
            store.create_tenant(Tenant("beta", "Beta", T0, b"k"))
        finally:
            store.close()


def test_connections_dropped_while_idle_are_replaced_where_nothing_can_run_twice() -> None:
    """Borrowed connections are not checked when they were in use a moment ago: one the
    server dropped meanwhile is found when used. A read or a transaction's BEGIN is sent
    again on a sound connection; a single write outside a transaction may have run, so it
    is reported (StoreUnavailable) and not repeated, and the pool is sound after it."""
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=3)
        try:
            store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
            _kill_connections(schema)
            with store.transaction():  # BEGIN on a dropped connection, then on a sound one
                store.create_tenant(Tenant("beta", "Beta", T0, b"k"))
            _kill_connections(schema)
            with pytest.raises(StoreUnavailable):
                store.create_tenant(Tenant("gamma", "Gamma", T0, b"k"))
            assert [t.id for t in store.list_tenants()] == ["acme", "beta"]
            store.create_tenant(Tenant("gamma", "Gamma", T0, b"k"))
            assert len(store.list_tenants()) == 3
        finally:
            store.close()


def test_a_connection_idle_for_a_while_is_checked_before_it_is_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the idle limit (here: at once) the pool checks a connection before handing it
    out, so even a lone write after a restart finds a sound one."""
    monkeypatch.setattr(postgres_db, "IDLE_CHECK_SECONDS", 0.0)
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=3)
        try:
            store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
            _kill_connections(schema)
            store.create_tenant(Tenant("beta", "Beta", T0, b"k"))
            assert len(store.list_tenants()) == 2
        finally:
            store.close()


def test_a_transaction_cut_off_writes_nothing_and_says_unavailable() -> None:
    with fresh_schema() as schema:
        store = PostgresStore(database_url(schema), pool_size=3)
        try:

            def cut_off() -> None:
                with store.transaction():
                    store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
                    _kill_connections(schema)
                    store.create_tenant(Tenant("beta", "Beta", T0, b"k"))

            with pytest.raises(StoreUnavailable):
                cut_off()
            assert store.list_tenants() == []
        finally:
            store.close()


async def test_the_api_answers_503_while_no_connection_is_free(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    with fresh_schema() as schema:
        settings = Settings(
            data_dir=tmp_path / "data", admin_token="a" * 32,
            database_url=database_url(schema), database_pool_size=1, scheduler=False,
        )  # fmt: skip
        services = Services.open(settings)
        try:
            client = await aiohttp_client(make_app(services))
            assert (await client.get("/readyz")).status == 200
            held, release = threading.Event(), threading.Event()

            def hold() -> None:  # the pool's one connection, busy in a long transaction
                with services.store.transaction():
                    services.store.list_tenants()
                    held.set()
                    release.wait(30)

            holder = threading.Thread(target=hold)
            holder.start()
            held.wait(10)
            try:
                response = await client.get(
                    "/admin/v1/operators", headers={"Authorization": "Bearer " + "a" * 32}
                )
                body = await response.json()
                assert response.status == 503, body
                assert response.headers["Retry-After"] == "5"
                assert body["type"].endswith("store-unavailable")
            finally:
                release.set()
                holder.join()
            assert (await client.get("/readyz")).status == 200
        finally:
            services.close()
