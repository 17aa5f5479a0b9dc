"""A deeply nested mapping given to the admin API is a 422 naming the mapping, not a 500."""

from __future__ import annotations

from tests.api.conftest import CONNECTOR, Api
from tests.test_mapping_nesting import _deep


async def test_the_api_answers_422_naming_the_mapping(api: Api) -> None:
    assert (await api.post("/admin/v1/tenants", {"id": "acme", "name": "Acme"})).status == 201
    for depth in (40, 5000):
        reply = await api.post(
            "/admin/v1/tenants/acme/connectors",
            {**CONNECTOR, "mapping": {"toml": _deep("array", depth)}},
        )
        assert reply.status == 422, reply.body
        assert reply.body["errors"][0]["field"] == "mapping"
        assert "nested more than" in reply.body["detail"]
