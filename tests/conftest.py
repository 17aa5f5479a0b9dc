"""Shared fixtures: paths to the repo's mappings and the sibling `shared/` folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAPPINGS = REPO / "mappings"


@pytest.fixture
def afas_mapping_path() -> Path:
    return MAPPINGS / "afas.toml"
