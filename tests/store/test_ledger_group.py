"""Group commit (`Ledger.append_grouped`) on every ledger store: appends that arrive together
from many threads are committed together, each caller returns only once its own entries
are in, every entry gets one index, and the log verifies."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.group import GroupCommit
from gateway.ledger.log import Ledger
from gateway.store.protocols import LedgerStore, StoreUnavailable
from tests.ledger_helpers import make_entry

THREADS = 8
APPENDS = 15


def test_threads_appending_grouped_get_every_entry_in_once(ledger_store: LedgerStore) -> None:
    key = Ed25519PrivateKey.generate()
    ledger = Ledger(ledger_store, "acme", CheckpointSigner(key))
    given: list[list[int]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def write(worker: int) -> None:
        start.wait()
        try:
            for i in range(APPENDS):
                n = worker * 1000 + i
                given.append(ledger.append_grouped([make_entry(n), make_entry(n + 500)]))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    total = THREADS * APPENDS * 2
    assert sorted(i for pair in given for i in pair) == list(range(total))
    assert all(b == a + 1 for a, b in given)  # a caller's entries stay together, in order
    report = ledger.verify(key.public_key())
    assert report.ok, report.reason
    assert report.entries == total
    # Grouped: fewer checkpoints than callers whenever two arrived together, never more.
    assert 1 <= report.checkpoints <= THREADS * APPENDS
    assert ledger.append_grouped([]) == []


def test_every_caller_of_a_failed_group_gets_its_error_and_the_next_group_commits() -> None:
    release = threading.Event()
    committed: list[int] = []
    calls = 0

    def commit(items: Sequence[int]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(5)  # the others queue behind this one, as one group
            return 0
        if calls == 2:
            raise StoreUnavailable("the database is busy; try again")
        committed.extend(items)
        return 100

    group: GroupCommit[int] = GroupCommit(commit)
    results: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            results[n] = group.submit([n])
        except StoreUnavailable as exc:
            results[n] = exc

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    while calls == 0:
        threading.Event().wait(0.001)
    queued = [threading.Thread(target=submit, args=(n,)) for n in (1, 2, 3)]
    for t in queued:
        t.start()
    while len(group._queue) < 3:
        threading.Event().wait(0.001)
    release.set()
    for t in [first, *queued]:
        t.join(5)
    assert results[0] == 0
    assert all(isinstance(results[n], StoreUnavailable) for n in (1, 2, 3))
    assert group.submit([7, 8]) == 100 and committed == [7, 8]


def test_an_entry_of_another_tenant_is_refused_before_anything_is_queued(
    ledger_store: LedgerStore,
) -> None:
    ledger = Ledger(ledger_store, "acme", CheckpointSigner(Ed25519PrivateKey.generate()))
    with pytest.raises(Exception, match="another tenant"):
        ledger.append_grouped([make_entry(1, tenant="beta")])
    assert ledger.size() == 0


def test_pages_queued_without_waiting_are_committed_by_the_committers_each_once(
    ledger_store: LedgerStore,
) -> None:
    """`append_grouped_later`: a caller's thread is free once its entries are queued (the
    feed route waits in its event loop); every future is set once its entries are in, each
    entry gets one index, a caller's entries stay together, and the log verifies."""
    key = Ed25519PrivateKey.generate()
    ledger = Ledger(ledger_store, "acme", CheckpointSigner(key))
    futures: list[Future[int]] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def write(worker: int) -> None:
        start.wait()
        for i in range(APPENDS):
            n = worker * 1000 + i
            pending = ledger.append_grouped_later([make_entry(n), make_entry(n + 500)])
            assert pending is not None
            with lock:
                futures.append(pending)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts = [f.result(timeout=10) for f in futures]
    total = THREADS * APPENDS * 2
    assert sorted(i for s in starts for i in (s, s + 1)) == list(range(total))
    report = ledger.verify(key.public_key())
    assert report.ok, report.reason
    assert report.entries == total
    assert ledger.append_grouped_later([]) is None


def test_later_callers_share_errors_and_a_waiting_caller_leads_in_its_thread() -> None:
    """Callers that queued without waiting get their group's error, like `submit`'s, from a
    committer thread; a `submit` caller first in the queue leads the next group in its own
    thread; a lone `submit_later` on an idle group commits in the caller's thread."""
    gates = [threading.Event() for _ in range(4)]
    ran: list[tuple[str, list[int]]] = []

    def commit(items: Sequence[int]) -> int:
        call = len(ran)
        ran.append((threading.current_thread().name, list(items)))
        if call < len(gates):
            gates[call].wait(5)
        if call == 1:
            raise StoreUnavailable("the database is busy; try again")
        return 100 * call

    def queued(n: int) -> None:
        while len(group._queue) < n:
            threading.Event().wait(0.001)

    group: GroupCommit[int] = GroupCommit(commit)
    lead = threading.Thread(target=group.submit_later, args=([0],), name="page-0")
    lead.start()
    queued(0)
    while not ran:
        threading.Event().wait(0.001)
    later = [group.submit_later([n]) for n in (1, 2)]
    assert not any(f.done() for f in later)  # queued, and this thread is free
    gates[0].set()
    lead.join(5)
    gates[1].set()
    for f in later:
        with pytest.raises(StoreUnavailable):
            f.result(timeout=5)
    assert ran[0] == ("page-0", [0])
    assert ran[1][0].startswith("sluis-group-commit") and ran[1][1] == [1, 2]

    # A group running; a waiting caller queues first, a later one after it.
    lead = threading.Thread(target=group.submit_later, args=([3],), name="page-3")
    lead.start()
    while len(ran) < 3:
        threading.Event().wait(0.001)
    got: dict[str, int] = {}
    waiter = threading.Thread(target=lambda: got.update(start=group.submit([4])), name="page-4")
    waiter.start()
    queued(1)
    after = group.submit_later([5])
    gates[2].set()
    gates[3].set()
    lead.join(5)
    waiter.join(5)
    assert after.result(timeout=5) == 301 and got == {"start": 300}
    assert ran[3] == ("page-4", [4, 5])
    alone = group.submit_later([6])
    assert alone.done() and alone.result() == 400
    assert ran[4] == (threading.current_thread().name, [6])
