"""Whatever bytes arrive, the readers and `sluis map` end in records, quarantine or a clear
export error: never an exception of another kind, never a value in a reason."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from gateway.offline.batch import map_stream
from gateway.offline.readers import ExportError, Malformed, read_csv, read_jsonl

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
