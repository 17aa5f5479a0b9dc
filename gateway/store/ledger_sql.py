"""The ledger's rows in SQL, once for both engines.

One transaction per appended batch (rows go in with `executemany`): per-row commits would
be tens of times slower, and a batch is the unit the ledger signs anyway. The append takes
the tenant's write lock first (`Database.lock_tenant`: nothing more on SQLite, whose
BEGIN IMMEDIATE already admits one writer; an advisory lock on PostgreSQL), then checks the
head it was given: a writer that read an older head gets `StoreConflict`, re-reads and
tries again, so replicas never fork a log. Verification reads through `snapshot`, one
consistent state that does not block appends.

Tables are prefixed `ledger_` so they share the database with the rest of the gateway.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import islice
from typing import Any, Final, Self

from gateway.store.database import Database, read_time
from gateway.store.protocols import LedgerReader, LogMoved, StoreConflict
from gateway.store.records import (
    AlreadyExists,
    AppendBase,
    EntryRow,
    LedgerHead,
    NodeRow,
    StoredCheckpoint,
    SubjectSetRow,
    VerifiedPoint,
)

PAGE_ROWS: Final = 5000
_MIN_INDEX: Final = -(1 << 63)
_MAX_INDEX: Final = (1 << 63) - 1
#: Values bound in one `IN (...)` (SQLite allows 32,766; a statement stays small).
_PER_STATEMENT: Final = 500
#: Bytes of a keyed id in a subject list.
_ID: Final = 16


#: `SqlLedgerStore.append` on PostgreSQL, in one statement: the head checked (the append
#: writes nothing unless the log still has the expected size; the first column says whether
#: it did), the new subject lists numbered after the tenant's last and stored, each entry
#: given its list's number (an existing list's, or a new one's; 0 for none), then the
#: nodes, the checkpoint (the next number) and the head. Data-modifying CTEs all run on the
#: statement's one snapshot, so each reads the tables as they were before it; none reads a
#: table another writes. Params: tenant, expected size, the distinct lists (digests, ids,
#: in order of first use), the entries (bodies, leaf hashes, list digests or NULL), the
#: nodes (levels, indices, hashes), the new size, the checkpoint note, the frontier, and
#: the `AppendBase` (the head's frontier and the latest checkpoint's seq, both checked
#: unless the seq is NULL). It returns whether it appended, the lists it stored and the
#: checkpoint's seq.
_APPEND_PG: Final = """
WITH p AS (
    SELECT CAST(? AS TEXT) AS tenant, CAST(? AS BIGINT) AS expected,
        CAST(? AS BYTEA[]) AS list_digests, CAST(? AS BYTEA[]) AS list_ids,
        CAST(? AS BYTEA[]) AS bodies, CAST(? AS BYTEA[]) AS leaves,
        CAST(? AS BYTEA[]) AS entry_lists, CAST(? AS BIGINT[]) AS levels,
        CAST(? AS BIGINT[]) AS idxs, CAST(? AS BYTEA[]) AS hashes,
        CAST(? AS BIGINT) AS new_size, CAST(? AS TEXT) AS note, CAST(? AS BYTEA) AS frontier,
        CAST(? AS BYTEA) AS base_frontier, CAST(? AS BIGINT) AS base_seq
), tip AS (
    SELECT h.size, h.frontier,
        (SELECT COALESCE(MAX(c.seq), 0) FROM ledger_checkpoints c
            WHERE c.tenant = p.tenant) AS seq,
        (SELECT COALESCE(MAX(s.set_no), 0) FROM ledger_subject_sets s
            WHERE s.tenant = p.tenant) AS last_set
    FROM p LEFT JOIN ledger_heads h ON h.tenant = p.tenant
), head AS (
    SELECT COALESCE(t.size, 0) = p.expected AND (p.base_seq IS NULL
            OR (t.seq = p.base_seq AND t.frontier IS NOT DISTINCT FROM p.base_frontier)) AS ok,
        t.seq + 1 AS seq, t.last_set
    FROM p, tip t
), known AS (
    SELECT s.digest, s.set_no FROM ledger_subject_sets s, p
    WHERE s.tenant = p.tenant AND s.digest = ANY(p.list_digests)
), new AS (
    SELECT g.digest, g.ids, head.last_set + row_number() OVER (ORDER BY g.n) AS set_no
    FROM p, head, unnest(p.list_digests, p.list_ids) WITH ORDINALITY AS g(digest, ids, n)
    WHERE head.ok AND NOT EXISTS (SELECT 1 FROM known k WHERE k.digest = g.digest)
), stored AS (
    INSERT INTO ledger_subject_sets (tenant, set_no, digest, ids)
    SELECT p.tenant, new.set_no, new.digest, new.ids FROM p, new
), numbered AS (
    SELECT digest, set_no FROM known UNION ALL SELECT digest, set_no FROM new
), added AS (
    INSERT INTO ledger_entries (tenant, idx, body, leaf_hash, subject_set)
    SELECT p.tenant, p.expected + e.n - 1, e.body, e.leaf, COALESCE(x.set_no, 0)
    FROM p CROSS JOIN head
    CROSS JOIN unnest(p.bodies, p.leaves, p.entry_lists) WITH ORDINALITY AS e(body, leaf, list, n)
    LEFT JOIN numbered x ON x.digest = e.list
    WHERE head.ok
), grown AS (
    INSERT INTO ledger_nodes (tenant, level, idx, hash)
    SELECT p.tenant, n.level, n.idx, n.hash
    FROM p, head, unnest(p.levels, p.idxs, p.hashes) AS n(level, idx, hash)
    WHERE head.ok
), signed AS (
    INSERT INTO ledger_checkpoints (tenant, seq, size, note)
    SELECT p.tenant, head.seq, p.new_size, p.note FROM p, head WHERE head.ok
), moved AS (
    INSERT INTO ledger_heads (tenant, size, frontier)
    SELECT p.tenant, p.new_size, p.frontier FROM p, head WHERE head.ok
    ON CONFLICT (tenant) DO UPDATE SET size = excluded.size, frontier = excluded.frontier
)
SELECT head.ok, (SELECT count(*) FROM new), head.seq FROM head
"""


def _split_frontier(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))


def _prefix(subject: bytes) -> int:
    """The index key of a keyed id: its first 8 bytes as a signed 64-bit integer (both
    engines keep that in 8 bytes; a hit is confirmed in the list itself)."""
    return int.from_bytes(subject[:8], "big", signed=True)


#: The modulus of the index checksum (`unsound_index`): small enough that a sum of a
#: list's remainders stays far inside 64 bits on both engines.
_CHECK: Final = 1_000_003


def _prefixes(ids: bytes) -> list[int]:
    """The distinct index keys of a binary list, sorted."""
    return sorted({_prefix(ids[i : i + _ID]) for i in range(0, len(ids), _ID)})


def _remainder(prefix: int) -> int:
    """`prefix % _CHECK` as SQL computes it (truncating: the sign of the dividend)."""
    r = abs(prefix) % _CHECK
    return -r if prefix < 0 else r


def _holds(ids: bytes, subject: bytes) -> bool:
    """Whether a sorted list of 16-byte ids holds `subject` (binary search)."""
    lo, hi = 0, len(ids) // _ID
    while lo < hi:
        mid = (lo + hi) // 2
        here = ids[mid * _ID : mid * _ID + _ID]
        if here == subject:
            return True
        if here < subject:
            lo = mid + 1
        else:
            hi = mid
    return False


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _PER_STATEMENT):
        yield values[start : start + _PER_STATEMENT]


class _Reads:
    """The read half of the store, over one database connection."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _all(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        return self.database.all(sql, params, reuse_plan=reuse_plan)

    def tenants(self) -> list[str]:
        rows = self._all(
            "SELECT tenant FROM ledger_heads UNION SELECT tenant FROM ledger_checkpoints"
            " UNION SELECT DISTINCT tenant FROM ledger_entries ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def head(self, tenant: str) -> LedgerHead | None:
        rows = self._all(
            "SELECT size, frontier FROM ledger_heads WHERE tenant = ?", (tenant,), reuse_plan=True
        )
        if not rows:
            return None
        size, blob = rows[0]
        return LedgerHead(int(size), _split_frontier(bytes(blob)))

    def iter_entries(
        self, tenant: str, start: int | None = None, stop: int | None = None
    ) -> Iterator[EntryRow]:
        # Keyset pages: the lock is held per page, never across a yield.
        low = _MIN_INDEX if start is None else start
        high = _MAX_INDEX if stop is None else stop
        while low < high:
            rows = self.database.in_key_order(
                "SELECT idx, body, leaf_hash FROM ledger_entries"
                " WHERE tenant = ? AND idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                (tenant, low, high, PAGE_ROWS),
            )
            yield from rows
            if len(rows) < PAGE_ROWS:
                return
            low = int(rows[-1][0]) + 1

    def leaf_hashes(self, tenant: str, start: int, stop: int) -> list[bytes]:
        rows = self._all(
            "SELECT leaf_hash FROM ledger_entries WHERE tenant = ? AND idx >= ? AND idx < ?"
            " ORDER BY idx",
            (tenant, start, stop),
        )
        return [r[0] for r in rows]

    def node_hashes(self, tenant: str, level: int, start: int, stop: int) -> list[bytes]:
        rows = self._all(
            "SELECT hash FROM ledger_nodes WHERE tenant = ? AND level = ? AND idx >= ?"
            " AND idx < ? ORDER BY idx",
            (tenant, level, start, stop),
        )
        return [r[0] for r in rows]

    def iter_nodes(self, tenant: str, after_size: int = 0) -> Iterator[NodeRow]:
        # Completion order: a node at (level, idx) completes with leaf (idx + 1) << level.
        after = (after_size, 1 << 30) if after_size > 0 else (-1, -1)
        while True:
            rows = self._all(
                "SELECT level, idx, hash, (idx + 1) << CAST(level AS INTEGER) AS done"
                " FROM ledger_nodes WHERE tenant = ? AND ((idx + 1) << CAST(level AS INTEGER) > ?"
                " OR ((idx + 1) << CAST(level AS INTEGER) = ? AND level > ?))"
                " ORDER BY done, level LIMIT ?",
                (tenant, after[0], after[0], after[1], PAGE_ROWS),
            )
            for level, idx, hash_, _ in rows:
                yield level, idx, hash_
            if len(rows) < PAGE_ROWS:
                return
            after = (int(rows[-1][3]), int(rows[-1][0]))

    def subject_sets(self, tenant: str, digests: Collection[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for chunk in _chunks(sorted(set(digests))):
            match, params = self.database.one_of(chunk)
            for digest, ids in self._all(
                f"SELECT digest, ids FROM ledger_subject_sets WHERE tenant = ? AND digest {match}",
                (tenant, *params),
            ):
                found[bytes(digest)] = bytes(ids)
        return found

    def iter_subject_sets(self, tenant: str) -> Iterator[tuple[bytes, bytes]]:
        after = _MIN_INDEX
        while True:
            rows = self.database.in_key_order(
                "SELECT set_no, digest, ids FROM ledger_subject_sets WHERE tenant = ?"
                " AND set_no > ? ORDER BY set_no LIMIT ?",
                (tenant, after, 100),
            )
            for _, digest, ids in rows:
                yield bytes(digest), bytes(ids)
            if len(rows) < 100:
                return
            after = int(rows[-1][0])

    def entries_carrying(self, tenant: str, subject: bytes) -> list[int]:
        # Lists up to the index head through the index; the few stored since, directly.
        head = self._index_head(tenant)
        rows = self._all(
            "SELECT s.set_no, s.ids FROM ledger_subject_index i JOIN ledger_subject_sets s"
            " ON s.tenant = i.tenant AND s.set_no = i.set_no"
            " WHERE i.tenant = ? AND i.prefix = ?",
            (tenant, _prefix(subject)),
        )
        sets = [int(no) for no, ids in rows if _holds(bytes(ids), subject)]
        sets += [no for no, ids in self._lists_after(tenant, head) if _holds(ids, subject)]
        found: list[int] = []
        for chunk in _chunks(sets):
            match, params = self.database.one_of(chunk)
            found.extend(
                int(r[0])
                for r in self._all(
                    f"SELECT idx FROM ledger_entries WHERE tenant = ? AND subject_set {match}",
                    (tenant, *params),
                )
            )
        return sorted(found)

    def _index_head(self, tenant: str) -> int:
        rows = self._all("SELECT set_no FROM ledger_index_heads WHERE tenant = ?", (tenant,))
        return int(rows[0][0]) if rows else 0

    def _lists_after(self, tenant: str, after: int, page: int = 100) -> Iterator[tuple[int, bytes]]:
        """(number, ids) of the tenant's lists numbered above `after`, in order, read
        `page` at a time."""
        while True:
            rows = self.database.in_key_order(
                "SELECT set_no, ids FROM ledger_subject_sets WHERE tenant = ? AND set_no > ?"
                " ORDER BY set_no LIMIT ?",
                (tenant, after, page),
            )
            for no, ids in rows:
                yield int(no), bytes(ids)
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def entries_at(self, tenant: str, indices: Sequence[int]) -> list[EntryRow]:
        rows: list[EntryRow] = []
        for chunk in _chunks(sorted(set(indices))):
            match, params = self.database.one_of(chunk)
            rows.extend(
                self._all(
                    f"SELECT idx, body, leaf_hash FROM ledger_entries WHERE tenant = ?"
                    f" AND idx {match}",
                    (tenant, *params),
                )
            )
        rows.sort(key=lambda r: int(r[0]))
        return rows

    def iter_unindexed(self, tenant: str) -> Iterator[EntryRow]:
        low = _MIN_INDEX
        while True:
            rows = self.database.in_key_order(
                "SELECT idx, body, leaf_hash FROM ledger_entries WHERE tenant = ?"
                " AND subject_set IS NULL AND idx >= ? ORDER BY idx LIMIT ?",
                (tenant, low, PAGE_ROWS),
            )
            yield from rows
            if len(rows) < PAGE_ROWS:
                return
            low = int(rows[-1][0]) + 1

    def verified(self, tenant: str) -> VerifiedPoint | None:
        rows = self._all(
            "SELECT size, seq, frontier, verified_at FROM ledger_verified WHERE tenant = ?",
            (tenant,),
        )
        if not rows:
            return None
        size, seq, frontier, at = rows[0]
        when = read_time(at)
        assert when is not None
        return VerifiedPoint(int(size), int(seq), _split_frontier(bytes(frontier)), when)

    def iter_checkpoints(self, tenant: str) -> Iterator[StoredCheckpoint]:
        after = _MIN_INDEX
        while True:
            rows = self._all(
                "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (tenant, after, PAGE_ROWS),
            )
            for seq, size, note in rows:
                yield StoredCheckpoint(seq, size, note)
            if len(rows) < PAGE_ROWS:
                return
            after = int(rows[-1][0])

    def tip(self, tenant: str) -> tuple[LedgerHead | None, StoredCheckpoint | None]:
        """`head` and `latest_checkpoint` in one statement (what every append reads)."""
        rows = self._all(
            "SELECT h.size, h.frontier, c.seq, c.size, c.note"
            " FROM (SELECT CAST(? AS TEXT) AS tenant) t"
            " LEFT JOIN ledger_heads h ON h.tenant = t.tenant"
            " LEFT JOIN ledger_checkpoints c ON c.tenant = t.tenant AND c.seq ="
            " (SELECT MAX(seq) FROM ledger_checkpoints WHERE tenant = t.tenant)",
            (tenant,),
        )
        size, blob, seq, cp_size, note = rows[0]
        head = None if size is None else LedgerHead(int(size), _split_frontier(bytes(blob)))
        latest = None if seq is None else StoredCheckpoint(int(seq), int(cp_size), str(note))
        return head, latest

    def latest_checkpoint(self, tenant: str) -> StoredCheckpoint | None:
        rows = self._all(
            "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ?"
            " ORDER BY seq DESC LIMIT 1",
            (tenant,),
        )
        return StoredCheckpoint(*rows[0]) if rows else None

    def checkpoint_at(self, tenant: str, size: int) -> StoredCheckpoint | None:
        rows = self._all(
            "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ? AND size = ?"
            " ORDER BY seq DESC LIMIT 1",
            (tenant, size),
        )
        return StoredCheckpoint(*rows[0]) if rows else None

    def checkpoints_after(self, tenant: str, after_seq: int, limit: int) -> list[StoredCheckpoint]:
        rows = self._all(
            "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (tenant, max(after_seq, _MIN_INDEX), max(limit, 0)),
        )
        return [StoredCheckpoint(*r) for r in rows]


class SqlLedgerStore(_Reads):
    """The ledger tables on a `Database` (the gateway store's own, so that its transactions
    take the ledger's appends in)."""

    def append(
        self,
        tenant: str,
        expected_size: int,
        *,
        entries: Sequence[tuple[bytes, bytes]],
        nodes: Sequence[NodeRow],
        frontier: Sequence[bytes],
        checkpoint_note: str,
        subject_sets: Sequence[SubjectSetRow] = (),
        base: AppendBase | None = None,
    ) -> int:
        new_size = expected_size + len(entries)
        db = self.database
        if db.dialect == "postgres":
            with db.transaction():
                db.lock_tenant(tenant)
                return self._append_in_one(
                    tenant, expected_size, entries=entries, nodes=nodes,
                    frontier=b"".join(frontier), note=checkpoint_note, sets=subject_sets,
                    base=base,
                )  # fmt: skip
        with db.transaction():
            seq = self._check_size(tenant, expected_size, base)
            set_of = self._store_sets(tenant, subject_sets) if subject_sets else {}
            db.executemany(
                "INSERT INTO ledger_entries (tenant, idx, body, leaf_hash, subject_set)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (tenant, expected_size + i, body, leaf, set_of.get(i, 0))
                    for i, (body, leaf) in enumerate(entries)
                ],
            )
            if nodes:
                db.executemany(
                    "INSERT INTO ledger_nodes (tenant, level, idx, hash) VALUES (?, ?, ?, ?)",
                    [(tenant, level, idx, h) for level, idx, h in nodes],
                )
            self._insert_checkpoint(tenant, seq, new_size, checkpoint_note)
            db.execute(
                "INSERT INTO ledger_heads (tenant, size, frontier) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant) DO UPDATE SET size = excluded.size,"
                " frontier = excluded.frontier",
                (tenant, new_size, b"".join(frontier)),
            )
        return seq

    def _append_in_one(
        self,
        tenant: str,
        expected: int,
        *,
        entries: Sequence[tuple[bytes, bytes]],
        nodes: Sequence[NodeRow],
        frontier: bytes,
        note: str,
        sets: Sequence[SubjectSetRow],
        base: AppendBase | None,
    ) -> int:
        """`append` on PostgreSQL, under the tenant's lock: one statement (`_APPEND_PG`)
        instead of eight. Every page of a sync appends its inbound entry inside its
        transaction, so each statement was a round trip the tenant's lock was held for: on
        a two-core machine kept busy, an append took 3.0 ms (median) as eight statements
        and 1.5 ms as this one. What is written is what the other engine's statements
        write, row for row."""
        lists = {digest: ids for _, digest, ids in sets if ids}
        of_entry: list[bytes | None] = [None] * len(entries)
        for offset, digest, ids in sets:
            if ids:
                of_entry[offset] = digest
        try:
            rows = self.database.all_then_commit(
                _APPEND_PG,
                (
                    tenant, expected, list(lists), list(lists.values()),
                    [b for b, _ in entries], [leaf for _, leaf in entries], of_entry,
                    [n[0] for n in nodes], [n[1] for n in nodes], [n[2] for n in nodes],
                    expected + len(entries), note, frontier,
                    None if base is None else base.frontier,
                    None if base is None else base.checkpoint_seq,
                ),
                reuse_plan=True,  # one tenant's head and rows by key: planned once
            )  # fmt: skip
        except AlreadyExists:
            # A row of the append is there already (an entry, a tree node, a checkpoint):
            # another writer's, as on SQLite, where the same is a StoreConflict.
            raise StoreConflict("the log already holds part of this append") from None
        appended, stored, seq = rows[0]
        if not appended:
            raise LogMoved("the log grew since its head was read")
        if stored:
            self.database.wrote("ledger_subject_sets", int(stored))
        return int(seq)

    def _store_sets(self, tenant: str, sets: Sequence[SubjectSetRow]) -> dict[int, int]:
        """Under the tenant's lock: the number of each entry's subject list, storing and
        indexing the lists not stored yet (an empty list is 0, like no list)."""
        db = self.database
        wanted = {digest: ids for _, digest, ids in sets if ids}
        numbers: dict[bytes, int] = {}
        for chunk in _chunks(sorted(wanted)):
            match, params = db.one_of(chunk)
            for digest, n in self._all(
                "SELECT digest, set_no FROM ledger_subject_sets"
                f" WHERE tenant = ? AND digest {match}",
                (tenant, *params),
            ):
                numbers[bytes(digest)] = int(n)
        new = [d for d in wanted if d not in numbers]
        if new:
            rows = self._all(
                "SELECT COALESCE(MAX(set_no), 0) FROM ledger_subject_sets WHERE tenant = ?",
                (tenant,),
            )
            last = int(rows[0][0])
            for n, digest in enumerate(new, last + 1):
                numbers[digest] = n
            db.insert_rows(
                "ledger_subject_sets",
                ("tenant", "set_no", "digest", "ids"),
                [(tenant, numbers[d], d, wanted[d]) for d in new],
            )
        return {offset: numbers.get(digest, 0) for offset, digest, _ in sets}

    def index_subject_lists(self, tenant: str, limit: int) -> int:
        """Index up to `limit` lists stored since the index head, in one transaction of
        their own (never the sync's: a page's commit stores its list and goes on); the
        number indexed. Safe on several replicas at once: rows already there are skipped
        and the head only moves forward."""
        db = self.database
        with db.transaction():
            head = self._index_head(tenant)
            lists = list(islice(self._lists_after(tenant, head, page=limit), limit))
            if not lists:
                return 0
            rows = [(tenant, prefix, no) for no, ids in lists for prefix in _prefixes(ids)]
            db.executemany(
                "INSERT INTO ledger_subject_index (tenant, prefix, set_no) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                rows,
            )
            last = lists[-1][0]
            db.execute(
                "INSERT INTO ledger_index_heads (tenant, set_no) VALUES (?, ?)"
                " ON CONFLICT (tenant) DO UPDATE SET set_no = excluded.set_no"
                " WHERE excluded.set_no > ledger_index_heads.set_no",
                (tenant, last),
            )
        return len(lists)

    def unsound_index(self, tenant: str) -> list[int]:
        """Lists up to the index head whose index rows are not those their ids give
        (rows missing, extra or altered): each list's expected row count and a checksum of
        its prefixes against the stored rows'. One pass over the tenant's index and its
        lists; for the full self-check, not for every request."""
        stored = {
            int(no): (int(n), int(check))
            for no, n, check in self._all(
                # prefix mod _CHECK, spelled with integer division (truncating on both
                # engines; PostgreSQL's driver reserves the percent sign).
                f"SELECT set_no, count(*), sum(prefix - (prefix / {_CHECK}) * {_CHECK})"
                " FROM ledger_subject_index"
                " WHERE tenant = ? GROUP BY set_no",
                (tenant,),
            )
        }
        head = self._index_head(tenant)
        bad = [no for no in stored if no > head]
        for no, ids in self._lists_after(tenant, 0):
            if no > head:
                break
            prefixes = _prefixes(ids)
            expected = (len(prefixes), sum(_remainder(p) for p in prefixes))
            if stored.get(no) != expected:
                bad.append(no)
        return sorted(bad)

    def reindex_subject_lists(self, tenant: str, set_nos: Sequence[int]) -> None:
        """Rebuild the index rows of these lists from the lists themselves."""
        db = self.database
        for chunk in _chunks(sorted(set(set_nos))):
            match, params = db.one_of(chunk)
            with db.transaction():
                db.execute(
                    f"DELETE FROM ledger_subject_index WHERE tenant = ? AND set_no {match}",
                    (tenant, *params),
                )
                lists = db.all(
                    "SELECT set_no, ids FROM ledger_subject_sets"
                    f" WHERE tenant = ? AND set_no {match}",
                    (tenant, *params),
                )
                db.executemany(
                    "INSERT INTO ledger_subject_index (tenant, prefix, set_no) VALUES (?, ?, ?)",
                    [(tenant, p, int(no)) for no, ids in lists for p in _prefixes(bytes(ids))],
                )

    def set_verified(self, tenant: str, point: VerifiedPoint) -> None:
        db = self.database
        with db.transaction():
            db.execute(
                "INSERT INTO ledger_verified (tenant, size, seq, frontier, verified_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET"
                " size = excluded.size, seq = excluded.seq, frontier = excluded.frontier,"
                " verified_at = excluded.verified_at",
                (tenant, point.size, point.seq, b"".join(point.frontier),
                 db.time(point.verified_at)),
            )  # fmt: skip

    @contextmanager
    def writing(self, tenant: str) -> Iterator[None]:
        with self.database.transaction():
            self.database.lock_tenant(tenant)
            yield

    def add_checkpoint(self, tenant: str, expected_size: int, note: str) -> None:
        with self.database.transaction():
            seq = self._check_size(tenant, expected_size)
            self._insert_checkpoint(tenant, seq, expected_size, note)

    def _check_size(self, tenant: str, expected: int, base: AppendBase | None = None) -> int:
        """Under the tenant's lock (held to COMMIT): the head cannot move after this.
        Returns the number the next checkpoint takes (asked in the same statement: an
        append is a dozen statements, and on PostgreSQL each is a round trip)."""
        self.database.lock_tenant(tenant)
        rows = self._all(
            "SELECT h.size, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger_checkpoints c"
            " WHERE c.tenant = t.tenant), h.frontier"
            " FROM (SELECT CAST(? AS TEXT) AS tenant) t"
            " LEFT JOIN ledger_heads h ON h.tenant = t.tenant",
            (tenant,),
        )
        size, seq, frontier = rows[0]
        moved = (size or 0) != expected
        if base is not None and not moved:
            stored = None if frontier is None else bytes(frontier)
            moved = stored != base.frontier or int(seq) != base.checkpoint_seq + 1
        if moved:
            raise LogMoved("the log grew since its head was read")
        return int(seq)

    def _insert_checkpoint(self, tenant: str, seq: int, size: int, note: str) -> None:
        self.database.execute(
            "INSERT INTO ledger_checkpoints (tenant, seq, size, note) VALUES (?, ?, ?, ?)",
            (tenant, seq, size, note),
        )

    def snapshot(self) -> AbstractContextManager[LedgerReader]:
        return self._snapshot()

    @contextmanager
    def _snapshot(self) -> Iterator[LedgerReader]:
        with self.database.snapshot() as view:
            yield _Reads(view)

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
