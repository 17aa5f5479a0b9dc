"""`sluis db reapply` after a restore, on real SQLite files: a backup taken before an
erasure and a restriction is restored, and the ledger's export (taken before restoring)
puts both back; a lifting since is reported, not repeated; an export that does not verify
changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli.main import main
from gateway.ledger.export import write_export
from gateway.lifecycle import erasure
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.records import NewEvent
from gateway.tenancy import create_tenant
from tests.principals import system

NOW = datetime.now(UTC)
SID = [f"{n:032x}" for n in range(4)]


@pytest.fixture(autouse=True)
def _no_sluis_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SLUIS_") and name != "SLUIS_REQUIRE_POSTGRES":
            monkeypatch.delenv(name)


def _files_hold(directory: Path, needle: bytes) -> bool:
    return any(needle in p.read_bytes() for p in directory.iterdir() if p.is_file())


def _digest(directory: Path) -> str:
    return hashlib.sha256((directory / "sluis.db").read_bytes()).hexdigest()


def _history(tmp_path: Path) -> tuple[Path, Path]:
    """A data dir whose database is restored from a backup taken before p0 was erased,
    p1 restricted and p3 lifted; and the ledger's export from just before the restore."""
    data_dir, backup, export = tmp_path / "data", tmp_path / "backup.db", tmp_path / "acme.jsonl"
    services = Services.open(Settings(data_dir=data_dir, scheduler=False))
    try:
        by = system(services, "acme")
        create_tenant(services.store, services.box, "acme", "Acme BV", NOW, by=by)
        services.store.append_events("acme", [
            NewEvent(f"evt_{n}", "subject.upserted", sid,
                     {"first_name": f"Naam{n}", "email": f"p{n}@werk.example"}, NOW, "hr", "i")
            for n, sid in enumerate(SID)
        ])  # fmt: skip
        erasure.restrict(services.store, by, [SID[3]], NOW)
        # As README's backup step does (`.backup`): a consistent copy while it runs.
        live, copy = sqlite3.connect(data_dir / "sluis.db"), sqlite3.connect(backup)
        with closing(live), closing(copy):
            live.backup(copy)
        erasure.erase(services.store, by, [SID[0]], NOW)
        erasure.restrict(services.store, by, [SID[1]], NOW)
        erasure.lift(services.store, by, SID[3], NOW)
        with export.open("wb") as out:
            write_export(services.store.ledger, ["acme"], out)
    finally:
        services.close()
    for leftover in ("sluis.db-wal", "sluis.db-shm"):
        (data_dir / leftover).unlink(missing_ok=True)
    shutil.copy(backup, data_dir / "sluis.db")
    return data_dir, export


def _reapply(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(["db", "reapply", *args])
    out = capsys.readouterr()
    return code, (orjson.loads(out.out) if "--json" in args and code == 0 else out.out), out.err


def test_a_restore_gets_its_erasures_and_restrictions_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, export = _history(tmp_path)
    assert _files_hold(data_dir, b"p0@werk.example")  # back with the restore
    before = _digest(data_dir)
    base = ["--export", str(export), "--data-dir", str(data_dir)]

    code, plan, _ = _reapply(capsys, *base, "--dry-run", "--json")
    assert code == 0, plan
    assert plan["tenants"] == [
        {"tenant": "acme", "erase": [SID[0]], "restrict": [SID[1]], "lifted_since": [SID[3]]}
    ]
    assert _digest(data_dir) == before

    code, text, _ = _reapply(capsys, *base)
    assert code == 0
    assert "acme: erased 1, restricted 1; 1 lifted since the backup" in text
    assert not _files_hold(data_dir, b"p0@werk.example")
    services = Services.open(Settings(data_dir=data_dir, scheduler=False))
    try:
        held = services.store.suppressed("acme", SID)
        assert held == {SID[0]: "erased", SID[1]: "restricted", SID[3]: "restricted"}
        assert services.ledger("acme").verify(services.signer.public_key).ok
    finally:
        services.close()
    code, again, _ = _reapply(capsys, *base, "--json")
    assert again["tenants"][0]["erase"] == [] and again["tenants"][0]["restrict"] == []


def test_an_export_that_does_not_verify_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, export = _history(tmp_path)
    lines = export.read_bytes().splitlines()
    forged = [line.replace(SID[0].encode(), SID[2].encode()) for line in lines]
    export.write_bytes(b"\n".join(forged) + b"\n")
    before = _digest(data_dir)
    code, _, err = _reapply(capsys, "--export", str(export), "--data-dir", str(data_dir))
    assert code == 1 and "does not verify" in err and "nothing was changed" in err
    assert _digest(data_dir) == before
    code, _, err = _reapply(capsys, "--export", str(tmp_path / "none.jsonl"),
                            "--data-dir", str(data_dir))  # fmt: skip
    assert code == 2 and "Traceback" not in err
