"""Full feed pages kept in memory for a few seconds, shared by every consumer of a replica.

Platforms page the same feed: sixty-four consumers reading from the start ask for the same
pages, and each page's aggregate read (`Store.feed_block`, the database joining a thousand
events' wire bytes) was a third of the feed's cost. A *full* page (as many events as
asked for) cannot change by new events, which only come after it; it changes only when
events are deleted or rewritten (erasure, retention), and every such transaction bumps
the tenant's feed generation in the database (`Store.feed_state`). So a kept block is
served while the generation read for this page still matches the one it was read under
(read first, so a deletion in between makes it miss, never serve stale bytes), with the
tenant's restricted count of now.

What is checked per page is unchanged: the consumer's token, each source's authorisation,
restricted people, and the page's ledger entry. A block holds personal data, so it is
kept briefly (`ttl`, 30 s by default) and in bounded memory; a generation that moved drops
all of the tenant's blocks at once, so an erased person's data does not wait for the time
limit on a replica that serves the tenant again.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from gateway.ledger.entry import TransferEntry, is_destination
from gateway.store.protocols import Store
from gateway.store.records import FeedBlock

#: Bytes of blocks kept at most per process, and how long one is kept; outbound entries.
MAX_BYTES: Final = 32 * 1024 * 1024
TTL_SECONDS: Final = 30.0
MAX_ENTRIES: Final = 256


@dataclass(frozen=True, slots=True)
class Page:
    """A feed block, and its response body when the block is kept (the same bytes for
    every consumer of the page, made once)."""

    block: FeedBlock
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Kept:
    #: The block without its wire bytes: the body holds them, once.
    block: FeedBlock
    body: bytes
    generation: int
    at: float
    size: int


class FeedBlocks:
    """`Store.feed_block` with full blocks kept (see the module docstring); thread-safe."""

    def __init__(
        self,
        *,
        max_bytes: int = MAX_BYTES,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, int, int], _Kept] = OrderedDict()
        self._bytes = 0
        #: Blocks being read, by page and generation: who asks for one meanwhile waits for
        #: that read instead of making its own (`get`).
        self._reading: dict[tuple[str, int, int, int], Future[Page | None]] = {}
        self.hits = 0
        self.misses = 0
        #: Misses that waited for another consumer's read of the same block.
        self.shared = 0
        #: Outbound ledger entries made for kept pages, by what makes them the same for
        #: every consumer (see `outbound`).
        self._entries: OrderedDict[tuple[object, ...], TransferEntry] = OrderedDict()

    def get(
        self,
        store: Store,
        tenant: str,
        after: int,
        limit: int,
        render: Callable[[FeedBlock], bytes],
        *,
        state: tuple[int, int] | None = None,
    ) -> Page | None:
        """The block `store.feed_block` gives (None when the page is not one block), with
        its response body (`render`, made once) when it is a full page. `state` is the
        tenant's `store.feed_state()` when the caller read it this page, before this call.

        Consumers paging together miss together: a block that is not kept is read once
        for all who ask for it while it is being read (under the same generation), the
        others waiting for that read (about as long as their own would take) rather than
        each making the database join the same thousand events again."""
        generation, restricted = state if state is not None else store.feed_state(tenant)
        key = (tenant, after, limit)
        now = self._clock()
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept.generation != generation:
                self._drop_tenant(tenant)
                kept = None
            if kept is not None and now - kept.at <= self._ttl:
                self._kept.move_to_end(key)
                self.hits += 1
                return Page(dataclasses.replace(kept.block, restricted=restricted), kept.body)
            self.misses += 1
            flight = (tenant, after, limit, generation)
            reading = self._reading.get(flight)
            if reading is None:
                reading = self._reading[flight] = Future()
                reading.set_running_or_notify_cancel()
                leads = True
            else:
                self.shared += 1
                leads = False
        if not leads:
            read = reading.result()  # raises what the read raised
            if read is None:
                return None
            return Page(dataclasses.replace(read.block, restricted=restricted), read.body)
        try:
            page = self._read(store, key, generation, now, render)
        except BaseException as exc:
            reading.set_exception(exc)
            raise
        else:
            reading.set_result(page)
        finally:
            with self._lock:
                del self._reading[flight]
        return page

    def _read(
        self,
        store: Store,
        key: tuple[str, int, int],
        generation: int,
        now: float,
        render: Callable[[FeedBlock], bytes],
    ) -> Page | None:
        tenant, after, limit = key
        block = store.feed_block(tenant, after, limit)
        if block is None:
            return None
        if block.count != limit:
            return Page(block)
        body = render(block)
        bare = dataclasses.replace(block, wire=b"")
        self._keep(key, _Kept(bare, body, generation, now, _size(bare, body)))
        return Page(block, body)

    def source_of(self, tenant: str, after: int, limit: int) -> str | None:
        """The source connector of the block kept for this page, if one is, unchecked: what
        the page's first read may ask the standing of in the same statement (`admit`).
        A guess only; `get` still decides whether the block is served."""
        with self._lock:
            kept = self._kept.get((tenant, after, limit))
        return kept.block.source if kept is not None else None

    def outbound(
        self,
        key: tuple[object, ...],
        make: Callable[[], TransferEntry],
        *,
        now: datetime,
        destination: str,
    ) -> TransferEntry:
        """The page's outbound entry for one consumer: `make()` once per page and
        authorisation, then that entry with this consumer's time and destination.

        Sixty-four consumers reading the same page would each validate, sort and hash its
        thousand keyed ids again (400 µs, a fifth of the page's time under load). `key`
        must say all that the entry holds besides time and destination: the tenant, the
        page (its cursor, last event and count, which fix its events, since events are only
        ever removed) and the source's instruction, mapping and fields. The destination is
        checked as the model would (`is_destination`)."""
        if not is_destination(destination):
            raise ValueError("not a destination")
        with self._lock:
            made = self._entries.get(key)
            if made is not None:
                self._entries.move_to_end(key)
        if made is None:
            made = make()
            with self._lock:
                self._entries[key] = made
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popitem(last=False)
        return made.model_copy(update={"time": now.astimezone(UTC), "destination": destination})

    def _keep(self, key: tuple[str, int, int], kept: _Kept) -> None:
        if kept.size > self._max_bytes:
            return
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._kept[key] = kept
            self._bytes += kept.size
            horizon = self._clock() - self._ttl
            while self._kept and (
                self._bytes > self._max_bytes or next(iter(self._kept.values())).at < horizon
            ):
                _, gone = self._kept.popitem(last=False)
                self._bytes -= gone.size

    def _drop_tenant(self, tenant: str) -> None:
        for key in [k for k in self._kept if k[0] == tenant]:
            self._bytes -= self._kept.pop(key).size

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._entries.clear()
            self._bytes = 0


def _size(block: FeedBlock, body: bytes) -> int:
    return len(body) + 40 * len(block.subject_ids) + 200
