"""An SFTP connector through the admin API: its sftp:// address and its credentials."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, make_tenant

BASE = "/admin/v1/tenants/acme/connectors"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
SFTP: dict[str, Any] = {
    "id": "hr-export",
    "type": "sftp",
    "base_url": "sftp://127.0.0.1:2222/exports",
    "credentials": {"username": "sluis", "private_key": KEY, "host_key": "SHA256:" + "a" * 43},
    "settings": {"pattern": "medewerkers_*.csv"},
    "mapping": "sftp",
}


async def test_an_sftp_connector_is_created_with_its_address_and_credentials(api: Api) -> None:
    await make_tenant(api)
    reply = await api.post(BASE, SFTP)
    assert reply.status == 201, reply.body
    assert reply.body["base_url"] == SFTP["base_url"]
    assert "not-a-real-key" not in reply.text
    assert set(reply.body["mapping"]["fields"]) == {"first_name", "last_name", "email", "job_title"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"base_url": "https://hr.example/exports"}, "base_url"),
        ({"base_url": "ftp://hr.example/exports"}, "base_url"),
        ({"credentials": {"username": "sluis", "private_key": KEY}}, "credentials.host_key"),
        ({"type": "afas", "mapping": "afas", "credentials": {"token": "t"}}, "base_url"),
    ],
)
async def test_an_sftp_address_goes_with_the_sftp_type_only(
    api: Api, change: dict[str, Any], field: str
) -> None:
    await make_tenant(api)
    reply = await api.post(BASE, {**SFTP, **change})
    assert reply.status == 422, reply.body
    assert field in [e["field"] for e in reply.body["errors"]], reply.body
    assert "not-a-real-key" not in reply.text
