"""Breach scope from a real ledger on every ledger store: what moved in a window, found by
searching the signed checkpoints and reading only that part of the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger import entry as entries
from gateway.ledger.audit import SYSTEM, audit
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.lifecycle.breach import BreachScope, ReportError, breach_scope
from gateway.store.protocols import LedgerStore
from tests.ledger_helpers import ALL_FIELDS
from tests.store.conftest import ledger_store  # noqa: F401 - the fixture, on every store

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
DIGEST = "sha256:" + "cd" * 32


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _sid(n: int) -> str:
    return f"{n:032x}"


def _inbound(at: datetime, connector: str, ids: range) -> entries.TransferEntry:
    return entries.inbound(
        time=at, tenant="acme", connector=connector, instruction_id=f"ins-{connector}",
        mapping_digest=DIGEST, subject_ids=[_sid(n) for n in ids], fields=ALL_FIELDS,
        records=len(ids), quarantined=0, dropped={"BSN": len(ids)}, run_id="run-1",
    )  # fmt: skip


def _outbound(at: datetime, connector: str, ids: range) -> entries.TransferEntry:
    fields = {"email": "user.contact.email", "first_name": "user.name.first"}
    return entries.outbound(
        time=at, tenant="acme", connector=connector, instruction_id=f"ins-{connector}",
        mapping_digest=DIGEST, subject_ids=[_sid(n) for n in ids], fields=fields,
        destination="feed:lms",
    )  # fmt: skip


def _log(store: LedgerStore) -> Ledger:
    """An hour of a tenant's log, one batch every 10 minutes (08:00 .. 09:00):
    afas pages in, feed pages out, a refusal at 08:30 and an admin action at 08:20."""
    clock = Clock()
    ledger = Ledger(store, "acme", CheckpointSigner(Ed25519PrivateKey.generate()), clock=clock)
    for step in range(7):
        clock.now = T0 + timedelta(minutes=10 * step)
        at, ids = clock.now, range(step * 10, step * 10 + 10)
        batch: list[entries.TransferEntry] = [
            _inbound(at, "afas", ids),
            _outbound(at, "afas", ids),
            _inbound(at, "hubspot", range(500 + step, 501 + step)),
        ]
        if step == 3:
            batch.append(
                entries.refused(time=at, tenant="acme", connector="afas",
                                instruction_id="ins-afas", records=4, destination="feed:lms")
            )  # fmt: skip
        ledger.append(batch)
        if step == 2:
            ledger.append([audit("connector.paused", time=at, tenant="acme", actor=SYSTEM,
                                 connector="afas")])  # fmt: skip
    return ledger


def test_a_window_gives_its_subjects_categories_sources_and_authorisations(
    ledger_store: LedgerStore,  # noqa: F811
) -> None:
    _log(ledger_store)
    start, end = T0 + timedelta(minutes=15), T0 + timedelta(minutes=35)
    scope = breach_scope(ledger_store, "acme", start, end, skew=timedelta(0))
    # Steps 2 (08:20) and 3 (08:30) are inside; 08:10 and 08:40 are not.
    assert scope.subject_ids == {_sid(n) for n in range(20, 40)} | {_sid(502), _sid(503)}
    assert (scope.records_in, scope.records_out, scope.records_refused) == (22, 20, 4)
    assert (scope.transfers, scope.refusals) == (6, 1)
    assert scope.sources == {"afas", "hubspot"}
    assert scope.destinations == {"feed:lms"}
    assert scope.categories == sorted(set(ALL_FIELDS.values()))
    assert [(a.instruction_id, a.connector, a.transfers, a.records)
            for a in scope.authorisation_list()] == [
        ("ins-afas", "afas", 4, 40), ("ins-hubspot", "hubspot", 2, 2),
    ]  # fmt: skip
    assert scope.first_transfer_at == T0 + timedelta(minutes=20)
    assert scope.last_transfer_at == T0 + timedelta(minutes=30)
    # Only the window's part of the log was read: from the end of the 08:10 batch to the
    # end of the 08:30 one (entries 6 .. 16 of 23).
    assert (scope.first_index, scope.stop_index, scope.log_size) == (6, 17, 23)
    assert scope.entries_read == 11
    afas = breach_scope(ledger_store, "acme", start, end, connector="afas")
    assert afas.sources == {"afas"} and _sid(502) not in afas.subject_ids


def test_the_search_reads_only_the_window_and_its_skew(
    ledger_store: LedgerStore,  # noqa: F811
) -> None:
    _log(ledger_store)
    start = T0 + timedelta(minutes=15)
    narrow = breach_scope(
        ledger_store, "acme", start, start + timedelta(minutes=10), skew=timedelta(0)
    )
    # The 08:20 batch, its audit entry and the 08:30 batch (the first checkpoint at or
    # after the window's end closes it).
    assert (narrow.first_index, narrow.stop_index) == (6, 14)
    assert narrow.entries_read == 8 and narrow.transfers == 3
    wide = breach_scope(ledger_store, "acme", start, start + timedelta(minutes=10))
    assert wide.stop_index == 17 and wide.subject_ids == narrow.subject_ids
    everything = breach_scope(ledger_store, "acme", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert (everything.first_index, everything.stop_index) == (0, 23)
    assert len(everything.subject_ids) == 70 + 7
    later = breach_scope(ledger_store, "acme", T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    assert later.entries_read == 0 and not later.subject_ids


def test_an_entry_stamped_before_its_batch_is_still_found(
    ledger_store: LedgerStore,  # noqa: F811
) -> None:
    """A page stamped at 08:05 whose commit (or whose replica's clock) made it land in
    the 08:40 batch: inside the skew, found; its own time decides whether it counts."""
    ledger = _log(ledger_store)
    late = _inbound(T0 + timedelta(minutes=5), "afas", range(900, 903))
    ledger.append([late])
    window = (T0, T0 + timedelta(minutes=8))
    found = breach_scope(ledger_store, "acme", *window, skew=timedelta(hours=1))
    assert {_sid(900), _sid(901), _sid(902)} <= found.subject_ids
    assert found.subject_ids >= {_sid(n) for n in range(0, 10)}
    missed = breach_scope(ledger_store, "acme", *window, skew=timedelta(0))
    assert _sid(900) not in missed.subject_ids  # appended after 09:00: beyond a zero skew


def test_bad_windows_are_refused_and_an_empty_log_has_an_empty_scope(
    ledger_store: LedgerStore,  # noqa: F811
) -> None:
    with pytest.raises(ReportError, match="end after"):
        breach_scope(ledger_store, "acme", T0, T0)
    with pytest.raises(ReportError, match="time zone"):
        breach_scope(ledger_store, "acme", T0.replace(tzinfo=None), T0 + timedelta(hours=1))
    scope = breach_scope(ledger_store, "nobody", T0, T0 + timedelta(hours=1))
    assert isinstance(scope, BreachScope) and scope.log_size == 0 and not scope.subject_ids
