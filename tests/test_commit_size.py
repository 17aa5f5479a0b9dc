"""People per sync transaction (`commit_records`): 1,000 on SQLite, where each transaction
costs a ledger entry, a checkpoint and a COMMIT of the one writer; 500 on PostgreSQL, where
a transaction holds up only the tenant's other writers and each costs round trips under its
lock; a configured value wins on both, and the engine runs with what is in effect."""

from __future__ import annotations

from pathlib import Path

from gateway.runtime.config import (
    COMMIT_RECORDS,
    COMMIT_RECORDS_POSTGRES,
    Settings,
    load_settings,
)
from gateway.runtime.services import Services
from tests.pg import database_url, fresh_schema

ADMIN = "admin-token-0123456789abcdef"


def test_each_store_has_its_default_and_a_configured_value_wins(tmp_path: Path) -> None:
    url = "postgresql://sluis@db.internal:5432/sluis"
    assert (COMMIT_RECORDS, COMMIT_RECORDS_POSTGRES) == (1000, 500)
    assert Settings(data_dir=tmp_path).commit_size == COMMIT_RECORDS
    assert Settings(data_dir=tmp_path, database_url=url).commit_size == COMMIT_RECORDS_POSTGRES
    env = {"SLUIS_DATA_DIR": str(tmp_path), "SLUIS_DATABASE_URL": url}
    assert load_settings(env=env).commit_size == COMMIT_RECORDS_POSTGRES
    assert load_settings(env={**env, "SLUIS_COMMIT_RECORDS": "40"}).commit_size == 40
    assert Settings(data_dir=tmp_path, commit_records=250).commit_size == 250


def test_the_engine_commits_in_the_size_in_effect(tmp_path: Path) -> None:
    services = Services.open(Settings(data_dir=tmp_path / "lite", admin_token=ADMIN))
    try:
        assert services.engine.commit_records == COMMIT_RECORDS
    finally:
        services.close()
    with fresh_schema() as schema:
        settings = Settings(
            data_dir=tmp_path / "pg", admin_token=ADMIN, database_url=database_url(schema)
        )
        services = Services.open(settings)
        try:
            assert services.engine.commit_records == COMMIT_RECORDS_POSTGRES
        finally:
            services.close()
