"""Storage behind the gateway, as small typed protocols.

The ledger needs very little from a database: append a batch of entries together with the
tree nodes, the new frontier and a signed checkpoint in one transaction; read entries, leaf
hashes and stored nodes back by index; and give a consistent snapshot for verification. The
protocol says exactly that, so the embedded SQLite store and the later PostgreSQL one are
interchangeable, and the ledger's logic (hashing, signing, verifying) stays out of SQL.

Stores hold bytes and numbers only; they never interpret an entry, and they are not trusted:
`Ledger.verify` recomputes everything a store hands back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

#: (index, canonical entry bytes, stored leaf hash), in index order.
EntryRow = tuple[int, bytes, bytes]
#: (level, index, hash) of a perfect subtree node.
NodeRow = tuple[int, int, bytes]


class StoreError(Exception):
    """Storage failed in a way the caller can report; messages hold no entry content."""


class StoreMissing(StoreError):
    """The database (or its ledger tables) does not exist."""


class StoreConflict(StoreError):
    """Another writer appended first; re-read the head and retry."""


@dataclass(frozen=True, slots=True)
class LedgerHead:
    """Where a tenant's log stands: its size and the frontier to extend it from."""

    size: int
    frontier: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint note as stored; `seq` orders them per tenant, `size` is an index."""

    seq: int
    size: int
    note: str


class LedgerReader(Protocol):
    """Read access to every tenant's log."""

    def tenants(self) -> list[str]:
        """Every tenant with any ledger row (entries, checkpoints or head), sorted."""
        ...

    def head(self, tenant: str) -> LedgerHead | None: ...

    def iter_entries(
        self, tenant: str, start: int | None = None, stop: int | None = None
    ) -> Iterator[EntryRow]:
        """Rows with `start <= index < stop` in index order; None means unbounded."""
        ...

    def leaf_hashes(self, tenant: str, start: int, stop: int) -> list[bytes]:
        """Stored leaf hashes of entries `[start, stop)`; shorter if entries are missing."""
        ...

    def node_hashes(self, tenant: str, level: int, start: int, stop: int) -> list[bytes]:
        """Stored node hashes at `level` (a multiple of 4) for indices `[start, stop)`."""
        ...

    def iter_nodes(self, tenant: str) -> Iterator[NodeRow]:
        """Every stored node in the order appends complete them (by last leaf, then level)."""
        ...

    def iter_checkpoints(self, tenant: str) -> Iterator[StoredCheckpoint]:
        """Checkpoints in the order they were written (`seq`)."""
        ...

    def latest_checkpoint(self, tenant: str) -> StoredCheckpoint | None: ...

    def checkpoint_at(self, tenant: str, size: int) -> StoredCheckpoint | None:
        """The latest checkpoint written for exactly `size` entries, if any."""
        ...


class LedgerStore(LedgerReader, Protocol):
    """A ledger store: reads plus atomic appends."""

    def append(
        self,
        tenant: str,
        expected_size: int,
        *,
        entries: Sequence[tuple[bytes, bytes]],
        nodes: Sequence[NodeRow],
        frontier: Sequence[bytes],
        checkpoint_note: str,
    ) -> None:
        """In one transaction: add `(body, leaf_hash)` entries from index `expected_size`,
        the completed `nodes`, the new head, and the signed checkpoint for the new size.

        Raises `StoreConflict` if the log no longer has `expected_size` entries.
        """
        ...

    def add_checkpoint(self, tenant: str, expected_size: int, note: str) -> None:
        """Store a checkpoint for the current size, if that is still `expected_size`."""
        ...

    def snapshot(self) -> AbstractContextManager[LedgerReader]:
        """A reader that sees one consistent state while writers carry on."""
        ...

    def close(self) -> None: ...


__all__ = [
    "EntryRow",
    "LedgerHead",
    "LedgerReader",
    "LedgerStore",
    "NodeRow",
    "StoreConflict",
    "StoreError",
    "StoreMissing",
    "StoredCheckpoint",
]
