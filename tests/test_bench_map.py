"""bench_map.py reports the memory of a run's whole process tree, not its largest process.

The parallel `sluis map` is a parent and one worker per core; issue #6 found the bench
quoting only the biggest of them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_map.py"

# A parent and two forked children, each holding 40 MiB of its own (written after the fork,
# so the pages are not shared), alive together for a moment.
FAMILY = """
import os, time
block = bytearray(40 << 20)
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(1.0)
        os._exit(0)
    children.append(pid)
block[::4096] = b"y" * len(block[::4096])
for pid in children:
    os.waitpid(pid, 0)
"""


def test_memory_is_summed_over_the_process_tree(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_map", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    *_, kib = bench.timed([sys.executable, "-c", FAMILY], tmp_path / "out")
    assert kib > 3 * 40 * 1024 * 0.9  # three processes' worth, not one
