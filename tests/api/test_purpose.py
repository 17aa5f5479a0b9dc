"""An authorisation's purpose goes into the immutable ledger, so what looks like personal
data in it is refused with a 422 before anything is granted, and the OpenAPI document says
so."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.api.models import InstructionCreate
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


def _grant_body(purpose: str) -> dict[str, str]:
    """A grant's body; `granted_by` only while the API still asks for it (it goes away when
    the authenticated principal is who grants)."""
    body = {"purpose": purpose}
    if "granted_by" in InstructionCreate.model_fields:
        body["granted_by"] = "admin-api"
    return body


@pytest.mark.parametrize("purpose", REFUSED)
def test_the_grant_model_refuses_personal_data_in_a_purpose(purpose: str) -> None:
    assert purpose_problem(purpose) is not None
    with pytest.raises(ValidationError) as caught:
        InstructionCreate.model_validate(_grant_body(purpose))
    assert [e["loc"] for e in caught.value.errors()] == [("purpose",)]
    assert purpose[:12] not in str(caught.value)


@pytest.mark.parametrize("purpose", ALLOWED)
def test_the_grant_model_takes_a_plain_purpose(purpose: str) -> None:
    assert InstructionCreate.model_validate(_grant_body(purpose)).purpose == purpose


@pytest.mark.parametrize("purpose", REFUSED)
async def test_a_purpose_with_personal_data_is_a_422(api: Api, purpose: str) -> None:
    await make_tenant(api)
    await make_connector(api)
    path = "/admin/v1/tenants/acme/connectors/hr/instructions"
    reply = await api.post(path, _grant_body(purpose))
    assert reply.status == 422
    assert [e["field"] for e in reply.body["errors"]] == ["purpose"]
    assert purpose[:12] not in reply.text  # the refusal does not echo it
    assert (await api.get(path)).body == {"instructions": []}
    ledger = await api.get("/admin/v1/tenants/acme/ledger")
    assert purpose[:12] not in ledger.text


def test_the_document_states_the_limit() -> None:
    schema = document()["components"]["schemas"]["InstructionCreate"]["properties"]["purpose"]
    assert schema["maxLength"] == 200 and "refused" in schema["description"]
