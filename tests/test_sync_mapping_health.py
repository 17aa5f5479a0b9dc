"""A sync whose mapping names a source field that never arrives says so (issue #6).

A typo (`Functe` for `Functie`) used to leave job_title empty for everyone, with a run that
"succeeded" and nothing in the counts, the log or the metrics. Real AFAS emulator over
HTTP, real SQLite store.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest

from connectors.afas.emulator import EMULATOR_TOKEN
from connectors.base import SyncMode
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector
from mappings import bundled_mapping
from tests.principals import system
from tests.test_sync import World, world  # noqa: F401  (the fixture)


async def test_a_mapped_field_no_record_holds_is_counted_logged_and_measured(
    world: World,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = datetime.now(UTC)
    text = bundled_mapping("afas").read_text()
    for connector, mapping in (("typo", text.replace('"Functie"', '"Functe"')), ("ok", text)):
        create_connector(
            world.store,
            world.services.box,
            tenant="acme",
            by=system(world.services, "acme"),
            connector_id=connector,
            type_name="afas",
            base_url=str(world.server.make_url("/profitrestservices")),
            credentials={"token": EMULATOR_TOKEN},
            mapping_text=mapping,
            settings={"page_size": 100},
            now=now,
        )
        grant(
            world.store,
            by=system(world.services, "acme"),
            connector=connector,
            purpose="accounts",
            now=now,
        )
    with caplog.at_level(logging.WARNING, logger="sluis.sync"):
        typo = await world.services.engine.sync("acme", "typo", SyncMode.FULL)
        ok = await world.services.engine.sync("acme", "ok", SyncMode.FULL)
    assert typo.status == ok.status == "succeeded"
    assert world.store.get_run(typo.id).counts["unseen_source_fields"] == 1
    assert world.store.get_run(ok.id).counts["unseen_source_fields"] == 0
    logged = [r.getMessage() for r in caplog.records if "mapped source fields" in r.getMessage()]
    assert len(logged) == 1 and "Functe" in logged[0] and "typo" in logged[0]
    metrics = generate_latest(world.services.metrics.registry).decode()
    assert 'sluis_mapping_fields_unseen{connector="typo",tenant="acme"} 1.0' in metrics
    assert 'sluis_mapping_fields_unseen{connector="ok",tenant="acme"} 0.0' in metrics
    values = {str(p[k]) for p in world.people for k in ("Achternaam", "Email_werk") if p.get(k)}
    assert not [v for v in values if v in "\n".join(logged) or f'"{v}"' in metrics]
