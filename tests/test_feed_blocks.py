"""Full feed pages kept in memory (`gateway.delivery.blocks`) on a real SQLite store: served
again only while nothing they hold was deleted or rewritten, never a page at the head,
never past their time, within their memory bound."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.delivery.blocks import FeedBlocks, Page
from gateway.ledger import entry as entries
from gateway.ledger.entry import TransferEntry, canonical_bytes
from gateway.store.records import FeedBlock, NewEvent, Suppression, Tenant
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def sid(n: int) -> str:
    return f"{n:032x}"


def events(start: int, n: int) -> list[NewEvent]:
    return [
        NewEvent(f"evt_{i}", "subject.upserted", sid(i), {"email": f"p{i}@acme.example"}, T0,
                 "afas", "ins_1")
        for i in range(start, start + n)
    ]  # fmt: skip


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "sluis.db")
    s.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    s.append_events("acme", events(0, 25))
    yield s
    s.close()


def render(block: FeedBlock) -> bytes:
    return b"body:" + block.wire


def get(blocks: FeedBlocks, store: SqliteStore, after: int, limit: int) -> FeedBlock | None:
    page = blocks.get(store, "acme", after, limit, render)
    return None if page is None else page.block


def test_a_full_page_is_read_once_and_rendered_once(store: SqliteStore) -> None:
    blocks = FeedBlocks()
    rendered: list[bytes] = []

    def counting(block: FeedBlock) -> bytes:
        rendered.append(block.wire)
        return render(block)

    fresh = store.feed_block("acme", 0, 10)
    first = blocks.get(store, "acme", 0, 10, counting)
    again = blocks.get(store, "acme", 0, 10, counting)
    assert (blocks.misses, blocks.hits) == (1, 1) and len(rendered) == 1
    assert first is not None and again is not None and fresh is not None
    assert first.block == fresh and first.body == again.body == render(fresh)
    # Kept without its wire bytes (the body holds them once); the ids stay for the ledger.
    assert again.block.wire == b"" and again.block.subject_ids == fresh.subject_ids


class _SlowReads:
    """The real store, its block reads slowed down so that readers overlap, and counted."""

    def __init__(self, store: SqliteStore, *, fail: bool = False) -> None:
        self.store, self.fail, self.reads = store, fail, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def feed_block(self, tenant: str, after: int, limit: int) -> FeedBlock | None:
        self.reads += 1
        time.sleep(0.3)
        if self.fail:
            raise RuntimeError("the database went away")
        return self.store.feed_block(tenant, after, limit)


def _together(blocks: FeedBlocks, store: object, n: int, limit: int) -> list[object]:
    """`n` consumers asking for the same page at once; each one's page, or what it raised."""
    got: list[object] = [None] * n
    start = threading.Barrier(n)

    def consumer(i: int) -> None:
        start.wait()
        try:
            got[i] = blocks.get(store, "acme", 0, limit, render)  # type: ignore[arg-type]
        except Exception as exc:
            got[i] = exc

    threads = [threading.Thread(target=consumer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return got


@pytest.mark.parametrize("limit", [10, 100])  # a full page, and one at the head
def test_consumers_missing_the_same_page_together_share_one_read(
    store: SqliteStore, limit: int
) -> None:
    slow = _SlowReads(store)
    blocks = FeedBlocks()
    pages = _together(blocks, slow, 6, limit)
    assert slow.reads == 1 and blocks.misses == 6 and blocks.shared == 5
    assert all(isinstance(p, Page) for p in pages)
    fresh = store.feed_block("acme", 0, limit)
    assert fresh is not None
    assert {p.block.wire for p in pages if isinstance(p, Page)} == {fresh.wire}
    bodies = {p.body for p in pages if isinstance(p, Page)}
    assert bodies == ({render(fresh)} if limit == 10 else {None})
    # Read again only once it is neither kept nor being read.
    _together(blocks, slow, 3, limit)
    assert slow.reads == (1 if limit == 10 else 2)


def test_a_shared_read_that_fails_fails_for_everyone_who_waited(store: SqliteStore) -> None:
    slow = _SlowReads(store, fail=True)
    blocks = FeedBlocks()
    got = _together(blocks, slow, 4, 10)
    assert slow.reads == 1
    assert all(isinstance(g, RuntimeError) for g in got)
    slow.fail = False  # nothing of the failure is kept
    assert get(blocks, slow, 0, 10) is not None  # type: ignore[arg-type]
    assert slow.reads == 2


def test_the_page_at_the_head_is_never_kept(store: SqliteStore) -> None:
    blocks = FeedBlocks()
    head = blocks.get(store, "acme", 20, 10, render)
    assert head is not None and head.block.count == 5 and head.body is None
    store.append_events("acme", events(25, 3))
    grown = get(blocks, store, 20, 10)
    assert grown is not None and grown.count == 8 and blocks.hits == 0


def test_an_erasure_anywhere_makes_every_kept_page_of_the_tenant_read_again(
    store: SqliteStore,
) -> None:
    blocks = FeedBlocks()
    get(blocks, store, 0, 10)
    get(blocks, store, 10, 10)
    store.delete_subject_data("acme", [sid(3)])
    page = blocks.get(store, "acme", 0, 10, render)
    assert page is not None and b"p3@acme.example" not in (page.body or b"")
    assert b"p4@acme.example" in (page.body or b"")
    assert sid(3) not in page.block.subject_ids and blocks.hits == 0
    # The other kept page of the tenant went too (it held nothing of theirs, but it was
    # read under the old generation).
    assert get(blocks, store, 10, 10) is not None and blocks.hits == 0


def test_a_kept_page_carries_the_restricted_count_of_now(store: SqliteStore) -> None:
    blocks = FeedBlocks()
    first = get(blocks, store, 0, 10)
    assert first is not None and first.restricted == 0
    store.add_suppressions([Suppression("acme", sid(4), "restricted", T0, "acc_1")])
    kept = get(blocks, store, 0, 10)
    assert kept is not None and blocks.hits == 1 and kept.restricted == 1


def test_pages_are_kept_briefly_and_within_their_bound(store: SqliteStore) -> None:
    ticks = Ticks()
    blocks = FeedBlocks(ttl=30.0, clock=ticks)
    get(blocks, store, 0, 10)
    ticks.now = 31.0
    get(blocks, store, 0, 10)
    assert blocks.hits == 0
    one, two = store.feed_block("acme", 0, 10), store.feed_block("acme", 10, 10)
    assert one is not None and two is not None
    # Room for one page (its body, and its ids) but not for two.
    largest = max(len(render(one)), len(render(two)))
    small = FeedBlocks(max_bytes=largest + 40 * 10 + 250)
    get(small, store, 0, 10)
    get(small, store, 10, 10)  # pushes the first out
    get(small, store, 0, 10)
    assert small.hits == 0
    get(small, store, 0, 10)
    assert small.hits == 1


def test_a_pages_outbound_entry_is_made_once_and_is_each_consumers_own() -> None:
    blocks = FeedBlocks()
    ids = sorted(sid(n) for n in range(50))
    made: list[int] = []

    def make(destination: str, at: datetime) -> TransferEntry:
        return entries.outbound(
            time=at, tenant="acme", connector="afas", instruction_id="ins_1",
            mapping_digest="sha256:" + "ab" * 32, subject_ids=ids,
            fields={"email": "user.contact.email"}, destination=destination,
        )  # fmt: skip

    def first() -> TransferEntry:
        made.append(1)
        return make("feed:con_a", T0)

    key = ("acme", "afas", 0, 50, 50, "ins_1")
    later = T0.replace(minute=5)
    a = blocks.outbound(key, first, now=T0, destination="feed:con_a")
    b = blocks.outbound(key, first, now=later, destination="feed:con_b")
    assert len(made) == 1
    # Byte for byte what each consumer's own entry would have been.
    assert canonical_bytes(a) == canonical_bytes(make("feed:con_a", T0))
    assert canonical_bytes(b) == canonical_bytes(make("feed:con_b", later))
    with pytest.raises(ValueError, match="destination"):
        blocks.outbound(key, first, now=T0, destination="feed:<script>")
