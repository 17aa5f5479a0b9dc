"""Minimising a whole export without a server: the record loop, summaries and workers.

`sluis map` (gateway.cli.map) reads a file with `connectors.exports` and hands the
records here, one at a time. The single-process and the parallel path share `map_items`,
so their output, quarantine and summary are identical (the tests compare them).
"""

from __future__ import annotations

import io
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import IO, TYPE_CHECKING, Any

import orjson

from connectors.exports import (
    MAX_LINE_BYTES,
    Malformed,
    iter_line_blocks,
    iter_lines,
    parse_jsonl_lines,
)
from gateway.minimise.mapping import Mapping
from gateway.minimise.projector import MAX_TRACKED_NAMES, Projector, merge_dropped, tidy_names

#: How many quarantined lines a summary keeps (for the message; `--quarantine` has all).
SHOWN_QUARANTINE = 20
#: How many line numbers a duplicate-identity warning names.
SHOWN_DUPLICATES = 20
#: Inputs at least this large (JSON Lines, from a file) are minimised by worker processes.
PARALLEL_MIN_BYTES = 16 << 20
_WORKER: dict[str, Projector] = {}

if TYPE_CHECKING:
    from concurrent.futures import Future


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
    #: Mapped source fields no record held (None until a record was looked at).
    unseen: set[str] | None = None
    #: The first 64 bits of each written subject id, and its line, in input order: 16
    #: bytes a record, to find identities that occur twice without keeping any value.
    ids: array[int] = field(default_factory=lambda: array("Q"))
    id_lines: array[int] = field(default_factory=lambda: array("Q"))

    def quarantine(self, line: int, reason: str) -> None:
        self.quarantined += 1
        self.reasons[reason] += 1
        if len(self.first_quarantined) < SHOWN_QUARANTINE:
            self.first_quarantined.append((line, reason))

    def duplicates(self) -> tuple[int, list[list[int]]]:
        """(records whose subject id occurred before, line groups of the first few ids).

        Two records with one subject id carry the same identity values: an export listing
        someone twice, or an identity field that is not unique. Only line numbers are kept.
        """
        # Compared 1/256th at a time (by the top byte), so no set of every id is built.
        buckets = [array("Q") for _ in range(256)]
        for key in self.ids:
            buckets[key >> 56].append(key)
        repeated: set[int] = set()
        for bucket in buckets:
            if len(set(bucket)) != len(bucket):
                repeated.update(k for k, n in Counter(bucket).items() if n > 1)
        if not repeated:
            return 0, []
        groups: dict[int, list[int]] = {}
        for key, line in zip(self.ids, self.id_lines, strict=True):
            if key in repeated:
                groups.setdefault(key, []).append(line)
        extra = sum(len(lines) - 1 for lines in groups.values())
        return extra, list(groups.values())[:SHOWN_DUPLICATES]


@dataclass
class ChunkResult:
    """One stretch of an export after the door: output bytes, quarantine, counts, names."""

    output: bytes
    bad: list[tuple[int, str]]
    tally: Tally
    #: The worker's mapped fields not seen so far (cumulative: intersect them all), or
    #: None while the worker has seen no record.
    unseen: frozenset[str] | None


@dataclass
class Tally:
    """Counts of a stretch of records (a whole single-process run, or one worker block)."""

    read: int = 0
    written: int = 0
    inactive: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    ids: array[int] = field(default_factory=lambda: array("Q"))
    id_lines: array[int] = field(default_factory=lambda: array("Q"))


def map_items(
    projector: Projector,
    items: Iterable[tuple[int, Any]],
    write: Callable[[bytes], Any],
    reject: Callable[[int, str], Any],
) -> Tally:
    """Project numbered records (or `Malformed` lines) one by one into Subject JSONL.

    Each record is parsed, projected and serialised before the next is read, so nothing
    but the current record is alive: no chunk of parsed records for the garbage collector
    to walk. `write` gets each output line, `reject` each (line, reason) in input order.
    """
    project, count_layout, count_record = (
        projector.project, projector.count_layout, projector.count_record
    )  # fmt: skip
    flat = projector.flat
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    tally = Tally()
    dropped = tally.dropped
    ids_append, lines_append = tally.ids.append, tally.id_lines.append
    read = written = inactive = 0
    layout: tuple[str, ...] = ()
    repeats = 0
    for line, value in items:
        read += 1
        if type(value) is dict:
            out = project(value)
            if not flat:
                count_record(value, dropped)
                if len(dropped) > 2 * MAX_TRACKED_NAMES:
                    _compact(dropped)
            elif (keys := tuple(value)) == layout:
                repeats += 1
            else:
                if repeats:
                    count_layout(layout, repeats, dropped)
                    if len(dropped) > 2 * MAX_TRACKED_NAMES:
                        _compact(dropped)
                layout, repeats = keys, 1
        elif type(value) is Malformed:
            reject(line, value.reason)
            continue
        else:
            out = project(value)
        if type(out) is dict:
            write(dumps(out, option=newline))
            written += 1
            if not out["active"]:
                inactive += 1
            ids_append(int(out["subject_id"][:16], 16))
            lines_append(line)
        else:
            reject(line, out.reason)  # type: ignore[union-attr]
    if repeats:
        count_layout(layout, repeats, dropped)
    tally.read, tally.written, tally.inactive = read, written, inactive
    tally.dropped = tidy_names(dropped)
    return tally


def _compact(dropped: Counter[str]) -> None:
    tidy = tidy_names(dropped)
    dropped.clear()
    dropped.update(tidy)


def add_tally(summary: MapSummary, tally: Tally, unseen: Iterable[str] | None) -> None:
    """Fold a stretch's counts into the run's summary (stretches come in input order)."""
    summary.read += tally.read
    summary.written += tally.written
    summary.inactive += tally.inactive
    merge_dropped(summary.dropped, tally.dropped)
    summary.ids.extend(tally.ids)
    summary.id_lines.extend(tally.id_lines)
    if unseen is not None:
        summary.unseen = set(unseen) if summary.unseen is None else summary.unseen & set(unseen)


def add_chunk(
    summary: MapSummary,
    result: ChunkResult,
    out: IO[bytes],
    quarantine_out: IO[bytes] | None,
) -> None:
    """Write a worker's output and fold its counts into the run's summary (in input order)."""
    for line, reason in result.bad:
        summary.quarantine(line, reason)
        if quarantine_out is not None:
            quarantine_out.write(orjson.dumps({"line": line, "reason": reason}) + b"\n")
    add_tally(summary, result.tally, result.unseen)
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

    def reject(line: int, reason: str) -> None:
        summary.quarantine(line, reason)
        if quarantine_out is not None:
            quarantine_out.write(orjson.dumps({"line": line, "reason": reason}) + b"\n")

    tally = map_items(projector, records, out.write, reject)
    add_tally(summary, tally, projector.unseen_source_fields if projector.records_seen else None)
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
    projector = _WORKER["projector"]
    parts: list[bytes] = []
    bad: list[tuple[int, str]] = []
    items = parse_jsonl_lines(numbered, max_line_bytes)
    tally = map_items(projector, items, parts.append, lambda line, why: bad.append((line, why)))
    unseen = frozenset(projector.unseen_source_fields) if projector.records_seen else None
    return ChunkResult(output=b"".join(parts), bad=bad, tally=tally, unseen=unseen)


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
    # Imported here: a single-process run (most runs) starts faster without them.
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

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
