"""The store contract for checkpoint paging and checkpoint push settings, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.protocols import LedgerStore
from gateway.store.records import NotFound, Store, Tenant

T0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
URL = "https://audit.acme.example/checkpoints"


def _grow(store: LedgerStore, tenant: str, n: int) -> None:
    for size in range(1, n + 1):
        store.append(
            tenant,
            size - 1,
            entries=[(b"{}", bytes([size]) * 32)],
            nodes=[],
            frontier=[bytes([size]) * 32],
            checkpoint_note=f"{tenant} cp {size}",
        )


def test_checkpoints_after_pages_oldest_first(ledger_store: LedgerStore) -> None:
    _grow(ledger_store, "acme", 5)
    _grow(ledger_store, "beta", 2)
    ledger_store.add_checkpoint("acme", 5, "acme cp 5 again")
    page = ledger_store.checkpoints_after("acme", 0, 2)
    assert [(c.seq, c.size, c.note) for c in page] == [(1, 1, "acme cp 1"), (2, 2, "acme cp 2")]
    rest = ledger_store.checkpoints_after("acme", page[-1].seq, 100)
    assert [c.size for c in rest] == [3, 4, 5, 5]
    assert rest[-1].note == "acme cp 5 again"
    assert ledger_store.checkpoints_after("acme", rest[-1].seq, 100) == []
    assert ledger_store.checkpoints_after("acme", -(10**18), 1)[0].seq == 1
    assert ledger_store.checkpoints_after("acme", 0, 0) == []
    assert ledger_store.checkpoints_after("nobody", 0, 10) == []


@pytest.fixture
def tenants(store: Store) -> Store:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"sealed"))
    return store


def test_a_push_url_is_set_read_replaced_and_cleared(tenants: Store) -> None:
    s = tenants
    assert s.get_checkpoint_push("acme") is None
    assert s.list_checkpoint_pushes() == []
    made = s.set_checkpoint_push("acme", URL, T0)
    assert (made.tenant, made.url, made.configured_at, made.pushed_seq) == ("acme", URL, T0, None)
    assert s.get_checkpoint_push("acme") == made
    s.set_checkpoint_push("beta", URL + "/beta", T0)
    assert [p.tenant for p in s.list_checkpoint_pushes()] == ["acme", "beta"]
    s.checkpoint_pushed("acme", URL, 3, T0 + timedelta(seconds=1))
    replaced = s.set_checkpoint_push("acme", URL + "/v2", T0 + timedelta(seconds=2))
    assert replaced.pushed_seq is None and s.get_checkpoint_push("acme") == replaced
    assert s.clear_checkpoint_push("acme") is True
    assert s.clear_checkpoint_push("acme") is False
    assert s.get_checkpoint_push("acme") is None
    with pytest.raises(NotFound):
        s.set_checkpoint_push("nobody", URL, T0)


def test_push_progress_only_moves_forward_and_only_for_the_current_url(tenants: Store) -> None:
    s = tenants
    s.set_checkpoint_push("acme", URL, T0)
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    s.checkpoint_push_failed("acme", URL, "status-503", t1)
    failed = s.get_checkpoint_push("acme")
    assert failed is not None and (failed.failed_at, failed.failure) == (t1, "status-503")
    s.checkpoint_pushed("acme", URL, 4, t2)
    done = s.get_checkpoint_push("acme")
    assert done is not None and (done.pushed_seq, done.pushed_at) == (4, t2)
    assert done.failure is None and done.failed_at is None
    s.checkpoint_pushed("acme", URL, 2, t2)  # an older push finishing late
    s.checkpoint_pushed("acme", "https://old.example/", 9, t2)  # a replaced URL
    s.checkpoint_push_failed("acme", "https://old.example/", "network", t2)
    after = s.get_checkpoint_push("acme")
    assert after is not None and after.pushed_seq == 4 and after.failure is None


def test_one_process_holds_a_tenants_pushes_until_its_claim_runs_out(store: Store) -> None:
    store.create_tenant(Tenant("acme", "Acme", T0, b"k"))
    minute = timedelta(minutes=1)
    assert not store.claim_checkpoint_push("acme", URL, "a", T0 + minute, T0)  # none set
    store.set_checkpoint_push("acme", URL, T0)
    assert store.claim_checkpoint_push("acme", URL, "a", T0 + minute, T0)
    assert not store.claim_checkpoint_push("acme", URL, "b", T0 + minute, T0)
    assert store.claim_checkpoint_push("acme", URL, "a", T0 + 2 * minute, T0 + minute)
    assert not store.claim_checkpoint_push("acme", "https://other.example/", "a", T0, T0)
    # The holder stopped renewing: another process takes over once the claim ran out.
    assert store.claim_checkpoint_push("acme", URL, "b", T0 + 4 * minute, T0 + 3 * minute)
    assert not store.claim_checkpoint_push("acme", URL, "a", T0 + 4 * minute, T0 + 3 * minute)
