"""Whatever bytes arrive, the readers and `sluis map` end in records, quarantine or a clear
export error: never an exception of another kind, never a value in a reason."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.exports import ExportError, Malformed, iter_lines, read_csv, read_jsonl
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from gateway.offline.batch import map_stream

REPO = Path(__file__).resolve().parents[1]
PROJECTOR = Projector(
    load_mapping(REPO / "mappings" / "afas.toml"), b"f" * 32, today=date(2026, 1, 1)
)

csvish = st.lists(
    st.sampled_from([b"Medewerker", b"Email_werk", b"Functie", b"a@b.nl", b"1", b";", b",",
                     b"\t", b'"', b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xe9", b" ",
                     b"\xef\xbb\xbf", b"sep=;", b"\xc3\xa9", b"x" * 50]),
    max_size=60,
).map(b"".join)  # fmt: skip
jsonish = st.lists(
    st.sampled_from([b"{", b"}", b"[", b"]", b'"Medewerker"', b'"Email_werk"', b":", b",",
                     b'"a@b.nl"', b"1", b"null", b"\n", b"\r\n", b"\\u0000", b'"\\ud800"',
                     b"\xff", b"NaN", b" ", b'"x"']),
    max_size=60,
).map(b"".join)  # fmt: skip


def _drain(records: object) -> None:
    out = io.BytesIO()
    summary = map_stream(PROJECTOR, records, out)  # type: ignore[arg-type]
    for _, reason in summary.first_quarantined:
        assert "a@b.nl" not in reason


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(csvish, st.binary(max_size=300)))
def test_csv_bytes(data: bytes) -> None:
    try:
        records = list(read_csv(io.BytesIO(data)))
    except ExportError:
        return
    for _, value in records:
        assert isinstance(value, dict | Malformed)
    _drain(iter(records))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(jsonish, st.binary(max_size=300)))
def test_jsonl_bytes(data: bytes) -> None:
    _drain(read_jsonl(io.BytesIO(data)))


def _reference_lines(data: bytes, max_line_bytes: int) -> list[bytes | None]:
    """What `iter_lines` promises, written the obvious (whole-file) way."""
    parts = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return [None if len(p) > max_line_bytes else p.removesuffix(b"\r") for p in parts]


@settings(max_examples=400)
@given(
    lines=st.lists(
        st.tuples(st.integers(0, 14), st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])), max_size=8
    ),
    bom=st.booleans(),
    last_newline=st.booleans(),
)
def test_iter_lines_agrees_with_splitting_the_whole_file(
    lines: list[tuple[int, bytes]], bom: bool, last_newline: bool
) -> None:
    """Lengths around the limit (10), a byte-order mark before an overlong first line,
    carriage returns, a last line without its newline."""
    data = b"\xef\xbb\xbf" if bom else b""
    for n, (length, ending) in enumerate(lines):
        data += bytes([97 + n]) * length + ending
    if lines and not last_newline:
        data = data.removesuffix(lines[-1][1])
    assert list(iter_lines(io.BytesIO(data), 10)) == _reference_lines(data, 10)
