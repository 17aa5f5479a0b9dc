"""The transfer ledger: one append-only, signed Merkle log per tenant.

Every transfer of personal data (source → gateway, gateway → platform) becomes a
`TransferEntry`: who (tenant, connector, keyed subject ids), what (egress field names and
their data categories, counts, names of dropped source fields), under which instruction and
mapping, to where, and when. Never a field value: the model refuses anything that is not a
hex id, a known field name or a short identifier, so a value cannot ride along by mistake.

Entries are hashed as RFC 9162 leaves over their canonical bytes and appended in batches.
Each batch is written together with a signed checkpoint for the new size in one
transaction, so every entry is covered by a signature from the moment it exists: deleting,
editing or reordering anything is caught by `verify`, and truncating the tail is caught as
soon as the auditor brings a checkpoint they kept (`external_checkpoint`).

One log per tenant (origin `sluis/<tenant>`) lets a customer's auditor receive and check
their own log, and nothing of anyone else's.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gateway.ledger import merkle
from gateway.ledger.audit import AuditEntry
from gateway.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    names_tenant,
    open_checkpoint,
    read_unverified,
)
from gateway.ledger.entry import (
    TransferCounts,
    TransferEntry,
    blob_ids,
    canonical_bytes,
    describe_errors,
    is_identifier,
    subject_list,
)
from gateway.ledger.group import GroupCommit
from gateway.ledger.kinds import LedgerEntry, entry_bytes, parse_entry
from gateway.ledger.verify import KeptCheckpoint, ResumeRefused, VerifyReport, verify_log
from gateway.store import (
    AppendBase,
    LedgerHead,
    LedgerReader,
    LedgerStore,
    LogMoved,
    StoredCheckpoint,
    VerifiedPoint,
)

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "Ledger",
    "LedgerCorrupt",
    "LedgerError",
    "LedgerRecord",
    "TransferCounts",
    "TransferEntry",
    "VerifyReport",
    "attach_subject_ids",
    "canonical_bytes",
    "check_inclusion_proof",
    "committed_digest",
    "describe_errors",
]

#: Stored proof nodes sit at every 4th level (leaves are level 0).
NODE_STRIDE: Final = 4


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class LedgerError(Exception):
    """A request the ledger cannot serve (bad index, empty log, no signer)."""


class LedgerCorrupt(LedgerError):
    """Stored data contradicts itself; `verify` will say where."""


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    index: int
    entry: LedgerEntry
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Everything a third party needs to check one entry against a signed checkpoint.

    If no checkpoint was signed at exactly `size`, `checkpoint` is the latest one and
    `consistency` proves the tree of `size` is a prefix of it.
    """

    tenant: str
    index: int
    size: int
    body: bytes
    leaf_hash: bytes
    path: list[bytes]
    root: bytes
    checkpoint: str
    consistency: list[bytes] = field(default_factory=list)
    #: The keyed ids a transfer entry's commitment names (None: it names none, or lists
    #: them in its body): with them, the proof shows which people the transfer carried.
    subject_ids: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        extra = {} if self.subject_ids is None else {"subject_ids": self.subject_ids}
        return {
            **extra,
            "tenant": self.tenant,
            "leaf_index": self.index,
            "tree_size": self.size,
            "entry": self.body.decode("utf-8"),
            "leaf_hash": _b64(self.leaf_hash),
            "audit_path": [_b64(p) for p in self.path],
            "root": _b64(self.root),
            "checkpoint": self.checkpoint,
            "consistency_path": [_b64(p) for p in self.consistency],
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    size1: int
    size2: int
    root1: bytes
    root2: bytes
    path: list[bytes]


def check_inclusion_proof(proof: dict[str, Any], public_key: Ed25519PublicKey) -> Checkpoint:
    """Check a `prove` bundle offline: entry → leaf → root → signed checkpoint.

    Returns the checkpoint it is anchored to; raises `merkle.ProofError` or
    `CheckpointError` if any link fails.
    """
    try:
        body = str(proof["entry"]).encode("utf-8")
        index, size = int(proof["leaf_index"]), int(proof["tree_size"])
        root = base64.b64decode(proof["root"], validate=True)
        path = [base64.b64decode(p, validate=True) for p in proof["audit_path"]]
        cons = [base64.b64decode(p, validate=True) for p in proof.get("consistency_path", [])]
        note = str(proof["checkpoint"])
    except (KeyError, TypeError, ValueError):
        raise merkle.ProofError("malformed proof document") from None
    leaf = merkle.leaf_hash(body)
    if base64.b64encode(leaf).decode() != proof.get("leaf_hash"):
        raise merkle.ProofError("leaf hash does not match the entry")
    if proof.get("subject_ids") is not None:
        _check_listed(body, proof["subject_ids"])
    merkle.verify_inclusion(leaf, index, size, path, root)
    cp = open_checkpoint(note, public_key)
    if proof.get("tenant") is not None and not names_tenant(cp.origin, str(proof["tenant"])):
        raise CheckpointError("checkpoint is for another log")
    if cp.size == size:
        if cp.root != root or cons:
            raise merkle.ProofError("root does not match the signed checkpoint")
    else:
        merkle.verify_consistency(size, cp.size, cons, root, cp.root)
    return cp


class _Prepared(NamedTuple):
    """An entry ready to append: its canonical bytes, leaf hash, and for a transfer entry
    the (SHA-256, binary list) of the keyed ids it carried (stored beside it)."""

    body: bytes
    leaf: bytes
    subjects: tuple[bytes, bytes] | None


def _subject_list(entry: TransferEntry) -> tuple[bytes, bytes]:
    found = subject_list(entry)
    if found is None:
        raise LedgerError("a transfer entry to append must list its keyed ids")
    return found


def attach_subject_ids(entry: LedgerEntry, lists: dict[bytes, bytes]) -> LedgerEntry:
    """A transfer entry read from its body, with the keyed ids its commitment names, from
    `lists` (stored lists by digest); unchanged if it lists them already, or is an audit
    entry. `LedgerCorrupt` if the list is missing or is not the one committed to."""
    if not isinstance(entry, TransferEntry) or entry.subjects is None:
        return entry
    if entry.subjects.count == 0:
        return entry.with_subject_ids([])
    ids = lists.get(entry.subjects.raw_digest)
    if ids is None:
        raise LedgerCorrupt("a transfer entry's subject list is missing; run `sluis audit verify`")
    try:
        return entry.with_subject_ids(blob_ids(ids))
    except ValueError:
        raise LedgerCorrupt("a stored subject list does not match its entry") from None


def committed_digest(entry: LedgerEntry) -> bytes | None:
    """The SHA-256 of the subject list a transfer entry commits to (None: no commitment, or
    to no ids, which has no stored list)."""
    if isinstance(entry, TransferEntry) and entry.subjects is not None and entry.subjects.count:
        return entry.subjects.raw_digest
    return None


def _check_listed(body: bytes, ids: object) -> None:
    """The ids a proof lists are the ones its entry commits to."""
    try:
        entry = parse_entry(body)
        if not isinstance(entry, TransferEntry) or not isinstance(ids, list):
            raise ValueError
        entry.with_subject_ids([str(i) for i in ids])
    except ValueError:
        raise merkle.ProofError(
            "the listed keyed ids are not the ones the entry commits to"
        ) from None


class _StoredTree:
    """`SubtreeHash` over a store: stored nodes at every 4th level, folded up to 3 levels."""

    def __init__(self, reader: LedgerReader, tenant: str) -> None:
        self._reader = reader
        self._tenant = tenant

    def __call__(self, level: int, index: int) -> bytes:
        base = level - level % NODE_STRIDE
        width = 1 << (level - base)
        start = index * width
        if base == 0:
            hashes = self._reader.leaf_hashes(self._tenant, start, start + width)
        else:
            hashes = self._reader.node_hashes(self._tenant, base, start, start + width)
        if len(hashes) != width or any(len(h) != merkle.HASH_SIZE for h in hashes):
            raise LedgerCorrupt("stored tree nodes are missing; run `sluis audit verify`")
        return merkle.perfect_root(hashes)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """One tenant's transfer log over a `LedgerStore`.

    Without a signer the ledger is read-only (proofs, verification). An append takes the
    tenant's write lock in the store first (`LedgerStore.writing`: the transaction's own
    on SQLite, an advisory lock on PostgreSQL, held to COMMIT) and reads the head inside
    it, or builds on the head its last append left and has the store check that under
    the lock, so threads and replicas append one after the other and never fork the log;
    the store refuses (`StoreConflict`) a batch built on a head that is not current. No
    lock of this process is held across a database wait, so the store's locks are the only
    ones two writers can wait on, and there is one order to take them in.
    """

    def __init__(
        self,
        store: LedgerStore,
        tenant: str,
        signer: CheckpointSigner | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not is_identifier(tenant):
            raise LedgerError("tenant must be a short identifier")
        self.tenant = tenant
        self._origin: str | None = None
        #: The latest checkpoint's note and the time parsed from it: the next append reads
        #: the same note back nearly always, and parsing it again was a fifth of a small
        #: append's time.
        self._seen: tuple[str, datetime] | None = None
        #: The head and latest checkpoint as this process's last append here left them:
        #: the next append builds on them without reading them first (`_append_prepared`).
        self._tip: tuple[LedgerHead, StoredCheckpoint] | None = None
        self._store = store
        self._signer = signer
        self._clock = clock
        self._tree = _StoredTree(store, tenant)
        self._group: GroupCommit[_Prepared] = GroupCommit(self._append_prepared)

    @property
    def origin(self) -> str:
        """The log's origin: the one its first checkpoint named (a log never changes name),
        or for a log without one yet, the one the signer gives new logs."""
        if self._origin is None:
            latest = self._store.latest_checkpoint(self.tenant)
            if latest is not None:
                self._origin = read_unverified(latest.note).origin
            else:
                return self._require_signer().origin_for(self.tenant)
        return self._origin

    def _require_signer(self) -> CheckpointSigner:
        if self._signer is None:
            raise LedgerError("this ledger has no signing key; it is read-only")
        return self._signer

    def _next_time(self, latest: StoredCheckpoint | None) -> datetime:
        """Now, or the latest checkpoint's time if the wall clock went back: checkpoint
        times never go backwards."""
        now = self._clock()
        if latest is None:
            return now
        seen = self._seen
        if seen is None or seen[0] != latest.note:
            try:
                seen = (latest.note, read_unverified(latest.note).time)
            except CheckpointError:
                return now
            self._seen = seen
        return max(now, seen[1])

    def append(self, entries: Sequence[LedgerEntry]) -> list[int]:
        """Append a batch and a signed checkpoint for the new size in one transaction.

        Returns the indices the entries got, in order.
        """
        prepared = self._prepare(entries)
        if not prepared:
            return []
        start = self._append_prepared(prepared)
        return list(range(start, start + len(prepared)))

    def append_grouped(self, entries: Sequence[LedgerEntry]) -> list[int]:
        """`append` for a caller with nothing else to commit with its entries (a feed page),
        outside any transaction: appends that arrive together from several threads are
        committed together, with one checkpoint (`gateway.ledger.group`). Returns once this
        caller's entries are committed; the indices they got."""
        prepared = self._prepare(entries)
        if not prepared:
            return []
        start = self._group.submit(prepared)
        return list(range(start, start + len(prepared)))

    def append_grouped_later(self, entries: Sequence[LedgerEntry]) -> Future[int] | None:
        """`append_grouped` for a caller that waits elsewhere (an event loop): the entries
        are checked and queued in this thread, which is then free; the future gives the
        index of the first once they are committed, or raises what their commit raised.
        None when there is nothing to append. The caller must wait for the future before
        it acts on the entries being written (a feed page: before it is sent)."""
        prepared = self._prepare(entries)
        if not prepared:
            return None
        return self._group.submit_later(prepared)

    def _prepare(self, entries: Sequence[LedgerEntry]) -> list[_Prepared]:
        """Each entry's canonical bytes, leaf hash and subject list, checked: no store, no
        lock."""
        self._require_signer()
        prepared: list[_Prepared] = []
        for entry in entries:
            if not isinstance(entry, TransferEntry | AuditEntry):
                raise LedgerError("append takes TransferEntry or AuditEntry objects")
            if entry.tenant != self.tenant:
                raise LedgerError("entry belongs to another tenant's log")
            body = entry_bytes(entry)
            subjects = _subject_list(entry) if isinstance(entry, TransferEntry) else None
            prepared.append(_Prepared(body, merkle.leaf_hash(body), subjects))
        return prepared

    def _append_prepared(self, prepared: Sequence[_Prepared]) -> int:
        """Store prepared entries after the head, with a checkpoint; the first's index.

        The tenant's write lock first, then the head: nobody can append in between. The
        head is the one this process's last append here left, if there was one, sent as
        the append's `base` instead of read: the store checks it under the lock it takes,
        and outside a caller's transaction its append is then one transaction of one
        round trip on PostgreSQL (lock, append, COMMIT: a feed's group commit), inside
        one a round trip fewer (a sync's). Where another writer appended meanwhile, or
        that append was rolled back with its transaction, the store writes nothing
        (`LogMoved`), and the head is read after all."""
        remembered = self._tip
        if remembered is not None:
            try:
                return self._append_on(prepared, *remembered, remembered=True)
            except LogMoved:
                self._tip = None
        with self._store.writing(self.tenant):
            return self._append_on(prepared, *self._store.tip(self.tenant), remembered=False)

    def _append_on(
        self,
        prepared: Sequence[_Prepared],
        head: LedgerHead | None,
        latest: StoredCheckpoint | None,
        *,
        remembered: bool,
    ) -> int:
        signer = self._require_signer()
        frontier = merkle.Frontier(head.size, head.frontier) if head else merkle.Frontier()
        start = frontier.size
        nodes: list[tuple[int, int, bytes]] = []
        frontier.extend([p.leaf for p in prepared], nodes)
        hashes = frontier.hashes
        cp = Checkpoint(self.origin, frontier.size, frontier.root(), self._next_time(latest))
        note = signer.sign(cp)
        base = (
            AppendBase(b"".join(head.frontier) if head else None, latest.seq if latest else 0)
            if remembered
            else None
        )
        seq = self._store.append(
            self.tenant,
            start,
            entries=[(p.body, p.leaf) for p in prepared],
            nodes=nodes,
            frontier=hashes,
            checkpoint_note=note,
            subject_sets=[
                (i, *p.subjects) for i, p in enumerate(prepared) if p.subjects is not None
            ],
            base=base,
        )
        # Compared by the note itself next time: a rolled-back append is simply missed.
        self._seen = (note, cp.time)
        self._tip = (
            LedgerHead(frontier.size, tuple(hashes)),
            StoredCheckpoint(seq, frontier.size, note),
        )
        return start

    def size(self) -> int:
        head = self._store.head(self.tenant)
        return head.size if head else 0

    def checkpoint(self, *, refresh: bool = False) -> str:
        """The latest signed checkpoint note; `refresh` signs a new one for the current size.

        A fresh checkpoint on an idle log states "nothing was added since", with a new time.
        """
        if not refresh:
            latest = self._store.latest_checkpoint(self.tenant)
            if latest is not None:
                return latest.note
        signer = self._require_signer()
        with self._store.writing(self.tenant):
            head, latest = self._store.tip(self.tenant)
            size = head.size if head else 0
            cp = Checkpoint(self.origin, size, self.root(size), self._next_time(latest))
            note = signer.sign(cp)
            self._store.add_checkpoint(self.tenant, size, note)
            self._seen = (note, cp.time)
            self._tip = None  # a checkpoint more: the next append reads the head
        return note

    def _check_size(self, size: int) -> None:
        current = self.size()
        if not 0 <= size <= current:
            raise LedgerError(f"tree size {size} is outside the log (0..{current})")

    def root(self, size: int | None = None) -> bytes:
        """Root of the tree over the first `size` entries (default: all of them)."""
        head = self._store.head(self.tenant)
        current = head.size if head else 0
        if size is None or size == current:
            return merkle.Frontier(head.size, head.frontier).root() if head else merkle.EMPTY_ROOT
        self._check_size(size)
        return merkle.root_at(size, self._tree)

    def prove_inclusion(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that entry `index` is in the tree of `size` (default: latest checkpoint)."""
        latest = self._store.latest_checkpoint(self.tenant)
        if latest is None:
            raise LedgerError("the log has no checkpoint yet")
        if size is None:
            size = latest.size
        self._check_size(size)
        if not 0 <= index < size:
            raise LedgerError(f"entry index {index} is outside the tree of size {size}")
        anchor = self._store.checkpoint_at(self.tenant, size)
        if anchor is None and latest.size < size:
            raise LedgerError(f"no signed checkpoint covers tree size {size} yet")
        anchor = anchor or latest
        rows = list(self._store.iter_entries(self.tenant, index, index + 1))
        if not rows:
            raise LedgerCorrupt(f"entry {index} is missing")
        _, body, leaf = rows[0]
        if merkle.leaf_hash(body) != leaf or not _is_utf8(body):
            raise LedgerCorrupt(f"entry {index} does not match its leaf hash")
        path = merkle.inclusion_proof(index, size, self._tree)
        root = merkle.root_at(size, self._tree)
        cp = read_unverified(anchor.note)
        cons = [] if cp.size == size else merkle.consistency_proof(size, cp.size, self._tree)
        digest = committed_digest(parse_entry(body))
        ids = None
        if digest is not None:
            listed = self._store.subject_sets(self.tenant, [digest]).get(digest)
            if listed is None:
                raise LedgerCorrupt(f"entry {index}'s subject list is missing")
            ids = blob_ids(listed)
            try:
                _check_listed(body, ids)
            except merkle.ProofError:
                raise LedgerCorrupt(f"entry {index}'s subject list does not match it") from None
        proof = InclusionProof(
            self.tenant, index, size, body, leaf, path, root, anchor.note, cons, ids
        )
        self._self_check(proof, cp)
        return proof

    def _self_check(self, proof: InclusionProof, cp: Checkpoint) -> None:
        # Never hand out a proof that would not verify: stored nodes could be damaged.
        try:
            merkle.verify_inclusion(
                proof.leaf_hash, proof.index, proof.size, proof.path, proof.root
            )
            if cp.size != proof.size:
                merkle.verify_consistency(
                    proof.size, cp.size, proof.consistency, proof.root, cp.root
                )
            anchored = cp.size != proof.size or cp.root == proof.root
        except merkle.ProofError:
            anchored = False
        if not anchored:
            raise LedgerCorrupt(
                "stored tree disagrees with the signed checkpoint; run `sluis audit verify`"
            )

    def prove_consistency(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """Proof that the tree of `size1` is a prefix of the tree of `size2` (default: all)."""
        size2 = self.size() if size2 is None else size2
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise LedgerError("consistency needs 0 < size1 <= size2")
        path = merkle.consistency_proof(size1, size2, self._tree)
        root1, root2 = self.root(size1), self.root(size2)
        try:
            merkle.verify_consistency(size1, size2, path, root1, root2)
        except merkle.ProofError:
            raise LedgerCorrupt("stored tree is inconsistent; run `sluis audit verify`") from None
        return ConsistencyProof(size1, size2, root1, root2, path)

    def entries(self, after: int | None = None, limit: int = 100) -> list[LedgerRecord]:
        """Up to `limit` entries with index greater than `after` (from the start if None)."""
        start = 0 if after is None else after + 1
        read = []
        for idx, body, leaf in self._store.iter_entries(self.tenant, start, start + max(limit, 0)):
            try:
                read.append((idx, parse_entry(body), leaf))
            except ValidationError:
                raise LedgerCorrupt(f"entry {idx} is not a valid ledger entry") from None
        digests = {d for _, e, _ in read if (d := committed_digest(e)) is not None}
        lists = self._store.subject_sets(self.tenant, digests) if digests else {}
        return [LedgerRecord(i, attach_subject_ids(e, lists), leaf) for i, e, leaf in read]

    def verify(
        self,
        trusted_public_key: Ed25519PublicKey,
        external_checkpoint: str | None = None,
        kept: Sequence[KeptCheckpoint] = (),
        *,
        resume: bool = False,
        record: bool = False,
        start: tuple[VerifiedPoint, str] | None = None,
    ) -> VerifyReport:
        """Recompute the log from a consistent snapshot; see `verify_log`.
        `kept`: checkpoints the auditor kept, each labelled (see `verify_log`).

        `resume`: start where the last recorded verification ended (`record` records where
        this one ends, when it passes), or at `start` (a point the auditor kept, with the
        note of the checkpoint it ended at), if that point still fits its signed checkpoint
        and no kept checkpoint lies before it; otherwise from entry 0."""
        with self._store.snapshot() as reader:
            if start is None and resume:
                start = _resume_point(reader, self.tenant)
            try:
                report = self._verify(reader, trusted_public_key, external_checkpoint, kept, start)
            except ResumeRefused:
                report = self._verify(reader, trusted_public_key, external_checkpoint, kept, None)
        if record and report.ok and report.last_seq > 0:
            point = VerifiedPoint(report.entries, report.last_seq, report.frontier, self._clock())
            self._store.set_verified(self.tenant, point)
        return report

    def _verify(
        self,
        reader: LedgerReader,
        key: Ed25519PublicKey,
        external_checkpoint: str | None,
        kept: Sequence[KeptCheckpoint],
        start: tuple[VerifiedPoint, str] | None,
    ) -> VerifyReport:
        after = start[0] if start is not None else None
        return verify_log(
            self.tenant,
            reader.iter_entries(self.tenant, after.size if after else None),
            (
                (c.seq, c.size, c.note)
                for c in (
                    _checkpoints_after(reader, self.tenant, after.seq)
                    if after
                    else reader.iter_checkpoints(self.tenant)
                )
            ),
            key,
            external_checkpoint=external_checkpoint,
            nodes=reader.iter_nodes(self.tenant, after.size if after else 0),
            head=reader.head(self.tenant),
            kept=kept,
            subject_lists=StoredLists(reader, self.tenant),
            start=start,
        )


def _resume_point(reader: LedgerReader, tenant: str) -> tuple[VerifiedPoint, str] | None:
    point = reader.verified(tenant)
    if point is None:
        return None
    found = reader.checkpoints_after(tenant, point.seq - 1, 1)
    if not found or found[0].seq != point.seq:
        return None
    return point, found[0].note


def _checkpoints_after(reader: LedgerReader, tenant: str, seq: int) -> Iterator[StoredCheckpoint]:
    while True:
        page = reader.checkpoints_after(tenant, seq, 1000)
        yield from page
        if len(page) < 1000:
            return
        seq = page[-1].seq


class StoredLists:
    """`SubjectLists` over a store: fetches a list the first time its digest comes up,
    checks it hashes to that digest, and remembers the count (a sync that read the same
    pages of people again names the same lists, so most lookups are remembered)."""

    #: Digests remembered at most (32 bytes and a count each) before starting afresh.
    LIMIT: Final = 200_000

    def __init__(self, reader: LedgerReader, tenant: str) -> None:
        self._reader = reader
        self._tenant = tenant
        self._counts: dict[bytes, int] = {}

    def __call__(self, digest: bytes) -> int | None:
        count = self._counts.get(digest)
        if count is not None:
            return count
        ids = self._reader.subject_sets(self._tenant, [digest]).get(digest)
        if ids is None or len(ids) % 16 or hashlib.sha256(ids).digest() != digest:
            return None
        if len(self._counts) >= self.LIMIT:
            self._counts.clear()
        self._counts[digest] = len(ids) // 16
        return len(ids) // 16


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
