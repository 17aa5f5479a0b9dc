"""Breach scope: what a tenant's ledger says moved in a time window (GDPR Art. 33(2), 33(3)(a)).

When a processor becomes aware of a breach ("the AFAS token of tenant T leaked at 14:00")
it must tell the controller without undue delay, and the controller's 72 hours depend on
how fast the scope is known: which data subjects (a count, and the keyed ids the controller
can resolve in its own systems), which categories of personal data, how many records, from
which sources to which destinations, under which authorisations. All of it is in the
tenant's ledger; nothing else is consulted and no personal data value is in the answer.

Finding the window without reading the whole log: entries are appended in batches, each
with a signed checkpoint whose time never goes backwards (`Ledger._next_time`), and an
entry's own time (stamped when its page was made, on the clock of the replica that made
it) is never later than its batch's checkpoint. So every entry of the window lies after the
last checkpoint older than the window's start: found by binary search over the
checkpoints, exactly. Its end is searched the same way, widened by `skew` for entries
stamped on a clock behind the others (or held by a slow commit); every entry read is then
kept only if its own time is inside the window. A 1,000,000-entry log is answered by
reading only the window's entries (`bench/bench_breach.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from gateway.ledger.checkpoint import CheckpointError, read_unverified
from gateway.ledger.entry import TransferEntry, blob_ids
from gateway.ledger.kinds import is_audit_body, parse_entry
from gateway.store.protocols import LedgerReader
from gateway.store.records import StoredCheckpoint

#: How far an entry's own time may trail the checkpoint of the batch it was appended in.
DEFAULT_SKEW: Final = timedelta(minutes=15)


class ReportError(Exception):
    """A report that cannot be made as asked (a bad window, an unreadable ledger)."""


@dataclass(frozen=True, slots=True)
class Authorisation:
    """One instruction (and the mapping it approved) data moved under in the window."""

    instruction_id: str
    mapping_digest: str | None
    connector: str
    transfers: int
    records: int


@dataclass(slots=True)
class BreachScope:
    """What moved for one tenant in `[start, end)`, by keyed ids, names and counts."""

    tenant: str
    start: datetime
    end: datetime
    connector: str | None
    #: Distinct keyed subject ids of every transfer that moved data (inbound or outbound).
    subject_ids: set[str] = field(default_factory=set)
    #: Records received from sources, delivered to destinations, and held back (refused).
    records_in: int = 0
    records_out: int = 0
    records_refused: int = 0
    transfers: int = 0
    refusals: int = 0
    #: Egress fields and their data categories that moved.
    fields: dict[str, str] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    destinations: set[str] = field(default_factory=set)
    authorisations: dict[tuple[str, str | None, str], list[int]] = field(default_factory=dict)
    first_transfer_at: datetime | None = None
    last_transfer_at: datetime | None = None
    #: The part of the log read: entries `[first_index, stop_index)`, of a log of `log_size`.
    first_index: int = 0
    stop_index: int = 0
    log_size: int = 0
    entries_read: int = 0
    #: Digests of the stored subject lists the transfers named, read once at the end.
    lists: set[bytes] = field(default_factory=set)

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.fields.values()))

    def authorisation_list(self) -> list[Authorisation]:
        return [
            Authorisation(ins, digest, connector, counts[0], counts[1])
            for (ins, digest, connector), counts in sorted(
                self.authorisations.items(), key=lambda kv: (kv[0][2], kv[0][0])
            )
        ]

    def take(self, entry: TransferEntry) -> None:
        if entry.direction == "refused":
            self.refusals += 1
            self.records_refused += entry.counts.records
            return
        self.transfers += 1
        if entry.subjects is None:
            self.subject_ids.update(entry.subject_ids or ())
        elif entry.subjects.count:
            self.lists.add(entry.subjects.raw_digest)
        for name, category in entry.fields.items():
            self.fields[name] = category
        if entry.direction == "inbound":
            self.records_in += entry.counts.records
            self.sources.add(entry.connector)
        else:
            self.records_out += entry.counts.records
            if entry.destination is not None:
                self.destinations.add(entry.destination)
        if entry.instruction_id is not None:
            key = (entry.instruction_id, entry.mapping_digest, entry.connector)
            counts = self.authorisations.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += entry.counts.records
        if self.first_transfer_at is None or entry.time < self.first_transfer_at:
            self.first_transfer_at = entry.time
        if self.last_transfer_at is None or entry.time > self.last_transfer_at:
            self.last_transfer_at = entry.time


def breach_scope(
    reader: LedgerReader,
    tenant: str,
    start: datetime,
    end: datetime,
    *,
    connector: str | None = None,
    skew: timedelta = DEFAULT_SKEW,
) -> BreachScope:
    """The scope of `[start, end)` in `tenant`'s log (optionally one connector's part)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ReportError("the window's times must carry a time zone (e.g. 2026-11-30T14:00Z)")
    if end <= start:
        raise ReportError("the window must end after it starts")
    scope = BreachScope(tenant, start, end, connector)
    head = reader.head(tenant)
    if head is None:
        return scope
    scope.log_size = head.size
    probe = _Checkpoints(reader, tenant)
    below = probe.last_before(start)
    above = probe.first_at_or_after(end + skew)
    scope.first_index = below.size if below is not None else 0
    scope.stop_index = above.size if above is not None else head.size
    for entry in _entries(reader, tenant, scope.first_index, scope.stop_index, scope):
        if not isinstance(entry, TransferEntry) or not start <= entry.time < end:
            continue
        if connector is not None and entry.connector != connector:
            continue
        scope.take(entry)
    _resolve_lists(reader, scope)
    return scope


def _resolve_lists(reader: LedgerReader, scope: BreachScope) -> None:
    """Add the ids of every subject list the window's transfers named: each distinct list
    once (a sync that read the same pages again names the same lists)."""
    wanted = sorted(scope.lists)
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        found = reader.subject_sets(scope.tenant, chunk)
        if len(found) != len(chunk):
            raise ReportError(
                f"a subject list of {scope.tenant}'s log is missing; run `sluis audit verify`"
            )
        for ids in found.values():
            scope.subject_ids.update(blob_ids(ids))


def _entries(
    reader: LedgerReader, tenant: str, start: int, stop: int, scope: BreachScope
) -> Iterator[object]:
    for index, body, _ in reader.iter_entries(tenant, start, stop):
        scope.entries_read += 1
        if is_audit_body(body):
            continue  # an action on the processing, not a transfer
        try:
            yield parse_entry(body)
        except ValueError:
            raise ReportError(
                f"entry {index} of {tenant}'s log is unreadable; run `sluis audit verify`"
            ) from None


class _Checkpoints:
    """Binary search over a log's checkpoints by their signed time (non-decreasing)."""

    def __init__(self, reader: LedgerReader, tenant: str) -> None:
        self._reader = reader
        self._tenant = tenant
        latest = reader.latest_checkpoint(tenant)
        self._last_seq = latest.seq if latest is not None else 0

    def _at(self, seq: int) -> tuple[StoredCheckpoint, datetime]:
        """The first checkpoint with `seq` or more (seqs may have gaps)."""
        (found,) = self._reader.checkpoints_after(self._tenant, seq - 1, 1)
        try:
            return found, read_unverified(found.note).time
        except CheckpointError:
            raise ReportError(
                f"checkpoint {found.seq} of {self._tenant}'s log is unreadable;"
                " run `sluis audit verify`"
            ) from None

    def _first(self, test: Callable[[datetime], bool]) -> StoredCheckpoint | None:
        """The earliest checkpoint whose time passes `test` (monotonic in time)."""
        lo, hi, found = 1, self._last_seq, None
        while lo <= hi:
            checkpoint, when = self._at((lo + hi) // 2)
            if test(when):
                found, hi = checkpoint, min(hi, checkpoint.seq) - 1
            else:
                lo = checkpoint.seq + 1
        return found

    def first_at_or_after(self, when: datetime) -> StoredCheckpoint | None:
        return self._first(lambda t: t >= when)

    def last_before(self, when: datetime) -> StoredCheckpoint | None:
        first_late = self._first(lambda t: t >= when)
        if first_late is None:
            return self._reader.latest_checkpoint(self._tenant)
        return self._before(first_late.seq)

    def _before(self, seq: int) -> StoredCheckpoint | None:
        """The checkpoint just before `seq` (the greatest seq below it)."""
        lo, hi, found = 1, seq - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            rows = self._reader.checkpoints_after(self._tenant, mid - 1, 1)
            if not rows or rows[0].seq >= seq:
                hi = mid - 1
            else:
                found, lo = rows[0], rows[0].seq + 1
        return found


def scope_document(scope: BreachScope, *, ids: bool = True) -> dict[str, object]:
    """The scope as JSON-ready data (the API's body and `sluis report breach --format
    json`); `ids=False` leaves the keyed ids out and keeps their count."""
    return {
        "tenant": scope.tenant,
        "start": scope.start,
        "end": scope.end,
        "connector": scope.connector,
        "subjects": len(scope.subject_ids),
        "subject_ids": sorted(scope.subject_ids) if ids else None,
        "records_in": scope.records_in,
        "records_out": scope.records_out,
        "records_refused": scope.records_refused,
        "transfers": scope.transfers,
        "refusals": scope.refusals,
        "categories": scope.categories,
        "fields": dict(sorted(scope.fields.items())),
        "sources": sorted(scope.sources),
        "destinations": sorted(scope.destinations),
        "authorisations": [
            {
                "instruction_id": a.instruction_id,
                "mapping_digest": a.mapping_digest,
                "connector": a.connector,
                "transfers": a.transfers,
                "records": a.records,
            }
            for a in scope.authorisation_list()
        ],
        "first_transfer_at": scope.first_transfer_at,
        "last_transfer_at": scope.last_transfer_at,
        "ledger": {
            "first_index": scope.first_index,
            "stop_index": scope.stop_index,
            "log_size": scope.log_size,
            "entries_read": scope.entries_read,
        },
    }


def render_text(scope: BreachScope) -> str:
    """A readable report for the controller (GDPR Art. 33(3)(a)'s numbers first)."""

    def names(values: list[str]) -> str:
        return ", ".join(values) if values else "none"

    part = f", connector {scope.connector}" if scope.connector else ""
    lines = [
        f"Breach scope for tenant {scope.tenant}{part}",
        f"window: {scope.start.isoformat()} to {scope.end.isoformat()} (end excluded)",
        "",
        f"data subjects: {len(scope.subject_ids)} (keyed ids; resolve them with the tenant's"
        " subject key)",
        f"records: {scope.records_in} received from sources, {scope.records_out} delivered,"
        f" {scope.records_refused} withheld (refused)",
        f"data categories: {names(scope.categories)}",
        f"fields: {names(sorted(scope.fields))}",
        f"sources: {names(sorted(scope.sources))}",
        f"destinations: {names(sorted(scope.destinations))}",
        "authorisations:",
    ]
    for a in scope.authorisation_list() or []:
        lines.append(
            f"  {a.instruction_id} ({a.connector}, mapping {a.mapping_digest or '-'}):"
            f" {a.transfers} transfers, {a.records} records"
        )
    if not scope.authorisations:
        lines.append("  none")
    if scope.first_transfer_at is not None and scope.last_transfer_at is not None:
        lines.append(
            f"transfers: {scope.transfers}, from {scope.first_transfer_at.isoformat()}"
            f" to {scope.last_transfer_at.isoformat()}"
        )
    lines.append(
        f"ledger: entries {scope.first_index} to {scope.stop_index} of {scope.log_size}"
        f" read ({scope.entries_read}); check the log itself with `sluis audit verify`"
    )
    return "\n".join(lines) + "\n"
