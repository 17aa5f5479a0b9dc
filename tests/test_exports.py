"""Streaming export readers: encodings, delimiters, malformed lines, bounded memory."""

from __future__ import annotations

import io

import pytest

from connectors.exports import (
    ExportError,
    Malformed,
    ReadStats,
    detect_format,
    iter_lines,
    read_csv,
    read_jsonl,
)


def _csv(data: bytes) -> tuple[list[tuple[int, object]], ReadStats]:
    stats = ReadStats()
    return list(read_csv(io.BytesIO(data), stats)), stats


def test_semicolon_cp1252_with_crlf() -> None:
    data = "Naam;Functie\r\nJosé;Monteur\r\nZoë;Docent\r\n".encode("cp1252")
    rows, stats = _csv(data)
    assert rows == [
        (2, {"Naam": "José", "Functie": "Monteur"}),
        (3, {"Naam": "Zoë", "Functie": "Docent"}),
    ]
    assert stats.delimiter == ";"
    assert stats.cp1252_lines == 2


def test_comma_utf8_with_bom_and_quoted_delimiters() -> None:
    data = '\ufeffNaam,Functie\n"Berg, van den",HR; adviseur\n'.encode()
    rows, stats = _csv(data)
    assert rows == [(2, {"Naam": "Berg, van den", "Functie": "HR; adviseur"})]
    assert stats.delimiter == ","
    assert stats.cp1252_lines == 0


def test_quoted_newline_keeps_the_starting_line_number() -> None:
    rows, _ = _csv(b'a;b\n1;"two\nlines"\n3;4\n')
    assert rows == [(2, {"a": "1", "b": "two\nlines"}), (4, {"a": "3", "b": "4"})]


def test_wrong_width_and_broken_rows_are_malformed_and_reading_goes_on() -> None:
    rows, _ = _csv(b"a;b\n1;2;3\n4\n5;6\n\n7;8\n")
    assert [(n, type(v).__name__) for n, v in rows] == [
        (2, "Malformed"),
        (3, "Malformed"),
        (4, "dict"),
        (6, "dict"),
    ]
    assert rows[0][1] == Malformed("3 values for 2 columns")


def test_duplicate_header_is_an_error_for_the_whole_export() -> None:
    with pytest.raises(ExportError, match="column 3 has the same name as column 1"):
        _csv(b"Email;Naam;Email\nx;y;z\n")


def test_empty_csv() -> None:
    assert _csv(b"") == ([], ReadStats(lines=0))


def test_jsonl_reader_quarantines_bad_lines_without_quoting_them() -> None:
    data = b'{"a": 1}\n{"a": "secret-value\n\n   \n[1,2]\n{"b": 2}'
    out = list(read_jsonl(io.BytesIO(data)))
    assert out[0] == (1, {"a": 1})
    assert out[1][0] == 2 and isinstance(out[1][1], Malformed)
    assert "secret" not in out[1][1].reason
    assert out[2] == (5, [1, 2])
    assert out[3] == (6, {"b": 2})


def test_overlong_lines_are_skipped_not_buffered() -> None:
    big = b'{"x": "' + b"y" * 5000 + b'"}'
    data = b'{"a": 1}\n' + big + b"\n" + b'{"a": 2}\n' + big
    out = list(read_jsonl(io.BytesIO(data), max_line_bytes=1000))
    assert out[0] == (1, {"a": 1})
    assert out[1] == (2, Malformed("line longer than 1000 bytes"))
    assert out[2] == (3, {"a": 2})
    assert out[3] == (4, Malformed("line longer than 1000 bytes"))


def test_iter_lines_across_block_boundaries() -> None:
    lines = [b"x" * n for n in (0, 1, 70000, 3, 1 << 20, 5)]
    data = b"\r\n".join(lines)
    assert list(iter_lines(io.BytesIO(data))) == lines


@pytest.mark.parametrize(
    ("name", "head", "fmt"),
    [
        ("x.csv", b"{", "csv"),
        ("x.JSONL", b"a;b", "jsonl"),
        (None, b'\xef\xbb\xbf {"a"', "jsonl"),
        (None, b"Medewerker;Naam", "csv"),
        ("export.dat", b"[", "jsonl"),
    ],
)
def test_detect_format(name: str | None, head: bytes, fmt: str) -> None:
    assert detect_format(name, head) == fmt


def test_excel_sep_line_names_the_delimiter() -> None:
    rows, stats = _csv(b"sep=,\r\nNaam;Functie,Afdeling\r\nvan Dijk; Jan,HR\r\n")
    assert stats.delimiter == ","
    assert rows == [(3, {"Naam;Functie": "van Dijk; Jan", "Afdeling": "HR"})]


def test_a_pretty_printed_json_document_is_recognised() -> None:
    from connectors.exports import looks_like_json_document

    assert looks_like_json_document(b'\xef\xbb\xbf[\n  {"a": 1}\n]')
    assert looks_like_json_document(b'{\r\n  "rows": []\r\n}')
    assert not looks_like_json_document(b'{"a": 1}\n{"a": 2}\n')
    assert not looks_like_json_document(b"[1, 2]\n")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_excel_unicode_text_is_utf16_with_tabs(encoding: str) -> None:
    text = 'Medewerker\tVoornaam\r\n1\tZoë\r\n2\t"Łukasz\ttab"\r\n'
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    rows, stats = _csv(data)
    assert stats.delimiter == "\t"
    assert rows == [(2, {"Medewerker": "1", "Voornaam": "Zoë"}),
                    (3, {"Medewerker": "2", "Voornaam": "Łukasz\ttab"})]  # fmt: skip


def test_overlong_utf16_lines_are_skipped() -> None:
    data = ("a\tb\r\n" + "x" * 5000 + "\r\n1\t2\r\n").encode("utf-16")
    rows = list(read_csv(io.BytesIO(data), ReadStats(), max_line_bytes=1000))
    assert rows[0] == (2, Malformed("line longer than 1000 bytes"))
    assert rows[1] == (3, {"a": "1", "b": "2"})


def test_an_unreadable_header_is_an_export_error_not_a_crash() -> None:
    with pytest.raises(ExportError, match="header: unreadable"):
        _csv(b"Medewerker;Em\rail\n1;x\n")
