"""People per sync transaction (`commit_records`): 1,000 by default on both stores (a page
of 1,000 in one transaction; `COMMIT_RECORDS` says what was measured), a configured value
wins, and the engine runs with what is in effect."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.runtime.config import COMMIT_RECORDS, Settings, load_settings
from gateway.runtime.services import Services
from tests.pg import database_url, fresh_schema

ADMIN = "admin-token-0123456789abcdef"


def test_the_default_and_a_configured_value(tmp_path: Path) -> None:
    url = "postgresql://sluis@db.internal:5432/sluis"
    assert COMMIT_RECORDS == 1000
    assert Settings(data_dir=tmp_path).commit_records == COMMIT_RECORDS
    assert Settings(data_dir=tmp_path, database_url=url).commit_records == COMMIT_RECORDS
    env = {"SLUIS_DATA_DIR": str(tmp_path), "SLUIS_DATABASE_URL": url}
    assert load_settings(env=env).commit_records == COMMIT_RECORDS
    assert load_settings(env={**env, "SLUIS_COMMIT_RECORDS": "40"}).commit_records == 40
    assert Settings(data_dir=tmp_path, commit_records=250).commit_records == 250
    for bad in (0, 9, 100_001):
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, commit_records=bad)


@pytest.mark.parametrize("configured", [None, 40])
def test_the_engine_commits_in_the_size_in_effect(tmp_path: Path, configured: int | None) -> None:
    extra = {} if configured is None else {"commit_records": configured}
    expected = configured or COMMIT_RECORDS
    services = Services.open(Settings(data_dir=tmp_path / "lite", admin_token=ADMIN, **extra))
    try:
        assert services.engine.commit_records == expected
    finally:
        services.close()
    with fresh_schema() as schema:
        settings = Settings(
            data_dir=tmp_path / "pg", admin_token=ADMIN, database_url=database_url(schema),
            **extra,
        )  # fmt: skip
        services = Services.open(settings)
        try:
            assert services.engine.commit_records == expected
        finally:
            services.close()
