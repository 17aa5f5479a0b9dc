"""A SCIM connector set up through the admin API, and a client for its endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tests.api.conftest import Api, grant, make_tenant

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass
class Scim:
    api: Api
    base: str
    token: str

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}",
                   "Content-Type": "application/scim+json", **kw.pop("headers", {})}  # fmt: skip
        data = orjson.dumps(body) if body is not None else None
        resp = await self.api.client.request(method, self.base + path, data=data,
                                             headers=headers, **kw)  # fmt: skip
        text = await resp.text()
        self.api.transcript.append(text)
        assert "Traceback" not in text
        parsed = orjson.loads(text) if text else None
        if resp.status >= 400:
            assert resp.content_type == "application/scim+json", (resp.status, text)
            assert parsed["schemas"] == [ERROR] and parsed["status"] == str(resp.status)
        return resp.status, parsed


async def scim_source(api: Api, *, authorise: bool = True, connector: str = "entra") -> Scim:
    """Tenant acme with a SCIM connector (authorised unless told not), and its token."""
    if not any(t.id == "acme" for t in api.people.services.store.list_tenants()):  # type: ignore[union-attr]
        await make_tenant(api)
    made = await api.post("/admin/v1/tenants/acme/connectors",
                          {"id": connector, "type": "scim", "mapping": "scim"})  # fmt: skip
    assert made.status == 201, made.body
    if authorise:
        await grant(api, connector=connector)
    issued = await api.post(f"/admin/v1/tenants/acme/connectors/{connector}/scim-token", None)
    assert issued.status == 201, issued.body
    url = issued.body["tenant_url"]
    base = url[url.index("/scim/v2/") :]
    return Scim(api, base, issued.body["token"])
