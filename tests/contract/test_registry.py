"""The connector registry: every registered type has a contract harness, and a production
sync loads no emulator code or synthetic people."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.registry import connector_type, pull_types
from tests.conftest import REPO

HERE = Path(__file__).resolve().parent


def test_every_registered_connector_type_has_a_contract_harness() -> None:
    covered: dict[str, str] = {}
    for path in sorted(HERE.glob("harness_*.py")):
        harness = importlib.import_module(f"tests.contract.{path.stem}").HARNESS
        covered[harness.type] = path.name
    # A pushed type (scim) has no fetch, so the pull suite does not apply to it; its own
    # contract is tests/contract/test_pushed.py.
    missing = [name for name in pull_types() if name not in covered]
    assert not missing, (
        f"connector types without a contract harness: {missing}; add "
        "tests/contract/harness_<type>.py defining HARNESS (see tests/contract/harness.py)"
    )


#: Runs in a fresh interpreter: every registered type through the registry, a full sync of
#: each against its emulator (served by the test process), then the modules it loaded.
_SYNC_SCRIPT = """
import asyncio, json, re, sys
from datetime import UTC, datetime
from pathlib import Path

from connectors.base import RetryPolicy, SyncMode
from connectors.registry import connector_type, known_types, pull_types
from tests.principals import system
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping

args = json.loads(sys.argv[1])
settings = Settings(data_dir=Path(args["data_dir"]), admin_token="t" * 32, scheduler=False,
                    allow_private_sources=True)
services = Services.open(settings, retry=RetryPolicy(attempts=2, initial_wait=0.001))
now = datetime.now(UTC)
create_tenant(services.store, services.box, "acme", "Acme BV", now, by=system(services, "acme"))
fetched = {}
for name in known_types():
    if connector_type(name).pushed:
        continue
    source = args["sources"][name]
    create_connector(
        services.store, services.box, tenant="acme", by=system(services, "acme"), connector_id=name,
                     type_name=name, base_url=source["url"], credentials=source["credentials"],
                     settings=source["settings"], mapping_text=bundled_mapping(name).read_text(),
                     now=now)
    grant(services.store, by=system(services, "acme"), connector=name, purpose="test", now=now)
    run = asyncio.run(services.engine.sync("acme", name, SyncMode.FULL))
    assert run.status == "succeeded", run.error
    fetched[name] = run.counts["fetched"]
services.close()
loaded = sorted(m for m in sys.modules
                if re.fullmatch(r"connectors\\.(\\w+\\.)?(emulator|synthetic)\\w*", m))
print(json.dumps({"fetched": fetched, "loaded": loaded}))
"""


async def test_a_production_sync_imports_no_emulator_or_synthetic_data(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    sources = {}
    for name in pull_types():
        kind = connector_type(name)
        server = await aiohttp_server(kind.emulator(people=30, seed=3), host="127.0.0.1")
        url = kind.emulator_base_url(server.app, str(server.make_url("/")))
        sources[name] = {
            "url": url,
            "credentials": dict(kind.emulator_credentials),
            "settings": kind.settings_for_emulator(url),
        }
    args = json.dumps({"data_dir": str(tmp_path / "data"), "sources": sources})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SYNC_SCRIPT,
        args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert all(n > 0 for n in report["fetched"].values()), report
    assert set(report["fetched"]) == set(pull_types())
    assert report["loaded"] == []
