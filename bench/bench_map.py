"""Benchmark `sluis map` against `jq -c` producing the same four fields from the same file.

Both run as separate processes on one export, in the same run, so the ratio is fair to
the machine of the day. Peak RSS is read per process (wait4), and `sluis map` is also run
on a quarter of the file to show that memory does not grow with the input.

    .venv/bin/python bench/bench_map.py [--records 200000] [--repeat 3]

Targets (issue #2): >= 2.5x jq's records/s, peak RSS < 80 MiB. `sluis map` uses every
core for a large JSONL file (peak RSS is read for the process and its workers); the
`--jobs 1` row shows a single process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GEN = REPO.parent / "shared" / "bench" / "gen_hrm.py"
JQ_FILTER = (
    '{first_name: ((.Roepnaam // "") | if . == "" then .Voornaam else . end),'
    ' last_name: ([.Voorvoegsel, .Achternaam] | map(select(. != null and . != "")) | join(" ")),'
    " email: (.Email_werk | ascii_downcase), job_title: .Functie}"
)


def timed(cmd: list[str], stdout_path: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one process."""
    with open(stdout_path, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss


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
    sluis = [
        sys.executable,
        "-m",
        "gateway.cli.main",
        "map",
        "--mapping",
        str(REPO / "mappings" / "afas.toml"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "key"
        key.write_bytes(os.urandom(32))
        full, quarter = work / "full.jsonl", work / "quarter.jsonl"
        make_export(full, args.records)
        make_export(quarter, args.records // 4)
        size_mb = full.stat().st_size / 1e6
        best: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeat):
            if jq:
                best["jq"] = min(
                    best.get("jq", (1e9, 0)),
                    timed([jq, "-c", JQ_FILTER, str(full)], work / "jq.out"),
                )
            cmd = [
                *sluis,
                "--key-file",
                str(key),
                "--input",
                str(full),
                "--output",
                str(work / "s.out"),
            ]
            best["sluis"] = min(best.get("sluis", (1e9, 0)), timed(cmd, work / "log"))
            single = timed([*cmd, "--jobs", "1"], work / "log")
            best["sluis --jobs 1"] = min(best.get("sluis --jobs 1", (1e9, 0)), single)
        q_cmd = [
            *sluis,
            "--key-file",
            str(key),
            "--input",
            str(quarter),
            "--output",
            str(work / "q.out"),
        ]
        best["sluis (1/4 file)"] = timed(q_cmd, work / "log")
        print(f"input: {args.records:,} records, {size_mb:.0f} MB (best of {args.repeat})")
        print(f"{'tool':<18}{'seconds':>9}{'records/s':>12}{'peak RSS MiB':>14}")
        for name, (secs, rss) in best.items():
            n = args.records // 4 if "1/4" in name else args.records
            print(f"{name:<18}{secs:>9.2f}{n / secs:>12,.0f}{rss / 1024:>14.1f}")
        if "jq" in best:
            ratio = best["jq"][0] / best["sluis"][0]
            one = best["jq"][0] / best["sluis --jobs 1"][0]
            print(f"sluis / jq throughput ratio: {ratio:.2f}x (target >= 2.5x)")
            print(f"sluis --jobs 1 / jq: {one:.2f}x (one process, for comparison)")
        else:
            print("jq not found: no baseline (apt-get install jq)")


if __name__ == "__main__":
    main()
