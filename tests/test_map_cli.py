"""`sluis map` end to end, as a customer runs it: real files, a real process, real exit codes."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.afas.synthetic import SENSITIVE_FIELDS, employees
from gateway.minimise.egress import SUBJECT_KEYS

REPO = Path(__file__).resolve().parents[1]
AFAS = str(REPO / "mappings" / "afas.toml")


def sluis(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "tenant.key"
    assert sluis("keygen", "--output", str(path)).returncode == 0
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def _export(tmp_path: Path, n: int = 300) -> tuple[Path, list[dict[str, object]]]:
    rows = list(employees(n, seed=21, leaver_share=0.1))
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path, rows


def _secrets(rows: list[dict[str, object]]) -> set[str]:
    return {str(r[k]) for r in rows for k in SENSITIVE_FIELDS if r.get(k)}


def test_jsonl_export_is_minimised(tmp_path: Path, key_file: Path) -> None:
    src, rows = _export(tmp_path)
    out = tmp_path / "subjects.jsonl"
    run = sluis(
        "map",
        "--mapping",
        AFAS,
        "--input",
        str(src),
        "--output",
        str(out),
        "--key-file",
        str(key_file),
        "--as-of",
        "2026-11-22",
    )
    assert run.returncode == 0, run.stderr
    subjects = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(subjects) == len(rows)
    assert all(tuple(s) == SUBJECT_KEYS for s in subjects)
    assert sum(not s["active"] for s in subjects) == sum(bool(r["Datum_uit_dienst"]) for r in rows)
    blob = out.read_text() + run.stderr.decode()
    assert not [s for s in _secrets(rows) if s in blob]
    err = run.stderr.decode()
    assert "records read              300" in err
    assert "BSN" in err and "IBAN" in err  # names of dropped fields, never values
    # Same key, same ids: a second run is reproducible.
    again = tmp_path / "again.jsonl"
    sluis(
        "map",
        "-m",
        AFAS,
        "-i",
        str(src),
        "-o",
        str(again),
        "--key-file",
        str(key_file),
        "--as-of",
        "2026-11-22",
    )
    assert again.read_bytes() == out.read_bytes()


def test_cp1252_semicolon_csv_from_stdin(tmp_path: Path, key_file: Path) -> None:
    rows = [r for r in employees(60, seed=4) if "".join(map(str, r.values())).isascii() is False]
    buf = io.StringIO()
    flat = [
        {k: ("" if v is None else str(v)) for k, v in r.items() if k != "Noodcontact"} for r in rows
    ]
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]), delimiter=";")
    writer.writeheader()
    writer.writerows(flat)
    data = buf.getvalue().encode("cp1252", errors="replace")
    run = sluis("map", "-m", AFAS, "--key-file", str(key_file), stdin=data)
    assert run.returncode == 0, run.stderr
    subjects = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert len(subjects) == len(flat)
    assert "delimiter ';'" in run.stderr.decode()
    assert "Windows-1252" in run.stderr.decode()
    assert any(not s["first_name"].isascii() for s in subjects)


def test_the_bundled_sample_runs() -> None:
    run = sluis("map", "--mapping", AFAS, "--input", "examples/afas-medewerkers.csv")
    assert run.returncode == 0, run.stderr
    err = run.stderr.decode()
    assert "line 9: email is required but missing" in err
    assert len(run.stdout.splitlines()) == 29


def test_bad_lines_are_quarantined_with_line_numbers(tmp_path: Path, key_file: Path) -> None:
    src, rows = _export(tmp_path, 20)
    lines = src.read_bytes().splitlines()
    lines[3] = b'{"Medewerker": "9", "BSN": "111222333", broken'
    lines[7] = orjson.dumps({**rows[7], "Email_werk": "not-an-email"})
    lines[11] = b"[1, 2, 3]"
    src.write_bytes(b"\n".join(lines) + b"\n")
    qfile = tmp_path / "quarantine.jsonl"
    run = sluis(
        "map",
        "-m",
        AFAS,
        "-i",
        str(src),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--key-file",
        str(key_file),
        "--quarantine",
        str(qfile),
    )
    assert run.returncode == 0, run.stderr
    quarantined = [orjson.loads(x) for x in qfile.read_bytes().splitlines()]
    assert [q["line"] for q in quarantined] == [4, 8, 12]
    assert quarantined[1]["reason"] == "email: not a valid email address"
    err = run.stderr.decode()
    assert "line 4: invalid JSON" in err and "line 12: record is a list" in err
    assert "111222333" not in err and "not-an-email" not in err
    assert "Traceback" not in err
    assert len((tmp_path / "o.jsonl").read_bytes().splitlines()) == 17


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mapping", "nope.toml"], "nope.toml: cannot read the file"),
        (["--mapping", AFAS, "--input", "missing.jsonl"], "missing.jsonl: cannot open the input"),
        (["--mapping", AFAS, "--key-file", "pyproject.toml.nope"], "cannot read the key file"),
        (["--mapping", AFAS, "--as-of", "gisteren"], "is not a date"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    run = sluis("map", *args, stdin=b"")
    assert run.returncode == 2
    err = run.stderr.decode()
    assert message in err
    assert "Traceback" not in err


def test_short_key_and_bad_mapping_are_explained(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"tooshort")
    run = sluis("map", "-m", AFAS, "--key-file", str(short), stdin=b"")
    assert run.returncode == 2 and b"at least 32 bytes" in run.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(AFAS).read_text().replace("[fields.job_title]", "[fields.salary]"))
    run = sluis("map", "-m", str(bad), stdin=b"")
    assert run.returncode == 2
    assert f"{bad}:29: fields.salary: unknown egress field".encode() in run.stderr


def test_duplicate_csv_header_fails_cleanly_and_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "dup.csv"
    src.write_bytes(b"Medewerker;Email_werk;Email_werk\n1;a@example.nl;b@example.nl\n")
    out = tmp_path / "out.jsonl"
    run = sluis("map", "-m", AFAS, "-i", str(src), "-o", str(out))
    assert run.returncode == 2
    assert b"column 3 has the same name as column 2" in run.stderr
    assert not out.exists()
    assert list(tmp_path.glob(".out.jsonl.*")) == []


def test_keygen_refuses_to_overwrite(key_file: Path) -> None:
    before = key_file.read_bytes()
    run = sluis("keygen", "--output", str(key_file))
    assert run.returncode == 2
    assert key_file.read_bytes() == before


def test_parallel_and_single_process_runs_agree(tmp_path: Path, key_file: Path) -> None:
    """Workers must quarantine, count and write exactly what one process does."""
    rows = list(employees(3000, seed=8))
    lines = [orjson.dumps(r) for r in rows]
    lines[5] = b'{"Medewerker": "1", broken'
    lines[700] = b"   "
    lines[1500] = orjson.dumps({**rows[1500], "Email_werk": "nope"})
    lines[2100] = b"[]"
    src = tmp_path / "big.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n" + b'{"x": 1}')
    runs = {}
    for jobs in ("1", "2"):
        out, quarantine = tmp_path / f"out{jobs}.jsonl", tmp_path / f"q{jobs}.jsonl"
        run = sluis("map", "-m", AFAS, "-i", str(src), "-o", str(out), "--key-file",
                    str(key_file), "--as-of", "2026-11-22", "--quarantine", str(quarantine),
                    "--jobs", jobs)  # fmt: skip
        assert run.returncode == 0, run.stderr
        runs[jobs] = (out.read_bytes(), quarantine.read_bytes(), run.stderr)
    assert runs["1"] == runs["2"]
    quarantined = [orjson.loads(x)["line"] for x in runs["2"][1].splitlines()]
    assert quarantined == [6, 1501, 2101, 3001]


def test_a_json_document_gets_a_clear_error_not_a_flood_of_quarantine(tmp_path: Path) -> None:
    src = tmp_path / "export.json"
    src.write_text('[\n  {"Medewerker": "1", "BSN": "123456782"}\n]\n')
    run = sluis("map", "-m", AFAS, "-i", str(src))
    assert run.returncode == 2
    assert b"not JSON Lines" in run.stderr and b"jq -c" in run.stderr
    assert b"123456782" not in run.stderr


def test_records_are_projected_as_they_are_read() -> None:
    """No chunk of parsed records is held: each is written before the next one is read."""
    from gateway.minimise.mapping import load_mapping
    from gateway.minimise.projector import Projector
    from gateway.offline.batch import map_stream

    consumed = 0

    def records() -> Iterator[tuple[int, object]]:
        nonlocal consumed
        for line, row in enumerate(employees(60, seed=5), start=1):
            consumed += 1
            yield line, row

    seen_at_write: list[int] = []

    class Out(io.BytesIO):
        def write(self, data: Any) -> int:
            seen_at_write.append(consumed)
            return super().write(data)

    out = Out()
    summary = map_stream(Projector(load_mapping(AFAS), b"k" * 32), records(), out)
    assert summary.read == 60 and len(seen_at_write) == summary.written > 50
    assert seen_at_write == sorted(set(seen_at_write)) and seen_at_write[0] <= 2
    assert len(out.getvalue().splitlines()) == summary.written


def test_a_mapped_field_missing_from_the_export_and_repeated_identities_are_warned(
    tmp_path: Path, key_file: Path
) -> None:
    """A typo (`Functe`) used to empty job_title for everyone, silently, with exit 0."""
    mapping = tmp_path / "typo.toml"
    text = Path(AFAS).read_text()
    mapping.write_text(text.replace('source = "Functie"', 'source = "Functe"'))
    typo_line = text.splitlines().index('source = "Functie"') + 1
    rows = list(employees(2500, seed=4))
    rows.insert(1200, dict(rows[7]))  # the same person twice, far apart
    rows.append(dict(rows[2000]))
    src = tmp_path / "export.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    errs = []
    for jobs in ("1", "2"):
        run = sluis("map", "-m", str(mapping), "-i", str(src), "-o", str(tmp_path / "o"),
                    "--key-file", str(key_file), "--jobs", jobs)  # fmt: skip
        assert run.returncode == 0, run.stderr
        errs.append(run.stderr.decode())
    assert errs[0] == errs[1]
    err = errs[0]
    assert f"warning: {mapping}:{typo_line}: fields.job_title: source field 'Functe'" in err
    assert "job_title is empty for everyone" in err
    assert "Functie" in err.split("source fields dropped")[1]  # the real column: dropped
    assert "2 records repeat the identity (Medewerker)" in " ".join(err.split())
    assert "lines 8, 1,201; lines 2,001, 2,502" in " ".join(err.split())
    assert rows[7]["Medewerker"] not in err and str(rows[7]["Achternaam"]) not in err


def test_a_mapping_that_matches_the_export_gives_no_warning(tmp_path: Path) -> None:
    src, _ = _export(tmp_path, 50)
    run = sluis("map", "-m", AFAS, "-i", str(src), "-o", str(tmp_path / "o"))
    assert run.returncode == 0 and b"warning" not in run.stderr


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("empty.jsonl", b"", "blank lines"),
        ("blank.jsonl", b"\n  \n\r\n", "blank lines"),
        ("header.csv", b"Medewerker;Voornaam;Email_werk\r\n", "a header row"),
    ],
)
def test_an_empty_export_says_so(tmp_path: Path, name: str, content: bytes, kind: str) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    run = sluis("map", "-m", AFAS, "-i", str(src), "-o", str(tmp_path / "o"))
    assert run.returncode == 0
    assert f"sluis map: no records in {src}: the input is empty or holds only {kind}" in (
        run.stderr.decode()
    )


@pytest.mark.parametrize(
    ("name", "head", "what"),
    [
        ("export.xlsx", b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook (.xlsx)"),
        ("export.csv", b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook (.xlsx)"),
        ("export.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "old-style Excel workbook (.xls)"),
        ("export.jsonl.gz", b"\x1f\x8b\x08\x00", "gzip-compressed"),
    ],
)
def test_a_workbook_gets_told_how_to_export_csv(
    tmp_path: Path, name: str, head: bytes, what: str
) -> None:
    src = tmp_path / name
    src.write_bytes(head + b"\x00\x01Medewerker 123456782" * 50)
    out = tmp_path / "o.jsonl"
    for args in (["-i", str(src)], ["--format", "csv"]):
        stdin = src.read_bytes() if "-i" not in args else None
        run = sluis("map", "-m", AFAS, *args, "-o", str(out), stdin=stdin)
        assert run.returncode == 2
        err = run.stderr.decode()
        assert what in err and "Save As" in err and "CSV UTF-8" in err
        assert "Traceback" not in err and "123456782" not in err and "quarantined" not in err
        assert not out.exists()
