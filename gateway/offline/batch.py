"""Minimising a whole export without a server: chunks, summaries and worker processes.

`sluis map` (gateway.cli.map) reads a file with `gateway.offline.readers` and hands the
records here. The single-process and the parallel path share `map_chunk`, so their output,
quarantine and summary are identical (the tests compare them).
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

import orjson

from gateway.minimise.mapping import Mapping
from gateway.minimise.projector import Projector, merge_dropped
from gateway.offline.readers import (
    MAX_LINE_BYTES,
    Malformed,
    iter_line_blocks,
    iter_lines,
    parse_jsonl_lines,
)

CHUNK = 2000
#: How many quarantined lines a summary keeps (for the message; `--quarantine` has all).
SHOWN_QUARANTINE = 20
#: Inputs at least this large (JSON Lines, from a file) are minimised by worker processes.
PARALLEL_MIN_BYTES = 16 << 20
_WORKER: dict[str, Projector] = {}


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
