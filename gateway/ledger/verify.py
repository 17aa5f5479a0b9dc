"""Verify a tenant's log end to end, trusting nothing but a public key (and maybe a checkpoint).

The verifier reads the entries once, in index order, and keeps only a Merkle frontier: O(n)
time and O(log n) memory, so an auditor can check a million-entry export on a laptop.
Checkpoints are read alongside, in the order they were written, and each one is checked at
the moment the entry stream reaches its size.

What it establishes, and where it points when something is off (`first_bad_index` is the
lowest entry index the log can no longer vouch for):

* indices run 0, 1, 2, … without gaps or strays          → the missing or stray index
* each body is a valid, canonical entry (transfer or audit) for this tenant, and its stored
  leaf hash is the hash of that body                     → that entry
* every checkpoint is signed by the trusted key, names this log, and neither its size nor
  its time goes backwards                                → the first entry it would vouch for
* the root recomputed at each checkpoint size equals the signed root
                                 → the first entry after the last checkpoint that matched
* no entries lie beyond the last checkpoint (appends sign in the same transaction)
* a checkpoint the auditor kept from earlier is consistent: same root at its size, and the
  log is not shorter than it                             → truncation or a fork
* so is every one of the checkpoints the auditor kept (`kept`, each named by where it
  came from, e.g. its file): a history rebuilt even with the signing key cannot match them
* each transfer entry's subject list (stored beside it, `subject_lists`) is there, and is
  the list its body commits to                            → that entry

A verification can resume where an earlier one ended (`start`, a `VerifiedPoint`: the
size it reached, the checkpoint that vouched for it, and the frontier there) instead of at
entry 0: the frontier must give that signed checkpoint's root, and only the entries after
it are read. It vouches for the rest on the strength of the earlier run, so a rewrite of
an entry before `start` is found only by a full verification (the gateway runs one at every
start, and resumes on the days between).

It reports the first problem found and stops: after one broken link, later ones say little.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gateway.ledger import merkle
from gateway.ledger.checkpoint import Checkpoint, CheckpointError, names_tenant, open_checkpoint
from gateway.ledger.entry import TransferEntry, describe_errors
from gateway.ledger.kinds import entry_bytes, parse_entry
from gateway.store import EntryRow, LedgerHead, NodeRow, VerifiedPoint

#: (seq, size as stored, signed note) in the order written.
CheckpointRow = tuple[int, int, str]
#: A checkpoint the auditor kept, already opened with the trusted key, and what to call it
#: in a finding (the file it came from).
KeptCheckpoint = tuple[str, Checkpoint]
#: How many keyed ids the stored list with this SHA-256 holds, after checking that the list
#: hashes to it (None: no such list).
SubjectLists = Callable[[bytes], int | None]


class ResumeRefused(ValueError):
    """The verification cannot resume from the point it was given (the caller verifies
    from entry 0 instead); the reason is safe to print."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of one verification; `reason` is safe to print (no entry content)."""

    tenant: str
    ok: bool
    entries: int
    checkpoints: int
    root: bytes
    first_bad_index: int | None = None
    reason: str | None = None
    #: Where the verification started (0: a full one; else it resumed there).
    resumed_from: int = 0
    #: The frontier after the last entry read, and the last checkpoint matched (its seq):
    #: the next verification's `start` (a `VerifiedPoint`) when `ok`.
    frontier: tuple[bytes, ...] = ()
    last_seq: int = 0


class _Bad(Exception):
    def __init__(self, index: int | None, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class _Checkpoints:
    """Pulls checkpoints in write order, checking signature, origin and monotonicity."""

    def __init__(
        self, rows: Iterable[CheckpointRow], key: Ed25519PublicKey, tenant: str, origin: str | None
    ) -> None:
        self._rows = iter(rows)
        self._key = key
        self._tenant = tenant
        #: A log keeps one origin: the first checkpoint's (or the kept one's) binds the rest.
        self._origin = origin
        self._last: Checkpoint | None = None
        self.vouched = 0  # entries [0, vouched) matched a signed root
        self.last_seq = 0  # the last checkpoint whose root matched

    def resume(self, seq: int, cp: Checkpoint) -> None:
        """Carry on after checkpoint `seq` (opened, its root matched by the caller)."""
        self._origin = cp.origin
        self._last = cp
        self.vouched = cp.size
        self.last_seq = seq

    def next(self) -> tuple[int, Checkpoint] | None:
        row = next(self._rows, None)
        if row is None:
            return None
        seq, stored_size, note = row
        try:
            cp = open_checkpoint(note, self._key)
        except CheckpointError as exc:
            raise _Bad(self.vouched, f"checkpoint #{seq}: {exc}") from None
        if self._origin is None and names_tenant(cp.origin, self._tenant):
            self._origin = cp.origin
        if cp.origin != self._origin:
            raise _Bad(self.vouched, f"checkpoint #{seq} belongs to another log")
        if cp.size != stored_size:
            raise _Bad(self.vouched, f"checkpoint #{seq}: stored size differs from the signed one")
        last = self._last
        if last is not None and cp.size < last.size:
            raise _Bad(
                cp.size,
                f"checkpoint #{seq} (size {cp.size}) follows one of size {last.size}:"
                " an older checkpoint was replayed",
            )
        if last is not None and cp.time < last.time:
            raise _Bad(self.vouched, f"checkpoint #{seq} is dated before the one written before it")
        self._last = cp
        return seq, cp


def verify_log(
    tenant: str,
    entries: Iterable[EntryRow],
    checkpoints: Iterable[CheckpointRow],
    trusted_key: Ed25519PublicKey,
    *,
    external_checkpoint: str | None = None,
    nodes: Iterable[NodeRow] | None = None,
    head: LedgerHead | None = None,
    kept: Iterable[KeptCheckpoint] = (),
    subject_lists: SubjectLists | None = None,
    start: tuple[VerifiedPoint, str] | None = None,
) -> VerifyReport:
    """Check one tenant's log; see the module docstring for what is checked.

    `nodes` and `head` (the store's proof nodes and append frontier) are optional: an export
    does not carry them, but a store should have them right, or later proofs and appends
    would be wrong. Without `subject_lists`, commitments are not followed to their lists.

    `start`: resume after an earlier verification (its point and the note of the checkpoint
    it ended at); `entries`, `checkpoints` and `nodes` then begin after it (entries at
    `point.size`, checkpoints after `point.seq`). `ResumeRefused` if the point does not
    fit that checkpoint, or a kept or trusted checkpoint lies before it.
    """
    state = _State(tenant, trusted_key, subject_lists)
    state.kept(kept)
    cps = state.begin(checkpoints, external_checkpoint, start)
    try:
        state.run(entries, cps, nodes=nodes, head=head)
    except _Bad as bad:
        return state.report(bad)
    return state.report(None)


class _State:
    def __init__(self, tenant: str, key: Ed25519PublicKey, lists: SubjectLists | None) -> None:
        self.tenant = tenant
        self.key = key
        self.lists = lists
        self.frontier = merkle.Frontier()
        self.count = 0
        self.checked = 0
        self.resumed_from = 0
        self.external: Checkpoint | None = None
        self.cps: _Checkpoints | None = None
        self.early: _Bad | None = None
        #: Kept checkpoints by size, and the origin they bind the log to.
        self.kept_at: dict[int, list[KeptCheckpoint]] = {}
        self.kept_origin: str | None = None

    def report(self, bad: _Bad | None) -> VerifyReport:
        bad = bad or self.early
        return VerifyReport(
            self.tenant,
            bad is None,
            self.count,
            self.checked,
            self.frontier.root(),
            None if bad is None else bad.index,
            None if bad is None else bad.reason,
            resumed_from=self.resumed_from,
            frontier=tuple(self.frontier.hashes),
            last_seq=self.cps.last_seq if self.cps is not None else 0,
        )

    def begin(
        self,
        rows: Iterable[CheckpointRow],
        external_note: str | None,
        start: tuple[VerifiedPoint, str] | None,
    ) -> _Checkpoints:
        """The checkpoints to read, after the resume point if there is one."""
        try:
            external = self.external = self._external(external_note)
            if external is not None and self.kept_origin not in (None, external.origin):
                raise _Bad(None, "the trusted checkpoint and the kept ones name different logs")
        except _Bad as bad:
            self.early = bad
            external = None
        origin = external.origin if external is not None else self.kept_origin
        cps = self.cps = _Checkpoints(rows, self.key, self.tenant, origin)
        if start is not None:
            self._resume(cps, *start)
        return cps

    def _resume(self, cps: _Checkpoints, point: VerifiedPoint, note: str) -> None:
        try:
            cp = open_checkpoint(note, self.key)
        except CheckpointError as exc:
            raise ResumeRefused(f"the checkpoint it ended at cannot be used: {exc}") from None
        try:
            frontier = merkle.Frontier(point.size, point.frontier)
        except ValueError:
            raise ResumeRefused("the recorded frontier is malformed") from None
        if cp.size != point.size or not _same(frontier.root(), cp.root):
            raise ResumeRefused("the recorded frontier does not give that checkpoint's root")
        if not names_tenant(cp.origin, self.tenant) or (self.kept_origin not in (None, cp.origin)):
            raise ResumeRefused("that checkpoint is for another log")
        if any(size < point.size for size in self.kept_at) or (
            self.external is not None and self.external.size < point.size
        ):
            raise ResumeRefused("a kept or trusted checkpoint lies before the point")
        self.frontier = frontier
        self.count = self.resumed_from = point.size
        cps.resume(point.seq, cp)

    def kept(self, kept: Iterable[KeptCheckpoint]) -> None:
        try:
            self._kept(kept)
        except _Bad as bad:
            self.early = bad

    def _kept(self, kept: Iterable[KeptCheckpoint]) -> None:
        for label, cp in kept:
            if not names_tenant(cp.origin, self.tenant):
                raise _Bad(None, f"kept checkpoint {label} is for {cp.origin!r}, not this log")
            if self.kept_origin is not None and cp.origin != self.kept_origin:
                raise _Bad(None, f"kept checkpoint {label} names another log ({cp.origin!r})")
            self.kept_origin = cp.origin
            self.kept_at.setdefault(cp.size, []).append((label, cp))

    def _check_kept(self, size: int) -> None:
        root = self.frontier.root()
        for label, cp in self.kept_at.get(size, ()):
            if not _same(cp.root, root):
                raise _Bad(
                    0,
                    f"kept checkpoint {label} (size {size}) disagrees with the log: an entry in"
                    f" 0..{size - 1} was rewritten after that checkpoint was issued (a fork)",
                )

    def run(
        self,
        entries: Iterable[EntryRow],
        cps: _Checkpoints,
        *,
        nodes: Iterable[NodeRow] | None,
        head: LedgerHead | None,
    ) -> None:
        if self.early is not None:
            raise self.early
        external = self.external
        kept_at = self.kept_at
        lists = self.lists
        pending = cps.next()
        frontier = self.frontier
        stored_nodes: Iterator[NodeRow] | None = iter(nodes) if nodes is not None else None
        made: list[tuple[int, int, bytes]] | None = [] if stored_nodes is not None else None
        validate = parse_entry
        leaf_of = merkle.leaf_hash
        tenant = self.tenant

        pending = self._settle(pending, cps, external)
        if self.resumed_from == 0 and 0 in kept_at:
            self._check_kept(0)
        for n, (idx, body, stored_leaf) in enumerate(entries, self.resumed_from):
            if idx != n:
                if idx > n:
                    raise _Bad(n, f"entry {n} is missing (the next stored entry is {idx})")
                raise _Bad(n, f"unexpected entry index {idx} where entry {n} should be")
            leaf = leaf_of(body)
            if not _same(leaf, stored_leaf):
                raise _Bad(n, f"entry {n} does not match its stored leaf hash (entry changed)")
            try:
                entry = validate(body)
            except ValidationError as exc:
                raise _Bad(n, f"entry {n} is not a valid entry ({describe_errors(exc)})") from None
            if entry.tenant != tenant:
                raise _Bad(n, f"entry {n} belongs to another tenant")
            if entry_bytes(entry) != body:
                raise _Bad(n, f"entry {n} is not in canonical form")
            if lists is not None and isinstance(entry, TransferEntry):
                self._check_list(n, entry, lists)
            frontier.append(leaf, made)
            self.count = size = n + 1
            if made:
                self._match_nodes(made, stored_nodes)
            if pending is not None and pending[1].size == size:
                pending = self._settle(pending, cps, external)
            elif external is not None and external.size == size:
                self._settle(None, cps, external)
            if kept_at and size in kept_at:
                self._check_kept(size)
        self._finish(pending, cps, external, stored_nodes, head)

    @staticmethod
    def _check_list(n: int, entry: TransferEntry, lists: SubjectLists) -> None:
        subjects = entry.subjects
        if subjects is None or subjects.count == 0:
            return
        held = lists(subjects.raw_digest)
        if held is None:
            raise _Bad(n, f"entry {n}: the list of keyed ids it commits to is missing")
        if held != subjects.count:
            raise _Bad(n, f"entry {n}: its list of keyed ids does not hold {subjects.count} ids")

    def _external(self, note: str | None) -> Checkpoint | None:
        if note is None:
            return None
        try:
            cp = open_checkpoint(note, self.key)
        except CheckpointError as exc:
            raise _Bad(None, f"the trusted checkpoint cannot be used: {exc}") from None
        if not names_tenant(cp.origin, self.tenant):
            raise _Bad(None, f"the trusted checkpoint is for {cp.origin!r}, not {self.tenant!r}")
        return cp

    def _settle(
        self,
        pending: tuple[int, Checkpoint] | None,
        cps: _Checkpoints,
        external: Checkpoint | None,
    ) -> tuple[int, Checkpoint] | None:
        """Check every checkpoint (and the external one) whose size the stream has reached."""
        n = self.count
        root = self.frontier.root()
        while pending is not None and pending[1].size == n:
            seq, cp = pending
            if not _same(cp.root, root):
                first = cps.vouched
                raise _Bad(
                    first,
                    f"root at checkpoint #{seq} (size {n}) does not match the entries: an entry"
                    f" in {first}..{n - 1} was changed, inserted, removed or reordered",
                )
            cps.vouched = n
            cps.last_seq = seq
            self.checked += 1
            pending = cps.next()
        if external is not None and external.size == n and not _same(external.root, root):
            # One root cannot say which entry differs; 0 is the honest lower bound.
            raise _Bad(
                0,
                f"the log disagrees with the trusted checkpoint at size {n}: an entry in"
                f" 0..{n - 1} was rewritten after that checkpoint was issued (a fork)",
            )
        return pending

    def _match_nodes(
        self, made: list[tuple[int, int, bytes]], stored: Iterator[NodeRow] | None
    ) -> None:
        assert stored is not None
        for level, idx, h in made:
            row = next(stored, None)
            if row is None or row[0] != level or row[1] != idx or not _same(row[2], h):
                raise _Bad(
                    None,
                    f"stored proof node (level {level}, index {idx}) is wrong or missing;"
                    " proofs would fail",
                )
        made.clear()

    def _finish(
        self,
        pending: tuple[int, Checkpoint] | None,
        cps: _Checkpoints,
        external: Checkpoint | None,
        stored_nodes: Iterator[NodeRow] | None,
        head: LedgerHead | None,
    ) -> None:
        n = self.count
        if pending is not None:
            seq, cp = pending
            raise _Bad(
                n,
                f"checkpoint #{seq} vouches for {cp.size} entries but the log has {n}:"
                f" entries from {n} on are missing (truncated)",
            )
        if cps.vouched < n:
            raise _Bad(
                cps.vouched,
                f"entries from {cps.vouched} on are not covered by any signed checkpoint",
            )
        if external is not None and external.size > n:
            raise _Bad(
                n,
                f"the trusted checkpoint vouches for {external.size} entries but the log has"
                f" {n}: entries from {n} on were removed (truncated)",
            )
        beyond = [(label, cp) for size, kept in self.kept_at.items() if size > n
                  for label, cp in kept]  # fmt: skip
        if beyond:
            label, cp = max(beyond, key=lambda k: k[1].size)
            raise _Bad(
                n,
                f"kept checkpoint {label} vouches for {cp.size} entries but the log has {n}:"
                f" entries from {n} on were removed (truncated)",
            )
        if stored_nodes is not None and next(stored_nodes, None) is not None:
            raise _Bad(None, "the store holds proof nodes beyond the log")
        if head is not None and (head.size != n or list(head.frontier) != self.frontier.hashes):
            raise _Bad(None, "the stored append head disagrees with the entries")
