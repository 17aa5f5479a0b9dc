"""The process's heap, settled once the gateway is listening.

What a gateway makes while it starts (modules, pydantic models and their validators, the
OpenAPI document, settings, pools) lives as long as the process, yet Python's full
collection walked all of it again each time: about 110,000 objects, a 70-100 ms pause of
every thread, twice in half a minute under 64 feed consumers. Each pause held up the
64 pages in flight, about one page in a hundred, so the pauses were the feed's p99
(measured in bench/bench_feed_load.py). `gc.freeze` takes those objects out of the
collector's view: a full collection then walks only what was made since (8,000 objects,
8-27 ms there). Reference counting frees them as before; only a reference cycle among
them, should one ever form, is no longer collected.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect what starting left over, then freeze what lives on; how many are frozen.

    For a long-running process (`sluis serve`), once, after its app has started; not for
    a test run, which starts many apps and would keep each one's cycles."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
