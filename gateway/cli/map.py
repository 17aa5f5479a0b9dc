"""`sluis map`: minimise an export offline, to preview a mapping on one's own data.

Streams a JSONL or CSV export through a compiled mapping and writes Subject JSONL, one
record at a time (16 bytes a record are kept, to find repeated identities). Bad records
are quarantined with their line number and a reason (never their content) and the run
goes on; the summary on stderr says what was read, written, quarantined and dropped, and
warns about mapped fields no record holds and about repeated identities. An output file
is written to a temporary name and renamed at the end, so an interrupted run never leaves
a half-written file that looks complete.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import tempfile
import textwrap
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import IO, Final

from connectors.exports import (
    ExportError,
    Format,
    ReadStats,
    detect_format,
    looks_like_json_document,
    read_csv,
    read_jsonl,
)
from gateway.keys import subject as keys
from gateway.minimise.mapping import Mapping, MappingError, load_mapping
from gateway.minimise.projector import Projector
from gateway.offline.batch import (
    PARALLEL_MIN_BYTES,
    MapSummary,
    map_jsonl_parallel,
    map_stream,
)


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
    lines.extend(warnings(summary, mapping))
    return "\n".join(lines)


def warnings(summary: MapSummary, mapping: Mapping) -> list[str]:
    """What looks wrong with the mapping or the export: names, lines and counts, no values."""
    found: list[str] = []
    for name in sorted(summary.unseen or ()):
        line = _line_of(mapping.path, name)
        where = f"{mapping.path}:{line}" if line else mapping.path
        role, effect = _role(mapping, name)
        found.append(
            f"  warning: {where}: {role}: source field {name!r} is in no record of the input "
            f"(a typo in the mapping, or a column the export lacks?){effect}"
        )
    extra, groups = summary.duplicates()
    if extra:
        shown = "; ".join("lines " + ", ".join(f"{n:,}" for n in lines) for lines in groups[:5])
        more = " …" if len(groups) > 5 else ""
        found.extend(
            textwrap.wrap(
                f"warning: {extra:,} record{'s' if extra != 1 else ''} repeat the identity "
                f"({', '.join(mapping.identity.fields)}) of an earlier record, so one subject "
                f"id occurs more than once in the output: {shown}{more}",
                92,
                initial_indent="  ",
                subsequent_indent="    ",
            )
        )
    return found


def _role(mapping: Mapping, source: str) -> tuple[str, str]:
    """Where a mapping uses a source field, and what its absence does to the output."""
    if source in mapping.identity.fields:
        return "identity", ", so every record is quarantined"
    for name, rule in mapping.fields.items():
        if source in rule.sources:
            alone = len(rule.sources) == 1
            return f"fields.{name}", f", so {name} is empty for everyone" if alone else ""
    return "leaver", ", so no one counts as a leaver by it"


def _line_of(path: str, source: str) -> int | None:
    """The first line of the mapping file that names `source` as a quoted string."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    quoted = (f'"{source}"', f"'{source}'")
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0] if "#" not in source else line
        if any(q in code for q in quoted):
            return number
    return None


#: File signatures of formats people export by mistake, and what to do instead.
_NOT_AN_EXPORT: Final = (
    (b"PK\x03\x04", "a zip file, such as an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Excel workbook (.xls)"),
    (b"\x1f\x8b", "gzip-compressed (unpack it first)"),
)


def _not_an_export(head: bytes) -> str | None:
    for magic, what in _NOT_AN_EXPORT:
        if head.startswith(magic):
            return what
    return None


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
        wrong = _not_an_export(_peek(source))
        if wrong is not None:
            return _fail(
                f"{args.input}: this is {wrong}, not CSV or JSON Lines. Export CSV instead: "
                'in Excel, File > Save As > "CSV UTF-8 (comma delimited) (*.csv)", or choose '
                "CSV in the HR system's export"
            )
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
    if summary.read == 0:
        # Exit 0: an empty incremental export is a normal thing for a script to map.
        print(
            f"sluis map: no records in {args.input}: the input is empty"
            + (" or holds only a header row" if fmt == "csv" else " or holds only blank lines"),
            file=sys.stderr,
        )
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
