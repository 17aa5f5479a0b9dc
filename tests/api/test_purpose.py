"""An authorisation's purpose goes into the immutable ledger, so what looks like personal
data in it is refused with a 422 before anything is granted, and the OpenAPI document says
so."""

from __future__ import annotations

import re

import pytest

from gateway.api.models import PURPOSE_REFUSED_PATTERN
from gateway.api.openapi import document
from gateway.ledger.audit import purpose_problem
from tests.api.conftest import Api, make_connector, make_tenant

REFUSED = [
    "accounts for jan.jansen@acme.nl",
    "medewerker 123456782",
    "salary to NL91 ABNA 0417 1643 00",
    "bel 06-12345678",
    "x" * 201,
]
ALLOWED = ["LMS accounts for staff", "training records 2026", "cohort 12-34", "a @ b"]


@pytest.mark.parametrize("purpose", REFUSED)
async def test_a_purpose_with_personal_data_is_a_422(api: Api, purpose: str) -> None:
    await make_tenant(api)
    await make_connector(api)
    path = "/admin/v1/tenants/acme/connectors/hr/instructions"
    reply = await api.post(path, {"granted_by": "admin-api", "purpose": purpose})
    assert reply.status == 422
    assert [e["field"] for e in reply.body["errors"]] == ["purpose"]
    assert purpose[:12] not in reply.text  # the refusal does not echo it
    assert (await api.get(path)).body == {"instructions": []}
    ledger = await api.get("/admin/v1/tenants/acme/ledger")
    assert purpose[:12] not in ledger.text


@pytest.mark.parametrize("purpose", ALLOWED)
async def test_a_plain_purpose_is_granted(api: Api, purpose: str) -> None:
    await make_tenant(api)
    await make_connector(api)
    path = "/admin/v1/tenants/acme/connectors/hr/instructions"
    reply = await api.post(path, {"granted_by": "admin-api", "purpose": purpose})
    assert reply.status == 201, reply.body


def test_the_document_states_the_rule_the_validator_applies() -> None:
    schema = document()["components"]["schemas"]["InstructionCreate"]["properties"]["purpose"]
    assert schema["not"] == {"pattern": PURPOSE_REFUSED_PATTERN}
    assert schema["maxLength"] == 200
    for text in REFUSED[:-1]:
        assert re.search(PURPOSE_REFUSED_PATTERN, text) and purpose_problem(text)
    for text in ALLOWED:
        assert not re.search(PURPOSE_REFUSED_PATTERN, text) and purpose_problem(text) is None
