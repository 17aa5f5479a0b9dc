"""Group commit: appends from many threads at once committed together.

Sixty-four feed consumers each write an `outbound` entry before their page is sent; one
transaction, one head read and one signed checkpoint per page made the ledger the feed's
largest cost (45% of its throughput, measured in bench/bench_feed_load.py). Here the first
caller to arrive commits its own batch; callers that arrive while a commit runs queue up,
and when it ends the first of them commits everything queued, in one transaction. Each
caller still returns only once its own entries are committed, or raises what that commit
raised, so "written to the ledger before the response is sent" holds for every page.

The queue is per process: replicas commit their own groups and the store's tenant lock
orders the groups, as it orders single appends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter(Generic[T]):
    items: Sequence[T]
    woken: threading.Event = field(default_factory=threading.Event)
    #: Set by the committer: lead the next group (`start` stays None) or done.
    lead: bool = False
    start: int | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T]):
    """`submit` items; `commit(items)` stores a group and returns the index of its first.

    Never call `submit` inside a transaction the committing thread would have to wait for
    (the caller's own, on SQLite): the committer may be another thread.
    """

    def __init__(self, commit: Callable[[Sequence[T]], int]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T]] = []
        self._busy = False

    def submit(self, items: Sequence[T]) -> int:
        """Commit `items` (with whatever else is queued); the index of the first."""
        me = _Waiter(items)
        with self._lock:
            self._queue.append(me)
            lead = not self._busy
            self._busy = True
        if not lead:
            me.woken.wait()
            if not me.lead:
                if me.error is not None:
                    raise me.error
                assert me.start is not None
                return me.start
        self._lead()
        if me.error is not None:
            raise me.error
        assert me.start is not None
        return me.start

    def _lead(self) -> None:
        """Commit everything queued (this caller's items among it), then hand the lead to
        the first caller that queued meanwhile, or drop it."""
        with self._lock:
            group, self._queue = self._queue, []
        try:
            start = self._commit([item for waiter in group for item in waiter.items])
        except BaseException as exc:  # every caller of the group gets what its commit raised
            for waiter in group:
                waiter.error = exc
        else:
            for waiter in group:
                waiter.start = start
                start += len(waiter.items)
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._busy = successor is not None
            if successor is not None:
                successor.lead = True
                successor.woken.set()
            for waiter in group:
                waiter.woken.set()
