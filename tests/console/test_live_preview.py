"""The live preview from the console: one bounded page of the connector's own source (the
bundled AFAS emulator), minimised as a sync would, shown once and recorded in the ledger."""

from __future__ import annotations

import re
from typing import Any

from connectors.afas.emulator import EMULATOR_TOKEN
from connectors.afas.emulator import make_app as afas_emulator
from gateway.ledger.audit import AuditEntry
from gateway.runtime.services import Services
from tests.console.conftest import Console, World
from tests.console.test_pages import HR, NEW, connector_form


async def test_live_preview_shows_people_drops_and_is_recorded(
    console: Console, world: World, services: Services, aiohttp_server: Any
) -> None:
    emulator = await aiohttp_server(afas_emulator(people=40), host="127.0.0.1")
    base = str(emulator.make_url("/profitrestservices"))
    await console.sign_in(world.admin)
    made = await console.submit(NEW, NEW, connector_form(base_url=base))
    assert "Connector created" in made.html
    page = await console.post(HR + "/live-preview", {"csrf": made.csrf})
    assert page.status == 200, page.html
    assert 'id="live-people"' in page.html
    assert "records read (at most 20)" in page.html
    people = re.search(r'<table id="live-people">(.*?)</table>', page.html, re.S)
    assert people and people.group(1).count("<tr>") == 21  # header + 20 people
    assert 'id="live-dropped"' in page.html  # the source's other columns, by name
    assert EMULATOR_TOKEN not in page.html
    actions = [r.entry.action for r in services.ledger("acme").entries(limit=100)
               if isinstance(r.entry, AuditEntry)]  # fmt: skip
    assert "preview.made" in actions
    # A viewer may not read people's records through a preview.
    await console.sign_in(world.viewer)
    viewer_page = await console.get(HR)
    refused = await console.post(HR + "/live-preview", {"csrf": viewer_page.csrf})
    assert refused.status == 403


async def test_a_failing_source_is_a_clear_message(console: Console, world: World) -> None:
    await console.sign_in(world.admin)
    made = await console.submit(NEW, NEW, connector_form())  # nothing listens on port 9
    page = await console.post(HR + "/live-preview", {"csrf": made.csrf})
    assert page.status == 502
    assert "The preview could not be made" in page.html
