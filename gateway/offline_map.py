"""`sluis map`: minimise an export offline, to preview a mapping on one's own data.

Streams a JSONL or CSV export through a compiled mapping and writes Subject JSONL, in
constant memory. Bad records are quarantined with their line number and a reason (never
their content) and the run goes on; the summary on stderr says what was read, written,
quarantined and dropped. An output file is written to a temporary name and renamed at the
end, so an interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import multiprocessing
import os
import secrets
import sys
import tempfile
import textwrap
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import orjson

from gateway import keys
from gateway.exports import (
    MAX_LINE_BYTES,
    ExportError,
    Format,
    Malformed,
    ReadStats,
    detect_format,
    iter_line_blocks,
    iter_lines,
    looks_like_json_document,
    parse_jsonl_lines,
    read_csv,
    read_jsonl,
)
from gateway.mapping import Mapping, MappingError, load_mapping
from gateway.projector import Projector, merge_dropped

CHUNK = 2000
SHOWN_QUARANTINE = 20


@dataclass
class MapSummary:
    """Totals of one `sluis map` run; holds names, counts and line numbers only."""

    read: int = 0
    written: int = 0
    inactive: int = 0
    quarantined: int = 0
    first_quarantined: list[tuple[int, str]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def quarantine(self, line: int, reason: str) -> None:
        self.quarantined += 1
        self.reasons[reason] += 1
        if len(self.first_quarantined) < SHOWN_QUARANTINE:
            self.first_quarantined.append((line, reason))


@dataclass
class ChunkResult:
    """One chunk of an export after the door: output bytes, quarantine, counts, names."""

    output: bytes
    bad: list[tuple[int, str]]
    read: int
    written: int
    inactive: int
    dropped: Counter[str]


def map_chunk(projector: Projector, items: list[tuple[int, Any]]) -> ChunkResult:
    """Project numbered records (or `Malformed` lines) into Subject JSONL bytes."""
    lines: list[int] = []
    batch: list[Any] = []
    bad: list[tuple[int, str]] = []
    for line, value in items:
        if isinstance(value, Malformed):
            bad.append((line, value.reason))
        else:
            lines.append(line)
            batch.append(value)
    page = projector.project_page(batch)
    bad.extend((lines[i], reason) for i, reason in page.rejected)
    bad.sort()
    subjects = page.subjects
    output = b"\n".join(map(orjson.dumps, subjects)) + b"\n" if subjects else b""
    return ChunkResult(
        output=output,
        bad=bad,
        read=len(items),
        written=len(subjects),
        inactive=sum(1 for s in subjects if not s["active"]),
        dropped=page.dropped,
    )


def add_chunk(
    summary: MapSummary,
    result: ChunkResult,
    out: IO[bytes],
    quarantine_out: IO[bytes] | None,
) -> None:
    """Write a chunk's output and fold its counts into the run's summary (in input order)."""
    summary.read += result.read
    summary.written += result.written
    summary.inactive += result.inactive
    for line, reason in result.bad:
        summary.quarantine(line, reason)
        if quarantine_out is not None:
            quarantine_out.write(orjson.dumps({"line": line, "reason": reason}) + b"\n")
    merge_dropped(summary.dropped, result.dropped)
    if result.output:
        out.write(result.output)


def map_stream(
    projector: Projector,
    records: Iterator[tuple[int, Any]],
    out: IO[bytes],
    quarantine_out: IO[bytes] | None = None,
) -> MapSummary:
    """Project `records` into `out` (Subject JSONL) and return the run's summary."""
    summary = MapSummary()
    while items := list(itertools.islice(records, CHUNK)):
        add_chunk(summary, map_chunk(projector, items), out, quarantine_out)
    return summary


#: Inputs at least this large (JSON Lines, from a file) are minimised by worker processes.
PARALLEL_MIN_BYTES = 16 << 20
_WORKER: dict[str, Projector] = {}


def _start_worker(mapping: Mapping, key: bytes, today: date | None) -> None:
    _WORKER["projector"] = Projector(mapping, key, today=today)


def _work(job: tuple[int, bytes | None, int]) -> ChunkResult:
    first, blob, max_line_bytes = job
    if blob is None:
        numbered: Iterable[tuple[int, bytes | None]] = [(first, None)]
    else:
        lines = iter_lines(io.BytesIO(blob), max_line_bytes, strip_bom=False)
        numbered = enumerate(lines, start=first)
    items = list(parse_jsonl_lines(numbered, max_line_bytes))
    return map_chunk(_WORKER["projector"], items)


def map_jsonl_parallel(
    mapping: Mapping,
    key: bytes,
    today: date | None,
    stream: IO[bytes],
    out: IO[bytes],
    *,
    quarantine_out: IO[bytes] | None = None,
    jobs: int,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> MapSummary:
    """`map_stream` for a large JSON Lines export, on `jobs` worker processes.

    This process only cuts the file into blocks of whole lines and writes the results in
    input order; workers parse, minimise and serialise. At most two blocks per worker are
    in flight, so memory stays bounded whatever the file's size. Output, quarantine and
    summary are the same as the single-process path's (the tests compare them).
    """
    summary = MapSummary()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_start_worker,
        initargs=(mapping, key, today),
    ) as pool:  # fmt: skip
        pending: deque[Future[ChunkResult]] = deque()
        for first, blob in iter_line_blocks(stream, max_line_bytes):
            pending.append(pool.submit(_work, (first, blob, max_line_bytes)))
            if len(pending) >= 2 * jobs:
                add_chunk(summary, pending.popleft().result(), out, quarantine_out)
        while pending:
            add_chunk(summary, pending.popleft().result(), out, quarantine_out)
    return summary


def format_summary(summary: MapSummary, mapping: Mapping, stats: ReadStats, fmt: str) -> str:
    """The human summary printed on stderr."""
    lines = [
        f"sluis map: {mapping.path} ({mapping.digest[:19]}…), input {fmt}"
        + (f", delimiter {stats.delimiter!r}" if stats.delimiter else ""),
        f"  records read       {summary.read:>10,}",
        f"  subjects written   {summary.written:>10,}   ({summary.inactive:,} inactive)",
        f"  quarantined        {summary.quarantined:>10,}",
    ]
    for line, reason in summary.first_quarantined:
        lines.append(f"    line {line}: {reason}")
    if summary.quarantined > len(summary.first_quarantined):
        lines.append(
            f"    … {summary.quarantined - len(summary.first_quarantined):,} more "
            "(--quarantine FILE lists them all)"
        )
    if stats.cp1252_lines:
        lines.append(f"  lines read as Windows-1252 {stats.cp1252_lines:,}")
    fields = ", ".join(f"{name} ({rule.category})" for name, rule in mapping.fields.items())
    lines.extend(
        textwrap.wrap(f"egress fields: {fields}", 92, initial_indent="  ", subsequent_indent="    ")
    )
    lines.append(f"  source fields dropped: {len(summary.dropped)} (never written anywhere)")
    by_count: dict[int, list[str]] = {}
    for name, count in summary.dropped.items():
        by_count.setdefault(count, []).append(name)
    for count in sorted(by_count, reverse=True):
        names = ", ".join(sorted(by_count[count]))
        label = "all records" if count == summary.read else f"{count:,} records"
        lines.extend(
            textwrap.wrap(
                f"in {label}: {names}", 92, initial_indent="    ", subsequent_indent="      "
            )
        )
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"sluis map: {message}", file=sys.stderr)
    return 2


def _open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


def _run(args: argparse.Namespace) -> int:
    try:
        mapping = load_mapping(args.mapping)
    except MappingError as exc:
        return _fail(str(exc))
    if args.key_file:
        try:
            key = keys.load_key_file(args.key_file)
        except keys.KeyFileError as exc:
            return _fail(str(exc))
    else:
        key = secrets.token_bytes(32)
        print(
            "sluis map: no --key-file given: subject ids use a one-off random key and will "
            "differ on the next run",
            file=sys.stderr,
        )
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else None
    except ValueError:
        return _fail(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)")
    projector = Projector(mapping, key, today=as_of)
    stats = ReadStats()
    with contextlib.ExitStack() as stack:
        try:
            source = stack.enter_context(_open_input(args.input))
        except OSError as exc:
            return _fail(f"{args.input}: cannot open the input ({exc.strerror})")
        fmt: Format = args.format or detect_format(
            None if args.input == "-" else args.input, _peek(source)
        )
        if fmt == "jsonl" and looks_like_json_document(_peek(source)):
            return _fail(
                f"{args.input}: this is a JSON document, not JSON Lines (one object per "
                "line); convert it first, e.g. jq -c '.[]' (or '.rows[]' for an AFAS page)"
            )
        jobs = _jobs(args, source, fmt)
        quarantine_out: IO[bytes] | None = None
        if args.quarantine:
            try:
                quarantine_out = stack.enter_context(open(args.quarantine, "wb"))
            except OSError as exc:
                return _fail(f"{args.quarantine}: cannot write ({exc.strerror})")

        def run_map(out: IO[bytes]) -> MapSummary:
            if jobs > 1:
                return map_jsonl_parallel(
                    mapping, key, as_of, source, out, quarantine_out=quarantine_out, jobs=jobs
                )
            records = read_csv(source, stats) if fmt == "csv" else read_jsonl(source, stats)
            return map_stream(projector, records, out, quarantine_out)

        try:
            summary = _write(args.output, run_map)
        except ExportError as exc:
            return _fail(f"{args.input}: {exc}")
        except OSError as exc:
            return _fail(f"{args.output}: cannot write ({exc.strerror})")
    print(format_summary(summary, mapping, stats, fmt), file=sys.stderr)
    return 0


def _peek(source: IO[bytes]) -> bytes:
    peek = getattr(source, "peek", None)
    return bytes(peek(256)[:256]) if peek else b""


def _jobs(args: argparse.Namespace, source: IO[bytes], fmt: str) -> int:
    """Worker processes for this run: explicit --jobs, else all cores for a large JSONL file."""
    if args.jobs is not None:
        return max(1, args.jobs) if fmt == "jsonl" else 1
    if fmt != "jsonl" or args.input == "-":
        return 1
    try:
        size = os.fstat(source.fileno()).st_size
    except (OSError, ValueError):
        return 1
    return min(os.cpu_count() or 1, 8) if size >= PARALLEL_MIN_BYTES else 1


def _write(output: str, run_map: Callable[[IO[bytes]], MapSummary]) -> MapSummary:
    if output == "-":
        summary = run_map(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return summary
    target = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            summary = run_map(out)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return summary


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "map",
        help="minimise an export offline (preview a mapping on your own data)",
        description=(
            "Stream a JSONL or CSV export through a mapping and write Subject JSONL. "
            "Prints a summary (read, written, quarantined, dropped fields) on stderr."
        ),
    )
    parser.add_argument("--mapping", "-m", required=True, metavar="FILE", help="mapping TOML")
    parser.add_argument("--input", "-i", default="-", metavar="PATH", help="export (- = stdin)")
    parser.add_argument("--output", "-o", default="-", metavar="PATH", help="- = stdout")
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), help="input format (default: from name/content)"
    )
    parser.add_argument("--key-file", metavar="PATH", help="tenant subject key (sluis keygen)")
    parser.add_argument("--as-of", metavar="DATE", help="date leaver rules compare with")
    parser.add_argument(
        "--quarantine", metavar="PATH", help="write every quarantined line number and reason"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes for JSONL (default: every core for files over 16 MiB)",
    )
    parser.set_defaults(run=_run)
