"""Revocation takes effect on fetches already under way, not only on the next page.

A connector can spend minutes on one page: waiting out a `Retry-After`, backing off after
a 5xx, reading a slow answer. A revocation that lands meanwhile must stop it, or the
source is asked again, with the customer's credentials, after the customer said stop.
The engine therefore runs each page fetch through `Revocations.watch`:

* the fetch runs as its own task, registered under its instruction id;
* `revoke(instruction_id)` (called by the admin API right after the store has recorded
  the revocation) cancels those tasks and waits until they are gone, so that once the
  DELETE has returned, nothing more is sent under that instruction by this process;
* while a fetch runs, the instruction is re-read from the store every `poll` seconds, so a
  revocation made by another process (or an expiry) stops it within that interval.

The connector also re-checks the instruction before every attempt (its `before_attempt`
hook), which covers the moment between a retry's wait and its request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from gateway.sync.instructions import InstructionRefused

T = TypeVar("T")
Check = Callable[[], Awaitable[None]]


class Revocations:
    """In-flight fetches by instruction id, and the instructions revoked in this process."""

    def __init__(self) -> None:
        self._fetches: dict[str, set[asyncio.Task[Any]]] = {}
        self._revoked: set[str] = set()

    def is_revoked(self, instruction_id: str) -> bool:
        return instruction_id in self._revoked

    def refusal(self, instruction_id: str) -> InstructionRefused:
        return InstructionRefused(
            "revoked", f"instruction {instruction_id} was revoked", instruction_id
        )

    async def revoke(self, instruction_id: str, *, timeout: float = 10.0) -> None:
        """Stop every fetch under `instruction_id` now and wait until they have stopped.

        Call after the store has recorded the revocation: no later fetch starts (the
        in-memory mark is checked synchronously before one does, and the store by each)."""
        self._revoked.add(instruction_id)
        tasks = list(self._fetches.get(instruction_id, ()))
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def watch(
        self,
        instruction_id: str,
        fetch: Callable[[], Coroutine[Any, Any, T]],
        *,
        check: Check,
        poll: float,
    ) -> T:
        """Run `fetch()` under `instruction_id`; stop it when the instruction is revoked here
        (`revoke`) or `check` (which raises `InstructionRefused`) fails on a poll. `fetch`
        is called only here: a watch cancelled before it starts leaves no coroutine that
        was never awaited."""
        if instruction_id in self._revoked:
            raise self.refusal(instruction_id)
        task = asyncio.ensure_future(fetch())
        running = self._fetches.setdefault(instruction_id, set())
        running.add(task)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=poll)
                if done:
                    break
                await check()
        finally:
            running.discard(task)
            if not running:
                self._fetches.pop(instruction_id, None)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            elif not task.cancelled():
                # Ended as this watch was stopped (the run ended for another reason
                # first): its outcome is taken, not logged by asyncio as never retrieved.
                task.exception()
        if task.cancelled():
            await check()  # the store says why (revoked, with when)
            raise self.refusal(instruction_id)
        return task.result()
