"""Fixtures for the HTTP API: real services on SQLite in tmp_path, a real aiohttp test
server, and an `Api` client that checks every response against the OpenAPI document.

Every call made through `api` is matched to its documented operation; the status must be
documented there and the body must validate against the schema documented for that status
and content type. So each test is also a contract test of `/openapi.json`.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.api.app import make_app
from gateway.api.httpkit import SERVICES
from gateway.api.openapi import document
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.records import NewEvent
from tests.api.schema_check import Validator
from tests.principals import People

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
ADMIN = object()

#: Every (path template, method, status) a test has seen validated, for the coverage test.
SEEN: set[tuple[str, str, int]] = set()


def _templates(doc: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in doc["paths"]:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
        out.append((re.compile(pattern + "$"), template))
    return out


@dataclass
class Reply:
    status: int
    headers: Any
    body: Any
    text: str
    content_type: str


@dataclass
class Api:
    client: TestClient[Any, Any]
    doc: dict[str, Any] = field(default_factory=document)
    #: Every response body seen, for leak scans.
    transcript: list[str] = field(default_factory=list)

    people: People | None = None

    def __post_init__(self) -> None:
        self.validator = Validator(self.doc)
        self.paths = _templates(self.doc)

    def default_token(self, path: str) -> str:
        """The right person for the path: the tenant's admin (stepped up) for a tenant's
        routes when that tenant exists, else an operator."""
        if self.people is None:
            self.people = People(self.client.app[SERVICES])
        parts = path.partition("?")[0].split("/")
        if len(parts) > 4 and parts[3] == "tenants":
            tenant = parts[4]
            known = {t.id for t in self.people.services.store.list_tenants()}
            if tenant in known:
                return self.people.token(tenant, "admin")
        return self.people.operator()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: Any = ADMIN,
        json: Any = None,
        data: bytes | str | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if token is ADMIN:
            token = self.default_token(path) if path.startswith("/admin/") else None
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        resp = await self.client.request(method, path, data=data, params=params, headers=hdrs)
        text = await resp.text()
        ctype = resp.content_type
        body: Any = orjson.loads(text) if ctype.endswith("json") else text
        reply = Reply(resp.status, resp.headers, body, text, ctype)
        self.transcript.append(text)
        self.check(method, path, reply)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> Reply:
        return await self.call("PATCH", path, json=json, **kw)

    def check(self, method: str, path: str, reply: Reply) -> None:
        """The reply's status is documented for its operation and its body validates."""
        bare = path.partition("?")[0]
        template = next((t for rx, t in self.paths if rx.match(bare)), None)
        op = self.doc["paths"].get(template or "", {}).get(method.lower())
        if op is None:
            assert reply.status in (404, 405), (method, path, reply.status)
            schema = {"$ref": "#/components/schemas/ProblemDetails"}
            assert reply.content_type == "application/problem+json"
        else:
            documented = op["responses"].get(str(reply.status))
            assert documented is not None, f"{method} {template}: undocumented {reply.status}"
            content = documented["content"]
            assert reply.content_type in content, (method, template, reply.content_type)
            schema = content[reply.content_type]["schema"]
            SEEN.add((template or "", method.upper(), reply.status))
        if reply.content_type.endswith("json"):
            self.validator.validate(reply.body, schema)
        if reply.status >= 400:
            assert reply.content_type == "application/problem+json"
            assert reply.body["status"] == reply.status
            assert "Traceback" not in reply.text


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(
        Settings(
            data_dir=tmp_path,
            admin_token=ADMIN_TOKEN,
            master_key=MASTER_KEY,
            scheduler=False,
            allow_private_sources=True,
        )
    )
    yield s
    s.close()


@pytest.fixture
def people(services: Services) -> People:
    return People(services)


@pytest.fixture
async def api(aiohttp_client: Any, services: Services, people: People) -> Api:
    return Api(await aiohttp_client(make_app(services)), people=people)


# --------------------------------------------------------------------------- helpers

CONNECTOR = {
    "id": "hr",
    "type": "afas",
    "base_url": "http://127.0.0.1:9/profitrestservices",
    "credentials": {"token": "secret-token-value-xyz"},
    "mapping": "afas",
}


async def make_tenant(api: Api, tenant: str = "acme") -> None:
    reply = await api.post("/admin/v1/tenants", {"id": tenant, "name": f"{tenant} BV"})
    assert reply.status == 201, reply.body


async def make_connector(api: Api, tenant: str = "acme", **overrides: Any) -> dict[str, Any]:
    reply = await api.post(f"/admin/v1/tenants/{tenant}/connectors", {**CONNECTOR, **overrides})
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


async def grant(api: Api, tenant: str = "acme", connector: str = "hr") -> dict[str, Any]:
    reply = await api.post(
        f"/admin/v1/tenants/{tenant}/connectors/{connector}/instructions",
        {"purpose": "training records"},
    )
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


async def make_consumer(api: Api, tenant: str = "acme") -> str:
    reply = await api.post(f"/admin/v1/tenants/{tenant}/consumers", {"name": "lms"})
    assert reply.status == 201, reply.body
    token: str = reply.body["token"]
    return token


async def read_feed(
    api: Api, token: str, *, tenant: str = "acme", limit: int = 1000
) -> list[dict[str, Any]]:
    """Every event a consumer reads from the start, page by page, until nothing is left
    (no event and nothing withheld)."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        page = await api.get(f"/feed/v1/tenants/{tenant}/events", params=params,
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert page.status == 200, page.body
        events += page.body["events"]
        if not page.body["events"] and not page.body["withheld"]:
            return events
        params["after"] = page.body["next_cursor"]


async def setup_feed(api: Api, tenant: str = "acme") -> tuple[str, str]:
    """A tenant with a granted connector `hr` and a consumer; returns (token, instruction)."""
    await make_tenant(api, tenant)
    await make_connector(api, tenant)
    instruction = await grant(api, tenant)
    return await make_consumer(api, tenant), instruction["id"]


def subject_id(n: int) -> str:
    return uuid.UUID(int=n).hex


def insert_events(
    services: Services,
    tenant: str,
    count: int,
    *,
    source: str = "hr",
    instruction_id: str = "ins_test",
    start: int = 0,
    deleted_every: int = 0,
) -> list[int]:
    """Append `count` feed events straight into the store (as a sync would)."""
    now = datetime.now(UTC)
    events = []
    for n in range(start, start + count):
        deleted = deleted_every and n % deleted_every == 0
        data = None if deleted else {
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "email": f"person{n}@example-employer.nl",
            "job_title": "Engineer",
        }  # fmt: skip
        events.append(
            NewEvent(
                id=f"evt_{uuid.uuid4().hex}",
                type="subject.deleted" if deleted else "subject.upserted",
                subject_id=subject_id(n),
                data=data,
                occurred_at=now,
                source=source,
                instruction_id=instruction_id,
            )
        )
    return services.store.append_events(tenant, events)


def transfers(ledger_page: dict[str, Any]) -> list[dict[str, Any]]:
    """The transfer entries of a ledger page (audit entries, which say who acted, left out),
    each with the keyed ids its commitment names (which the page gives beside the entry)."""
    return [
        {
            **e["entry"],
            **({"subject_ids": e["subject_ids"]} if e.get("subject_ids") is not None else {}),
        }
        for e in ledger_page["entries"]
        if "direction" in e["entry"]
    ]


def transfer_rows(ledger_page: dict[str, Any]) -> list[dict[str, Any]]:
    """Like `transfers`, but the rows (index, leaf hash, entry)."""
    return [e for e in ledger_page["entries"] if "direction" in e["entry"]]
