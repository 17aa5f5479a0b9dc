"""Group commit: appends from many threads at once committed together.

Sixty-four feed consumers each write an `outbound` entry before their page is sent; one
transaction, one head read and one signed checkpoint per page made the ledger the feed's
largest cost (45% of its throughput, measured in bench/bench_feed_load.py). Here the first
caller to arrive commits its own batch; callers that arrive while a commit runs queue up,
and when it ends the first of them commits everything queued, in one transaction. Each
caller still returns only once its own entries are committed, or raises what that commit
raised, so "written to the ledger before the response is sent" holds for every page.

A caller that need not wait in its thread (the feed route, which waits in its event loop)
uses `submit_later`: it queues its items and gets a future, and its thread is free at
once. With `submit`, every queued page held one of the event loop's six worker threads
for the whole commit it waited on, so on PostgreSQL at most five pages made a group and
the other consumers queued for a thread (at 64 consumers a page spent 130 ms of its
150 ms there, measured in bench/bench_feed_load.py). Groups of such callers are committed
by a small pool of committer threads (`committers`), one group of a ledger at a time.

The queue is per process: replicas commit their own groups and the store's tenant lock
orders the groups, as it orders single appends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

T = TypeVar("T")

#: Committer threads shared by every group of the process: groups of different tenants
#: commit side by side, a tenant's one after the other.
COMMITTER_THREADS: Final = 4

#: Its threads start on first use.
_COMMITTERS: Final = ThreadPoolExecutor(COMMITTER_THREADS, thread_name_prefix="sluis-group-commit")


def committers() -> ThreadPoolExecutor:
    """The process's committer threads."""
    return _COMMITTERS


@dataclass(eq=False)
class _Waiter(Generic[T]):
    items: Sequence[T]
    woken: threading.Event = field(default_factory=threading.Event)
    #: Set for a caller of `submit_later`: resolved instead of woken.
    future: Future[int] | None = None
    #: Set by the committer: lead the next group (`start` stays None) or done.
    lead: bool = False
    start: int | None = None
    error: BaseException | None = None

    def done(self) -> None:
        if self.future is None:
            self.woken.set()
        elif self.error is not None:
            self.future.set_exception(self.error)
        else:
            assert self.start is not None
            self.future.set_result(self.start)


class GroupCommit(Generic[T]):
    """`submit` items; `commit(items)` stores a group and returns the index of its first.

    Never call `submit` (or `submit_later`, which may commit in the caller's thread)
    inside a transaction the committing thread would have to wait for (the caller's own,
    on SQLite): the committer may be another thread.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[T]], int],
        *,
        executor: Callable[[], ThreadPoolExecutor] = committers,
    ) -> None:
        self._commit = commit
        self._executor = executor
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

    def submit_later(self, items: Sequence[T]) -> Future[int]:
        """Queue `items`; a future of the index of the first, set once they are committed
        (or the error their commit raised). If no commit is running, this thread commits
        them now, as `submit` would, and the future is done on return: a lone page costs
        no hop to another thread. Otherwise it returns at once, and the group is committed
        by a committer thread, or by the thread of a `submit` caller queued first."""
        future: Future[int] = Future()
        future.set_running_or_notify_cancel()  # committed entries cannot be called off
        with self._lock:
            self._queue.append(_Waiter(items, future=future))
            lead = not self._busy
            self._busy = True
        if lead:
            self._lead()
        return future

    def _lead(self) -> None:
        """Commit everything queued, then hand the lead to the first caller that queued
        meanwhile (to a committer thread if that caller does not wait in a thread of its
        own), or drop it."""
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
                self._hand_over(successor)
            for waiter in group:
                waiter.done()

    def _hand_over(self, successor: _Waiter[T]) -> None:
        if successor.future is None:
            successor.lead = True
            successor.woken.set()
            return
        try:
            self._executor().submit(self._lead)
        except RuntimeError:  # the interpreter is shutting down: commit here instead
            self._lead()
