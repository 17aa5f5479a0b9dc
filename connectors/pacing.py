"""Pacing a connector's requests under a vendor's rate limits: sliding windows.

Every vendor counts differently (Personio: requests a minute and a second; Dataverse:
requests in 5 minutes; Graph: resource units, a request's cost, in 10 seconds; Loket: a
limit it does not publish). One rule serves them all: no window of `seconds` may hold more
than `limit` of what is spent. A client that keeps to sliding windows keeps to any fixed
window or token bucket of the same size the server may count in, so the share of the budget
a connector spends is exactly the share it was given (`share`), and no 429 is needed to find
the edge.

Where the vendor publishes no budget, `learn` reads one off the first 429: what was sent in
the `Retry-After` window before it (that request excepted) is what the server admits there.

Hand-written, not `aiolimiter` or `pyrate-limiter`: those count one kind of window each
(a leaky bucket, or fixed rates) and neither learns a limit from a refusal; the rule above
is twenty lines and measured by each vendor's bench (share of the budget used, 429s met).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

#: How far back spending is remembered for windows learned from a 429.
LEARNED_MAX_SECONDS: Final = 300.0


@dataclass(frozen=True)
class Window:
    """At most `limit` spent in any `seconds` (requests, or a vendor's cost units)."""

    limit: float
    seconds: float

    @classmethod
    def share(cls, budget: float, seconds: float, share: float) -> Window:
        """`share` of a vendor's `budget` (at least one request's worth)."""
        return cls(max(1.0, float(int(budget * share))), seconds)


class Pacer:
    """Waits before each request until it fits every window (module docstring)."""

    def __init__(self, *windows: Window) -> None:
        self.windows = list(windows)
        #: The window read off a 429 (`learn`), if any.
        self.learned: Window | None = None
        #: (time sent, cost), oldest first, as long as the longest window needs.
        self.sent: deque[tuple[float, float]] = deque()
        #: Seconds spent waiting for the budget.
        self.waited = 0.0

    def _rules(self) -> list[Window]:
        return [*self.windows, *([self.learned] if self.learned else [])]

    def delay(self, now: float, cost: float = 1.0) -> float:
        """Seconds to wait before a request of `cost` may go at `now`."""
        rules = self._rules()
        longest = max((w.seconds for w in rules), default=0.0)
        sent = self.sent
        while sent and now - sent[0][0] >= max(longest, LEARNED_MAX_SECONDS):
            sent.popleft()
        wait = 0.0
        for rule in rules:
            inside = [(at, spent) for at, spent in sent if now - at < rule.seconds]
            over = sum(spent for _, spent in inside) + cost - rule.limit
            if over <= 0 or not inside:
                continue  # fits; a request dearer than the whole budget still goes alone
            for at, spent in inside:  # until enough of the oldest spending has left
                over -= spent
                if over <= 0:
                    wait = max(wait, at + rule.seconds - now)
                    break
        return max(0.0, wait)

    async def wait(self, cost: float = 1.0) -> None:
        """Sleep until a request of `cost` fits, then count it as sent."""
        while (delay := self.delay(time.monotonic(), cost)) > 0:
            self.waited += delay
            await asyncio.sleep(delay)
        self.sent.append((time.monotonic(), cost))

    def learn(self, retry_after: float | None, now: float) -> None:
        """The latest request was answered 429: keep to what the server admitted in the
        `Retry-After` window before it (at least 1 s), a little longer than that window (the
        server's clock starts when a request arrives, ours when it leaves)."""
        seconds = min(max(retry_after or 1.0, 1.0), LEARNED_MAX_SECONDS)
        admitted = sum(cost for at, cost in list(self.sent)[:-1] if now - at < seconds)
        learned = Window(max(1.0, admitted), seconds * 1.05 + 0.05)
        if self.learned is None or learned.limit < self.learned.limit:
            self.learned = learned
