"""`gateway.runtime.heap.settle`: what lives on after start is out of the collector's
full passes, and still freed by reference counting."""

from __future__ import annotations

import gc
import weakref

from gateway.runtime import heap


class _Thing:
    pass


def test_settling_freezes_what_lives_and_keeps_refcounting() -> None:
    kept: list[object] = [_Thing()]
    gone = _Thing()
    ref = weakref.ref(gone)
    try:
        frozen = heap.settle()
        # Not equal to the count later: another thread of the test run (a store's
        # checkpointer, a finished fixture's) may free a frozen object meanwhile.
        assert frozen > 0 and gc.get_freeze_count() > frozen // 2
        assert gc.is_tracked(kept)
        # Frozen: out of the collector's view (it lists the generations it walks).
        assert not any(o is kept for o in gc.get_objects())
        del gone
        assert ref() is None  # reference counting still frees a frozen object
    finally:
        gc.unfreeze()  # the test run starts many apps: leave its heap as it was
    assert gc.get_freeze_count() == 0
