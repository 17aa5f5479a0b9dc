"""`sluis db status|upgrade|copy` end to end: real SQLite files, real PostgreSQL (each test
in a schema of its own, named in the URL the way an operator would: `options=-c
search_path=...`).

The copy's test starts from what `sluis demo` leaves behind (synced people, feed events,
runs, accounts, API tokens, a signed ledger), copies it, and then asks a `PostgresStore`
on the target the questions the gateway asks: the feed, the runs in order, the accounts.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from gateway.cli import db_copy
from gateway.cli.main import main
from gateway.runtime.storage import open_postgres
from gateway.store import migrate
from gateway.store.copy import TABLES
from gateway.store.postgres import PostgresStore
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.records import RunRecord
from gateway.store.sqlite import SqliteStore
from tests.pg import database_url, fresh_schema, require_postgres

REPO = Path(__file__).resolve().parents[1]
TENANT = "demo"
#: The newest schema version, and every migration's name, as `db` prints them.
LATEST = migrate.latest_version("sqlite")
NAMES = [f"{m.version:04d}_{m.name}" for m in migrate.migrations("sqlite")]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def pg_url(schema: str, *, password: str | None = None) -> str:
    """The suite's database as a libpq URL that picks `schema` through `options`."""
    info = psycopg.conninfo.conninfo_to_dict(require_postgres())
    user = str(info.get("user", "postgres"))
    auth = f"{user}:{password}" if password else user
    where = f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"
    return f"postgresql://{auth}@{where}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def demo_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole installation, as `sluis demo --employees 30` leaves it (keys beside it)."""
    data = tmp_path_factory.mktemp("demo") / "data"
    command = ["demo", "--employees", "30", "--data-dir", str(data)]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return data


@pytest.fixture
def install(demo_install: Path, tmp_path: Path) -> Path:
    """This test's own copy of the demo installation (data dir and key dir)."""
    data = tmp_path / "data"
    shutil.copytree(demo_install, data)
    shutil.copytree(demo_install.with_name("data-keys"), tmp_path / "data-keys")
    return data


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def _pg(schema: str) -> PostgresDatabase:
    return PostgresDatabase.open(database_url(), schema=schema, pool_size=2)


def _counts_pg(schema: str) -> dict[str, int]:
    db = _pg(schema)
    try:
        present = db.tables()
        return {
            t: int(db.all(f"SELECT count(*) FROM {t}")[0][0]) for t, _ in TABLES if t in present
        }
    finally:
        db.close()


def _counts_sqlite(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t, _ in TABLES}
    finally:
        conn.close()


def _personal_values(path: Path) -> set[str]:
    """Names, emails and job titles of the people and accounts in an installation."""
    conn = sqlite3.connect(path)
    try:
        values: set[str] = set()
        for (data,) in conn.execute("SELECT data FROM events WHERE data IS NOT NULL"):
            values |= {str(v) for v in orjson.loads(data).values() if v}
        for email, name in conn.execute("SELECT email, name FROM accounts"):
            values |= {email, name}
    finally:
        conn.close()
    return {v for v in values if len(v) >= 4}


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


# ---------------------------------------------------------------------------- copy


def _add_runs_started_together(path: Path) -> list[str]:
    """Three finished runs of one connector that started in the same microsecond, made in
    an order their ids do not sort in: only the insertion order (rowid) tells them apart."""
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    ids = ["run_c", "run_a", "run_b"]
    store = SqliteStore(path)
    try:
        for run_id in ids:
            store.start_run(RunRecord(run_id, TENANT, "afas", "full", "running", at))
            store.finish_run(run_id, "succeeded", at + timedelta(seconds=1), {"fetched": 1})
    finally:
        store.close()
    return ids


def test_copy_of_a_demo_installation_serves_the_same_gateway(
    install: Path, schema: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = install / "sluis.db"
    _add_runs_started_together(source)
    monkeypatch.setattr(db_copy, "PROGRESS_EVERY", 0.0)  # every batch reports (and is scanned)
    code, out, err = run(
        capsys,
        "db",
        "copy",
        "--data-dir",
        str(install),
        "--to",
        pg_url(schema, password="pw-S3cr3t"),
    )
    assert code == 0, out + err
    assert f"row counts: all {len(TABLES)} tables agree" in out
    assert f"ledger {TENANT}: " in out and "verified on the target; same head as the source" in out
    assert out.rstrip().endswith(
        "copy verified: set database_url to the target and start with the same keys"
    )
    assert "rows/s" in err and f"upgraded the target schema: {', '.join(NAMES)}" in err
    assert f"(schema {schema})" in out
    # No password and no personal data in anything the command printed.
    assert "pw-S3cr3t" not in out + err
    leaked = sorted(v for v in _personal_values(source) if v in out + err)
    assert not leaked, f"personal data in the output: {len(leaked)} value(s)"

    expected = _counts_sqlite(source)
    assert expected["events"] > 0 and expected["ledger_entries"] > 0
    assert _counts_pg(schema) == expected

    before = SqliteStore(source)
    after = PostgresStore(database_url(), schema=schema, pool_size=2)
    try:
        assert after.list_tenants() == before.list_tenants()
        assert after.list_connectors(TENANT) == before.list_connectors(TENANT)
        assert after.feed_rows(TENANT, 0, 10_000) == before.feed_rows(TENANT, 0, 10_000)
        assert after.events_after(TENANT, 0, 10_000) == before.events_after(TENANT, 0, 10_000)
        for connector in ("afas", "hubspot"):
            assert after.list_runs(TENANT, connector, 50) == before.list_runs(TENANT, connector, 50)
            assert after.list_instructions(TENANT, connector) == before.list_instructions(
                TENANT, connector
            )
            assert after.present_subjects(TENANT, connector) == before.present_subjects(
                TENANT, connector
            )
        # The runs that started together come back in the order they were made.
        runs = [r.id for r in after.list_runs(TENANT, "afas", 50)]
        assert [r for r in runs if r in {"run_a", "run_b", "run_c"}] == ["run_b", "run_a", "run_c"]
        assert after.last_run(TENANT, "afas") == before.last_run(TENANT, "afas")
        assert after.list_consumers(TENANT) == before.list_consumers(TENANT)
        for tenant in (None, TENANT):
            assert after.accounts.list_accounts(tenant) == before.accounts.list_accounts(tenant)
            assert after.accounts.list_tokens(tenant) == before.accounts.list_tokens(tenant)
        assert after.ledger.head(TENANT) == before.ledger.head(TENANT)
        assert list(after.ledger.iter_checkpoints(TENANT)) == list(
            before.ledger.iter_checkpoints(TENANT)
        )
        assert after.last_event_seq(TENANT) == before.last_event_seq(TENANT)
    finally:
        before.close()
        after.close()

    # The copy is an installation `sluis audit` and `sluis db status` accept as it is.
    monkeypatch.setenv("SLUIS_DATABASE_URL", pg_url(schema))
    code, out, _ = run(capsys, "db", "status")
    assert code == 0 and f"schema version: {LATEST} " in out and "pending: none" in out


def test_a_target_with_sluis_rows_is_refused(
    install: Path, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_url(schema)
    assert run(capsys, "db", "copy", "--data-dir", str(install), "--to", url)[0] == 0
    copied = _counts_pg(schema)
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", url)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "already holds Sluis data" in err and "empty database" in err
    assert _counts_pg(schema) == copied  # nothing added, nothing doubled


def test_a_source_newer_than_the_code_is_refused_before_anything_is_written(
    install: Path, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _tamper(
        install / "sluis.db",
        "INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01T00:00:00.000000Z')",
    )
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", pg_url(schema))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "version 999, newer than this Sluis knows" in err
    assert _counts_pg(schema) == {}  # not even upgraded


@pytest.mark.parametrize(
    ("statement", "message", "mend"),
    [
        # Read as a time for PostgreSQL: refused on our side, in the middle of the copy.
        (
            "UPDATE events SET occurred_at = 'yesterday' WHERE seq = (SELECT MAX(seq) FROM events)",
            "table events, column occurred_at: a stored time is not readable",
            "UPDATE events SET occurred_at = '2026-01-01T00:00:00.000000Z'"
            " WHERE occurred_at = 'yesterday'",
        ),
        # SQLite keeps text in an INTEGER column; PostgreSQL refuses it, in the last table.
        (
            "UPDATE ledger_heads SET size = 'many'",
            "table ledger_heads: database error 22P02",
            "UPDATE ledger_heads SET size ="
            " (SELECT count(*) FROM ledger_entries e WHERE e.tenant = ledger_heads.tenant)",
        ),
    ],
    ids=["bad-time", "bad-integer"],
)
def test_a_copy_that_fails_half_way_leaves_the_target_without_rows(
    install: Path,
    schema: str,
    capsys: pytest.CaptureFixture[str],
    statement: str,
    message: str,
    mend: str,
) -> None:
    _tamper(install / "sluis.db", statement)
    url = pg_url(schema)
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", url)
    assert code == 2, out + err
    assert out == ""
    assert message in err and err.rstrip().count("\n") <= 1  # the upgrade note, the error
    counts = _counts_pg(schema)
    assert set(counts) == {t for t, _ in TABLES}  # upgraded, as the copy needs
    assert not any(counts.values())
    # Mended, the source copies into the same target: the failed copy left nothing behind.
    _tamper(install / "sluis.db", mend)
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", url)
    assert code == 0, out + err


def test_a_copy_whose_ledger_does_not_verify_exits_1(
    install: Path, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A rewritten entry body: the rows copy fine, the recomputed log does not match.
    _tamper(install / "sluis.db", "UPDATE ledger_entries SET body = X'7b7d' WHERE idx = 1")
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", pg_url(schema))
    assert code == 1, out + err
    assert f"row counts: all {len(TABLES)} tables agree" in out
    assert f"ledger {TENANT}: FAILED on the target at entry 1" in out
    assert out.rstrip().endswith("copy NOT verified: do not switch to the target")


def test_copy_needs_the_signing_key_before_it_writes(
    install: Path, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(install.with_name("data-keys"))
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", pg_url(schema))
    assert code == 2 and out == ""
    assert "no ledger signing key at" in err and err.count("\n") == 1
    assert _counts_pg(schema) == {}


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("mysql://db/sluis", "--to must be a postgresql:// URL"),
        ("postgresql://postgres@127.0.0.1:5432/sluis_test?sslmode=bogus", "invalid sslmode"),
    ],
)
def test_copy_refuses_a_bad_target_url(
    install: Path, capsys: pytest.CaptureFixture[str], to: str, message: str
) -> None:
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(install), "--to", to)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


def test_copy_without_a_source_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/sluis_test"
    code, out, err = run(capsys, "db", "copy", "--data-dir", str(tmp_path / "none"), "--to", url)
    assert code == 2 and out == ""
    assert err == f"sluis db copy: no database at {tmp_path / 'none' / 'sluis.db'}\n"
    assert not (tmp_path / "none").exists()


def test_the_urls_own_options_are_kept() -> None:
    """libpq options in the URL (a schema, a statement timeout) reach the connection, beside
    the ones the store sets itself."""
    with fresh_schema() as schema:
        url = database_url(schema).replace(
            "options=-csearch_path%3D", "options=-cstatement_timeout%3D4321%20-csearch_path%3D"
        )
        db = open_postgres(url, password=None)
        try:
            assert db.all("SELECT current_schema()")[0][0] == schema
            assert db.all("SHOW statement_timeout")[0][0] == "4321ms"
            assert db.all("SHOW timezone")[0][0] == "UTC"
        finally:
            db.close()


# ---------------------------------------------------------------------------- status, upgrade


def _sqlite_config(tmp_path: Path) -> Path:
    config = tmp_path / "sluis.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return config


def _pg_config(tmp_path: Path, schema: str) -> Path:
    config = tmp_path / "sluis.toml"
    config.write_text(f'database_url = "{pg_url(schema)}"\n', encoding="utf-8")
    return config


def test_status_and_upgrade_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_sqlite_config(tmp_path))
    path = tmp_path / "data" / "sluis.db"
    code, out, _ = run(capsys, "db", "status", "--config", config)
    assert code == 0
    assert out.splitlines() == [
        f"database: {path} (not created yet)",
        f"schema version: 0 (this Sluis knows up to {LATEST})",
        f"pending: {', '.join(NAMES)}",
    ]
    assert not path.exists()  # looking made nothing

    code, out, _ = run(capsys, "db", "upgrade", "--config", config)
    assert code == 0
    assert out.splitlines() == [
        *(f"{path}: applied {name}" for name in NAMES),
        f"{path}: now at version {LATEST}",
    ]
    assert path.stat().st_mode & 0o777 == 0o600

    assert (
        run(capsys, "db", "upgrade", "--config", config)[1]
        == f"{path}: already at version {LATEST}\n"
    )
    code, out, _ = run(capsys, "db", "status", "--config", config)
    assert code == 0 and out.splitlines()[1:] == [
        f"schema version: {LATEST} (this Sluis knows up to {LATEST})",
        "pending: none",
    ]


def test_status_and_upgrade_on_postgres(
    tmp_path: Path, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_pg_config(tmp_path, schema))
    shown = f"PostgreSQL at {pg_url(schema)} (schema {schema})"
    code, out, _ = run(capsys, "db", "status", "--config", config)
    assert code == 0
    assert out.splitlines() == [
        f"database: {shown}",
        f"schema version: 0 (this Sluis knows up to {LATEST})",
        f"pending: {', '.join(NAMES)}",
    ]
    code, out, _ = run(capsys, "db", "upgrade", "--config", config)
    assert code == 0
    assert out.splitlines() == [
        *(f"{shown}: applied {name}" for name in NAMES),
        f"{shown}: now at version {LATEST}",
    ]
    assert set(_counts_pg(schema)) == {t for t, _ in TABLES}  # in the schema the URL named
    assert (
        run(capsys, "db", "upgrade", "--config", config)[1]
        == f"{shown}: already at version {LATEST}\n"
    )
    code, out, _ = run(capsys, "db", "status", "--config", config)
    assert code == 0 and out.splitlines()[-1] == "pending: none"


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_schema_newer_than_the_code_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    with fresh_schema() as schema:
        if engine == "sqlite":
            config = str(_sqlite_config(tmp_path))
        else:
            config = str(_pg_config(tmp_path, schema))
        assert run(capsys, "db", "upgrade", "--config", config)[0] == 0
        stamp = "2030-01-01T00:00:00.000000Z"
        if engine == "sqlite":
            _tamper(
                tmp_path / "data" / "sluis.db",
                f"INSERT INTO schema_migrations VALUES (999, 'future', '{stamp}')",
            )
        else:
            db = _pg(schema)
            db.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
            db.close()
        for action in ("status", "upgrade"):
            code, out, err = run(capsys, "db", action, "--config", config)
            assert code == 2, action
            assert err.count("\n") == 1, err
            assert err.startswith(f"sluis db {action}: the database schema is at version 999,")
            assert f"newer than this Sluis knows ({LATEST})" in err
            assert "Traceback" not in out + err
        code, out, _ = run(capsys, "db", "status", "--config", config)
        assert f"schema version: 999 (this Sluis knows up to {LATEST})" in out


def test_a_config_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('database_url = "mysql://x"\n', encoding="utf-8")
    code, out, err = run(capsys, "db", "status", "--config", str(bad))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"sluis db status: {bad}: database_url")
