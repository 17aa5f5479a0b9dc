"""`sluis retention run`: the dry run shows per tenant and rule what a run would remove and
changes nothing (SQLite: the database file byte for byte; PostgreSQL: every row); the run
then removes exactly that, records it on the ledger and prints the same table; a second
process cannot run it while the job is claimed; mistakes are one-line errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from gateway.cli.main import main
from gateway.lifecycle.retention.job import JOB_NAME
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.records import NewEvent
from gateway.tenancy import create_tenant
from tests.pg import database_url, fresh_schema
from tests.principals import system

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=120)


@pytest.fixture(autouse=True)
def _no_sluis_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SLUIS_") and name != "SLUIS_REQUIRE_POSTGRES":
            monkeypatch.delenv(name)


def _events(services: Services, tenant: str) -> None:
    rows = []
    for n in range(6):
        sid = f"{n:032x}"
        data = {"first_name": f"Voornaam{n}", "last_name": "X", "email": f"p{n}@werk.example",
                "job_title": "T"}  # fmt: skip
        rows.append(NewEvent(f"evt_{tenant}_{n}a", "subject.upserted", sid, data, OLD, "hr", "i"))
        if n < 2:  # left long ago
            rows.append(
                NewEvent(f"evt_{tenant}_{n}b", "subject.deleted", sid, None, OLD, "hr", "i")
            )
        else:  # changed long ago
            rows.append(
                NewEvent(f"evt_{tenant}_{n}b", "subject.upserted", sid, data, OLD, "hr", "i")
            )
    services.store.append_events(tenant, rows)


def _make(settings: Settings) -> None:
    services = Services.open(settings)
    try:
        for tenant in ("acme", "beta"):
            by = system(services, tenant)
            create_tenant(services.store, services.box, tenant, f"{tenant} BV", NOW, by=by)
            _events(services, tenant)
    finally:
        services.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["retention", "run", *args])
    out = capsys.readouterr()
    return code, (orjson.loads(out.out) if "--json" in args and code == 0 else out)


def _counts(report: dict[str, Any]) -> dict[tuple[str | None, str], int]:
    return {(r["tenant"], r["rule"]): r["count"] for r in report["removals"]}


def _digest(directory: Path) -> str:
    """The database file's digest; its write-ahead log must be empty (a read-only open
    leaves an empty one, and the shared-memory index, behind)."""
    wal = directory / "sluis.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    return hashlib.sha256((directory / "sluis.db").read_bytes()).hexdigest()


def test_the_dry_run_changes_nothing_and_the_run_removes_what_it_showed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    _make(Settings(data_dir=data_dir))
    before = _digest(data_dir)

    code, dry = _run(capsys, "--dry-run", "--json", "--data-dir", str(data_dir))
    assert code == 0
    counts = _counts(dry)
    assert dry["dry_run"] is True
    assert counts[("acme", "feed-compaction")] == 6 and counts[("acme", "leavers")] == 2
    assert counts[("beta", "leavers")] == 2 and (None, "sessions") in counts
    assert _digest(data_dir) == before  # byte for byte: the database was opened read-only

    code, text = _run(capsys, "--dry-run", "--data-dir", str(data_dir), "--tenant", "acme")
    assert code == 0
    assert "Retention dry run: nothing was removed" in text.out
    assert "feed-compaction" in text.out and "beta" not in text.out
    assert "would remove in all: 8" in text.out

    code, ran = _run(capsys, "--json", "--data-dir", str(data_dir))
    assert code == 0 and ran["dry_run"] is False
    assert _counts(ran) == counts
    code, again = _run(capsys, "--dry-run", "--json", "--data-dir", str(data_dir))
    assert again["total"] == 0
    assert b"p0@werk.example" not in b"".join(p.read_bytes() for p in data_dir.iterdir()
                                               if p.is_file())  # fmt: skip

    services = Services.open(Settings(data_dir=data_dir))
    try:
        ledger = services.ledger("acme")
        assert ledger.verify(services.signer.public_key).ok
        assert services.store.job_state(JOB_NAME) is not None
        # A second process cannot run it while the job is claimed.
        until = datetime.now(UTC) + timedelta(minutes=10)
        assert services.store.claim_job(JOB_NAME, "replica-elsewhere", until, datetime.now(UTC))
    finally:
        services.close()
    code, out = _run(capsys, "--data-dir", str(data_dir))
    assert code == 2 and "another process is running the retention job" in out.err


def test_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none"
    code, out = _run(capsys, "--dry-run", "--data-dir", str(missing))
    assert code == 2 and "no database" in out.err and not missing.exists()
    data_dir = tmp_path / "data"
    _make(Settings(data_dir=data_dir))
    code, out = _run(capsys, "--dry-run", "--data-dir", str(data_dir), "--tenant", "nobody")
    assert code == 2 and out.err.strip() == "sluis retention run: no tenant nobody"
    assert "Traceback" not in out.err


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as schema:
        yield database_url(schema)


def _rows(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )]  # fmt: skip
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            ).fetchone()[0]  # type: ignore[index]
            for t in tables
        }


def test_on_postgresql_the_dry_run_changes_no_row(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)
    _make(settings)
    before = _rows(pg_url)
    code, dry = _run(capsys, "--dry-run", "--json", "--database-url", pg_url,
                     "--data-dir", str(tmp_path / "data"))  # fmt: skip
    assert code == 0 and dry["total"] > 0
    assert _rows(pg_url) == before
    code, ran = _run(capsys, "--json", "--database-url", pg_url, "--data-dir",
                     str(tmp_path / "data"))  # fmt: skip
    assert code == 0 and _counts(ran) == _counts(dry)
    after = _rows(pg_url)
    assert after["events"] == before["events"] - 6 * 2 - 2 * 2  # superseded, then leavers'
