"""schemathesis `--checks all` against a real `sluis serve`: the OpenAPI document and the
gateway agree (no schema-valid request refused, no schema-violating one accepted, every
answer documented, no 5xx).

It takes a minute and needs the `fuzz` extra, so it runs only when asked:
`SLUIS_SCHEMATHESIS=1 pytest tests/api/test_schemathesis.py` (SLUIS_SCHEMATHESIS_EXAMPLES
sets the examples per operation, default 30)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serve_helpers import REPO, provision, running_gateway

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not os.environ.get("SLUIS_SCHEMATHESIS") or shutil.which("schemathesis") is None,
    reason="set SLUIS_SCHEMATHESIS=1 and install the fuzz extra",
)
def test_schemathesis_finds_no_mismatch(tmp_path: Path) -> None:
    examples = os.environ.get("SLUIS_SCHEMATHESIS_EXAMPLES", "30")
    # The tenant's admin, stepped up: it reaches every tenant route (operator-only routes
    # answer it with their documented 403).
    tokens = provision(tmp_path / "data")
    with running_gateway(tmp_path, allow_private_sources="true") as gw:
        run = subprocess.run(
            [
                "schemathesis", "--config-file", str(REPO / "tests/api/schemathesis.toml"),
                "run", f"{gw.base}/openapi.json", "--checks", "all",
                "-H", f"Authorization: Bearer {tokens.admin}", "-n", examples, "--seed", "6",
                "--generation-database", "none",
            ],
            cwd=tmp_path, capture_output=True, timeout=900, check=False,
        )  # fmt: skip
    out = run.stdout.decode(errors="replace")
    assert run.returncode == 0, out[-6000:]
    assert "Traceback" not in gw.log()
