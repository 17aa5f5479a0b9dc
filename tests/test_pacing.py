"""`connectors.pacing`: sliding windows that spend a vendor's budget and never more, by
request or by cost, several at once, and one learned from a 429."""

from __future__ import annotations

import pytest

from connectors.pacing import Pacer, Window


def _run(pacer: Pacer, until: float, cost: float = 1.0) -> list[float]:
    """Requests sent as fast as the pacer lets them (a simulated clock)."""
    now, sent = 0.0, []
    while now < until:
        now += pacer.delay(now, cost)
        pacer.sent.append((now, cost))
        sent.append(now)
    return sent


def _most_in(sent: list[float], seconds: float) -> int:
    return max(sum(1 for t in sent if start <= t < start + seconds) for start in sent)


def test_a_share_of_a_budget_is_spent_and_never_more() -> None:
    window = Window.share(300, 60.0, 0.95)
    assert window == Window(285, 60.0)
    sent = _run(Pacer(window), 120.0)
    assert sum(1 for t in sent if t < 60.0) == 285
    assert _most_in(sent, 60.0) == 285
    assert Window.share(1, 1.0, 0.5) == Window(1, 1.0), "never less than one request"


def test_every_window_is_kept_at_once() -> None:
    """Personio's shape: 285 a minute and 14 a second."""
    sent = _run(Pacer(Window(285, 60.0), Window(14, 1.0)), 120.0)
    assert _most_in(sent, 60.0) <= 285 and _most_in(sent, 1.0) <= 14
    assert sum(1 for t in sent if t < 60.0) == 285


def test_the_wait_ends_when_the_oldest_request_leaves_the_window() -> None:
    pacer = Pacer(Window(5, 10.0))
    for at in (0.0, 0.1, 0.2, 0.3, 0.4):
        assert pacer.delay(at) == 0.0
        pacer.sent.append((at, 1.0))
    assert pacer.delay(0.5) == pytest.approx(9.5)
    assert pacer.delay(10.05) == 0.0


def test_costs_are_counted_not_requests() -> None:
    """Graph's shape: resource units in 10 s, a request's cost its own."""
    pacer = Pacer(Window(10, 10.0))
    for t in range(10):
        assert pacer.delay(t / 10) == 0.0
        pacer.sent.append((t / 10, 1.0))
    assert pacer.delay(1.0) == pytest.approx(9.0)
    assert pacer.delay(1.0, cost=3) == pytest.approx(9.2)
    assert pacer.delay(10.0) == 0.0
    assert Pacer(Window(1, 10.0)).delay(0.0, cost=5) == 0.0, "a dear request still goes alone"
    sent = _run(Pacer(Window(10, 10.0)), 60.0, cost=2.5)
    assert _most_in(sent, 10.0) == 4


def test_a_window_is_learned_from_a_429_and_kept() -> None:
    pacer = Pacer()
    now = 0.0
    for _ in range(7):
        pacer.sent.append((now, 1.0))
        now += 0.01
    pacer.learn(1.0, now)  # the seventh was refused: six got through in a second
    assert pacer.learned == Window(6, 1.1)
    start = now
    sent = _run(pacer, 20.0)
    assert _most_in(sent, 1.1) <= 6
    assert len(sent) >= 6 * int((20.0 - start) / 1.1)
    pacer.learn(None, sent[-1])
    assert pacer.learned is not None and pacer.learned.limit <= 6, "a looser guess is ignored"


async def test_wait_sleeps_and_counts_what_it_waited() -> None:
    pacer = Pacer(Window(2, 0.2))
    for _ in range(3):
        await pacer.wait()
    assert len(pacer.sent) == 3 and pacer.waited > 0
