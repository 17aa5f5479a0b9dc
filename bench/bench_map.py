"""Benchmark `sluis map` against a bare orjson loop and `jq -c` on the same export.

Every tool makes the same four fields from the same file, in the same run, so the ratios
are fair to the machine of the day:

- `orjson loop`: parse each line, pick the fields, lower-case the email, dump it. No
  validation, no keyed id, no guard: the floor for a Python tool doing this job.
- `jq`: the same picks as a jq filter.
- `sluis map`: with every guarantee (HMAC subject ids, egress validation, the sensitive
  data guard, quarantine). Parallel (every core, the default for a large file) and
  `--jobs 1` (one process); once more, in the default mode, on a quarter of the file, to
  show that memory does not grow with the input.

Seconds are wall time (the targets); CPU seconds are printed too, since on a shared
machine they are the steadier figure. Memory is the peak of the *sum* of resident set
sizes over a run's process tree (the parent and all its workers), sampled every 20 ms from
/proc, highest over the repeats. For forked workers this counts their shared pages once
per process, so it is an upper bound.

    .venv/bin/python bench/bench_map.py [--records 200000] [--repeat 3]

Targets (issue #6, one process): `sluis map --jobs 1` >= 0.4x the orjson loop's
records/s and >= 3.5x jq's. (Issue #2: parallel >= 2.5x jq, memory < 80 MiB.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GEN = REPO.parent / "shared" / "bench" / "gen_hrm.py"
JQ_FILTER = (
    '{first_name: ((.Roepnaam // "") | if . == "" then .Voornaam else . end),'
    ' last_name: ([.Voorvoegsel, .Achternaam] | map(select(. != null and . != "")) | join(" ")),'
    " email: (.Email_werk | ascii_downcase), job_title: .Functie}"
)
#: The bare loop: what `sluis map` does minus every check. Run as its own process.
BARE_LOOP = """
import sys, orjson
loads, dumps = orjson.loads, orjson.dumps
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    write = out.write
    for line in src:
        r = loads(line)
        parts = [p for p in (r.get("Voorvoegsel"), r.get("Achternaam")) if p]
        write(dumps({
            "first_name": r.get("Roepnaam") or r.get("Voornaam"),
            "last_name": " ".join(parts) or None,
            "email": (r.get("Email_werk") or "").lower(),
            "job_title": r.get("Functie"),
        }) + b"\\n")
"""


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from every thread's /proc children list)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def _tree_rss_kib(root: int) -> int:
    """Sum of VmRSS (KiB) over `root` and its descendants, from /proc."""
    total, frontier, seen = 0, [root], {root}
    while frontier:
        pid = frontier.pop()
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
        for child in _children(pid):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return total


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


_OWN_CMDLINE = _cmdline(os.getpid())


def timed(cmd: list[str], stdout_path: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS KiB), CPU and RSS over the process and its
    children (wait4 includes the CPU time of the children a process has waited for)."""
    peak = 0
    with open(stdout_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            started = False
            while not done.wait(0.02):
                # Until the child has exec'ed it is a copy of this process: not its memory.
                started = started or _cmdline(proc.pid) not in (None, _OWN_CMDLINE)
                if started:
                    peak = max(peak, _tree_rss_kib(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    # A process shorter than one sample has only wait4's figure.
    return elapsed, usage.ru_utime + usage.ru_stime, peak or usage.ru_maxrss


def make_export(path: Path, n: int) -> None:
    if GEN.exists():
        subprocess.run(
            [sys.executable, str(GEN), str(n), "--seed", "7", "--out", str(path)], check=True
        )
        return
    import orjson

    from connectors.afas.synthetic import employees

    with open(path, "wb") as f:
        for row in employees(n, seed=7):
            f.write(orjson.dumps(row) + b"\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    jq = shutil.which("jq")
    sluis = [sys.executable, "-m", "gateway.cli.main", "map"]
    sluis += ["--mapping", str(REPO / "mappings" / "afas.toml")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "key"
        key.write_bytes(os.urandom(32))
        full, quarter = work / "full.jsonl", work / "quarter.jsonl"
        make_export(full, args.records)
        make_export(quarter, args.records // 4)
        size_mb = full.stat().st_size / 1e6
        cmd = [*sluis, "--key-file", str(key), "--input", str(full), "-o", str(work / "s.out")]
        runs = {
            "orjson loop": [sys.executable, "-c", BARE_LOOP, str(full), str(work / "b.out")],
            "jq": [jq, "-c", JQ_FILTER, str(full)] if jq else None,
            "sluis --jobs 1": [*cmd, "--jobs", "1"],
            "sluis (parallel)": cmd,
        }
        best: dict[str, tuple[float, float, int]] = {}
        for _ in range(args.repeat):  # interleaved, so a busy moment hits every tool
            for name, argv in runs.items():
                if argv is not None:
                    wall, cpu, rss = timed(argv, work / "out")
                    old = best.get(name, (1e9, 1e9, 0))
                    best[name] = (min(old[0], wall), min(old[1], cpu), max(old[2], rss))
        q_cmd = [*sluis, "--key-file", str(key), "--input", str(quarter), "-o", str(work / "q")]
        best["sluis (1/4 file)"] = timed(q_cmd, work / "log")
        print(f"input: {args.records:,} records, {size_mb:.0f} MB (best of {args.repeat})")
        print(f"{'tool':<18}{'seconds':>9}{'CPU s':>8}{'records/s':>12}{'RSS MiB (sum)':>15}")
        for name, (secs, cpu, rss) in best.items():
            n = args.records // 4 if "1/4" in name else args.records
            print(f"{name:<18}{secs:>9.2f}{cpu:>8.2f}{n / secs:>12,.0f}{rss / 1024:>15.1f}")

        def ratio(base: str, tool: str) -> str:
            (bw, bc, _), (tw, tc, _) = best[base], best[tool]
            return f"{bw / tw:.2f}x (by CPU time {bc / tc:.2f}x)"

        one, par = "sluis --jobs 1", "sluis (parallel)"
        print(f"{one} / orjson loop: {ratio('orjson loop', one)} (target >= 0.4)")
        if "jq" in best:
            print(f"{one} / jq: {ratio('jq', one)} (target >= 3.5x)")
            print(f"{par} / jq: {ratio('jq', par)} on {os.cpu_count()} cores")
        else:
            print("jq not found: no jq baseline (apt-get install jq)")


if __name__ == "__main__":
    main()
