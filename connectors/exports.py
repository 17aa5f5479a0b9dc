"""Streaming readers for HR exports: JSON Lines and CSV, in constant memory.

Dutch HR exports arrive as UTF-8 (with or without a byte-order mark) or as Windows-1252,
with `;` or `,` between values. The readers detect all of that, yield one record at a time
with the line it started on, and turn anything malformed into a `Malformed` item with a
reason instead of stopping: the caller quarantines it and goes on. Reasons never quote the
input, because the input is personal data.

Lines are read in fixed-size blocks and a line longer than `max_line_bytes` is skipped
rather than buffered, so memory stays bounded whatever the file holds.

They live beside the connectors because two callers share them: `sluis map` over a local
file (`gateway.offline`, `gateway.cli.map`) and the SFTP connector over a remote export
(`connectors.sftp`), which may not import `gateway/`. One reader means one set of rules for
delimiters, encodings and byte-order marks, and the same quarantine reasons for both.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, Literal

import orjson

BLOCK_BYTES: Final = 1 << 20
MAX_LINE_BYTES: Final = 16 << 20
_BOM: Final = b"\xef\xbb\xbf"
Format = Literal["jsonl", "csv"]


@dataclass(slots=True)
class Malformed:
    """An input line that could not be read as a record."""

    reason: str


class ExportError(ValueError):
    """The export as a whole cannot be read (as opposed to one bad record)."""


@dataclass(slots=True)
class ReadStats:
    """What the reader noticed about the file as a whole."""

    lines: int = 0
    cp1252_lines: int = 0
    delimiter: str | None = None


def iter_lines(
    stream: IO[bytes], max_line_bytes: int = MAX_LINE_BYTES, *, strip_bom: bool = True
) -> Iterator[bytes | None]:
    """Yield each line without its line ending; None for a line over `max_line_bytes`.

    Reads with the stream's own bounded `readline` (C speed, never more than the limit in
    memory); the rest of an overlong line is read past in pieces of the same size.
    """
    readline = stream.readline
    limit = max_line_bytes + 2  # the line, a carriage return and the newline
    # The first read leaves room for a byte-order mark, so that the line after it is
    # judged by the same limit as every other line.
    line = readline(limit + len(_BOM)) if strip_bom else readline(limit)
    if strip_bom and line.startswith(_BOM):
        line = line[len(_BOM) :]
        if not line:
            line = readline(limit)
    while line:
        if line[-1:] == b"\n":
            line = line[:-1]
        elif len(line) >= limit:
            while (rest := readline(limit)) and rest[-1:] != b"\n":
                pass
            yield None
            line = readline(limit)
            continue
        if len(line) > max_line_bytes:
            yield None
        else:
            yield line[:-1] if line[-1:] == b"\r" else line
        line = readline(limit)


def read_jsonl(
    stream: IO[bytes], stats: ReadStats | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or Malformed) for each non-blank line."""
    stats = stats if stats is not None else ReadStats()
    yield from parse_jsonl_lines(numbered_lines(stream, stats, max_line_bytes), max_line_bytes)


def numbered_lines(
    stream: IO[bytes], stats: ReadStats, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """`iter_lines` with 1-based line numbers; `stats.lines` is set when reading stops."""
    number = 0
    try:
        for number, line in enumerate(iter_lines(stream, max_line_bytes), start=1):
            yield number, line
    finally:
        stats.lines = number


def iter_line_blocks(
    stream: IO[bytes], max_line_bytes: int = MAX_LINE_BYTES, block_bytes: int = BLOCK_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """(first line number, a block of whole lines) through the file, for parallel readers.

    Blocks end at a line ending (the last one may not, at the end of the file) and are cut
    without looking at the lines, so the reading process stays cheap. A line longer than
    `max_line_bytes` that spans blocks comes as (its number, None), never buffered; one
    inside a block is left for `iter_lines` on that block to report.
    """
    number = 1
    pending = b""
    skipping = False
    first = True
    while True:
        block = stream.read(block_bytes)
        if first:
            block, first = block.removeprefix(_BOM), False
        if not block:
            break
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            yield number, None
            number, skipping, block = number + 1, False, block[end + 1 :]
        data = pending + block if pending else block
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
        else:
            whole, pending = data[: cut + 1], data[cut + 1 :]
            yield number, whole
            number += whole.count(b"\n")
        if len(pending) > max_line_bytes:
            pending, skipping = b"", True
    if skipping:
        yield number, None
    elif pending:
        yield number, pending


def parse_jsonl_lines(
    numbered: Iterable[tuple[int, bytes | None]], max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or Malformed) for numbered raw lines; blank ones skipped.

    Shared by the streaming reader and the parallel mapper's workers, so both quarantine
    exactly the same lines for exactly the same reasons.
    """
    loads = orjson.loads
    for number, line in numbered:
        if line is None:
            yield number, Malformed(f"line longer than {max_line_bytes} bytes")
            continue
        if not line or line.isspace():
            continue
        try:
            yield number, loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, Malformed(_json_reason(exc))


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    # orjson's message can quote the input ("... at line 1 column 5 (char 4)" is safe, the
    # document excerpt is not): keep only the leading description.
    text = str(exc).split(":", 1)[0].strip() or "invalid JSON"
    return f"invalid JSON ({text})"


def _decode(line: bytes, stats: ReadStats) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        stats.cp1252_lines += 1
        try:
            return line.decode("cp1252")
        except UnicodeDecodeError:
            return line.decode("latin-1")


def _find_header(lines: Iterator[str]) -> tuple[str, list[str]] | None:
    """(delimiter, column names) from the first non-blank line, or None for no header.

    Excel writes "sep=;" above the header when asked to; that line names the delimiter.
    """
    line = next(lines, None)
    while line is not None and not line.strip():
        line = next(lines, None)
    if line is None:
        return None
    excel = _EXCEL_SEP.fullmatch(line.strip())
    if excel is None:
        return _sniff_delimiter(line), _header(line, _sniff_delimiter(line))
    line = next(lines, None)
    if line is None:
        return None
    return excel.group(1), _header(line, excel.group(1))


_EXCEL_SEP: Final = re.compile(r"sep=([;,\t|])", re.IGNORECASE)


def _starts_utf16(stream: IO[bytes]) -> bool:
    """Excel's "Unicode text" export is UTF-16 with a byte-order mark."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        head = bytes(peek(2)[:2])
    elif stream.seekable():
        at = stream.tell()
        head = stream.read(2)
        stream.seek(at)
    else:
        return False
    return head in (b"\xff\xfe", b"\xfe\xff")


def _utf16_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[str | None]:
    """Text lines of a UTF-16 stream without their endings; None for an overlong line."""
    text = io.TextIOWrapper(stream, encoding="utf-16", newline="")
    limit = max(1, max_line_bytes // 2)
    try:
        while line := text.readline(limit):
            if not line.endswith("\n") and len(line) >= limit:
                while (rest := text.readline(limit)) and not rest.endswith("\n"):
                    pass
                yield None
                continue
            yield line.rstrip("\r\n")
    except UnicodeDecodeError:
        yield None
    finally:
        text.detach()


def _sniff_delimiter(header: str) -> str:
    counts = dict.fromkeys(";,\t", 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(
    stream: IO[bytes], stats: ReadStats | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, str] | Malformed]]:
    """(line number, {column: value} or Malformed) per data row; the first row is the header."""
    stats = stats if stats is not None else ReadStats()
    raw: Iterator[bytes | str | None] = (
        _utf16_lines(stream, max_line_bytes)
        if _starts_utf16(stream)
        else iter_lines(stream, max_line_bytes)
    )
    physical = 0
    overlong: list[int] = []

    def text_lines() -> Iterator[str]:
        nonlocal physical
        for line in raw:
            physical += 1
            if line is None:
                overlong.append(physical)
                yield "\n"
            elif isinstance(line, str):
                yield line + "\n"
            else:
                yield _decode(line, stats) + "\n"

    lines = text_lines()
    found = _find_header(lines)
    if found is None:
        stats.lines = physical
        return
    delimiter, columns = found
    stats.delimiter = delimiter
    width = len(columns)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    while True:
        start = physical + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            span = f"lines {start}-{physical}" if physical > start else f"line {start}"
            yield start, Malformed(f"unreadable CSV row on {span} ({_csv_reason(exc)})")
            continue
        if overlong and overlong[-1] >= start:
            del overlong[:]
            yield start, Malformed(f"line longer than {max_line_bytes} bytes")
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            yield start, Malformed(f"{len(row)} values for {width} columns")
            continue
        yield start, dict(zip(columns, row, strict=True))
    stats.lines = physical


def _header(line: str, delimiter: str) -> list[str]:
    """Column names; a repeated name makes the export ambiguous, so it is refused."""
    try:
        columns = [h.strip() for h in next(csv.reader([line], delimiter=delimiter))]
    except csv.Error as exc:
        raise ExportError(f"header: unreadable ({_csv_reason(exc)})") from None
    seen: dict[str, int] = {}
    for i, name in enumerate(columns, start=1):
        if name and name in seen:
            raise ExportError(
                f"header: column {i} has the same name as column {seen[name]}; "
                "the export is ambiguous"
            )
        seen[name] = i
    return columns


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than" in text:
        return "field too large"
    if "NUL" in text or "line contains NUL" in text:
        return "NUL byte"
    if "new-line character" in text:
        return "a bare carriage return inside a field"
    if "quote" in text:
        return "unbalanced quote"
    return "malformed row"


def looks_like_json_document(head: bytes) -> bool:
    """A pretty-printed JSON document (`[` or `{` alone on the first line), not JSON Lines."""
    first = head.removeprefix(_BOM).lstrip(b" \t\r\n").split(b"\n", 1)[0].strip()
    return first in (b"[", b"{")


def detect_format(name: str | None, head: bytes) -> Format:
    """Format from the file name, else from the first significant byte."""
    if name:
        lower = name.lower()
        if lower.endswith((".csv", ".txt", ".tsv")):
            return "csv"
        if lower.endswith((".jsonl", ".ndjson", ".json")):
            return "jsonl"
    text = head.removeprefix(_BOM).lstrip()
    return "jsonl" if text.startswith((b"{", b"[")) else "csv"
