"""The contract of a pushed source type (scim), where the pull suite does not apply.

The pull suite drives an emulator page by page; an identity provider pushes instead, so
paging, cursors, watermarks, retries and rate limits of a fetch have no counterpart here
(the endpoint's own limits are tested in tests/api/test_scim_inbound.py). What does apply
is checked: the type is registered and never fetched or scheduled, its bundled mapping
parses and names only egress fields, and its door plus the mapping keep nothing but the
egress fields of a user full of values that must never leave."""

from __future__ import annotations

import aiohttp
import pytest

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, SyncMode
from connectors.registry import connector_type, known_types, pull_types
from connectors.scim.door import record_of
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from mappings import bundled_mapping
from tests.api.test_scim_inbound import ENTRA_CREATE, SENSITIVE


def test_scim_is_registered_as_pushed() -> None:
    assert "scim" in known_types() and "scim" not in pull_types()
    kind = connector_type("scim")
    assert kind.pushed and kind.credential_keys == ()
    with pytest.raises(LookupError):
        kind.emulator()


async def test_a_scim_connector_never_fetches() -> None:
    mapping = parse_mapping(bundled_mapping("scim").read_text(), "scim")
    async with aiohttp.ClientSession() as session:
        connector = connector_type("scim").connector(
            ConnectorConfig("scim", ""), Projector(mapping, b"k" * 32), session
        )
        with pytest.raises(ConnectorError) as raised:
            await connector.fetch_page(PageRequest(SyncMode.FULL))
    assert raised.value.kind == "config"


def test_the_door_and_the_bundled_mapping_keep_only_egress_fields() -> None:
    mapping = parse_mapping(bundled_mapping("scim").read_text(), "scim")
    assert set(mapping.fields) == {"first_name", "last_name", "email", "job_title"}
    page = Projector(mapping, b"k" * 32).project_page([record_of(ENTRA_CREATE)])
    assert not page.rejected
    (subject,) = page.subjects
    assert set(subject) == {"subject_id", "first_name", "last_name", "email", "job_title",
                            "active"}  # fmt: skip
    text = repr(page)
    assert not [v for v in SENSITIVE if v in text]
    assert {"phoneNumbers", "addresses", "externalId"} <= set(page.dropped)
