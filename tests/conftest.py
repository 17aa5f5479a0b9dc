"""Shared fixtures: paths to the repo's mappings and the sibling `shared/` folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAPPINGS = REPO / "mappings"


@pytest.fixture
def afas_mapping_path() -> Path:
    return MAPPINGS / "afas.toml"


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[str]:
    """A real OpenID provider on 127.0.0.1 (oidc-provider-mock, built on authlib): its
    authorization page takes a subject, `PUT /users/<sub>` sets that person's claims."""
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread(port=0) as server:
        yield f"http://127.0.0.1:{server.server_port}"
