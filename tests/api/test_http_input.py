"""Ambiguous input the gateway refuses rather than guesses at: an object naming a key twice,
two Authorization headers; and the scrape token of /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from gateway.api.app import make_app
from gateway.api.httpkit import duplicate_key
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY, Api


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "acme", "name": "Acme", "id": "other"}',
        b'{"id": "acme", "name": "A", "name": "B"}',
        b'{"id":"acme","name":"Acme","extra":{"a":1,"a":2}}',
        b'{"id": "acme", "name": "Acme", "i\\u0064": "evil"}',
    ],
)
async def test_a_key_named_twice_in_a_body_is_a_400(api: Api, body: bytes) -> None:
    reply = await api.post(
        "/admin/v1/tenants", data=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400
    assert "twice" in reply.body["detail"]
    assert (await api.get("/admin/v1/tenants/acme")).status == 404


def test_duplicate_key_sees_only_real_repeats() -> None:
    import orjson

    for text in (b'{"a": "x:y:z", "b": [1, {"a": 2}]}', b'{"url": "http://h:1/p"}', b"[]"):
        assert duplicate_key(text, orjson.loads(text)) is None
    nested = b'[{"k": 1}, {"k": 2, "q": {"z": 0, "z": 1}}]'
    assert duplicate_key(nested, orjson.loads(nested)) == "z"


async def test_two_authorization_headers_are_a_400(api: Api) -> None:
    for first, second in ((ADMIN_TOKEN, "wrong-token"), ("wrong-token", ADMIN_TOKEN)):
        headers = CIMultiDict([("Authorization", f"Bearer {first}")])
        headers.add("Authorization", f"Bearer {second}")
        resp = await api.client.get("/admin/v1/tenants/acme", headers=headers)
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"
        assert "more than once" in (await resp.json())["detail"]


@pytest.fixture
def metered(tmp_path: Path) -> Any:
    s = Services.open(
        Settings(
            data_dir=tmp_path / "data",
            admin_token=ADMIN_TOKEN,
            master_key=MASTER_KEY,
            metrics_token="scrape-token-0123456789",
            scheduler=False,
        )
    )
    yield s
    s.close()


async def test_metrics_asks_for_its_token_when_one_is_set(
    aiohttp_client: Any, metered: Services
) -> None:
    api = Api(await aiohttp_client(make_app(metered)))
    assert (await api.get("/metrics")).status == 401
    assert (await api.get("/metrics", token="wrong-token-0123456789")).status == 401
    assert (await api.get("/metrics", token=ADMIN_TOKEN)).status == 401
    reply = await api.get("/metrics", token="scrape-token-0123456789")
    assert reply.status == 200
    assert "sluis_" in reply.text


async def test_metrics_is_open_without_a_token(api: Api) -> None:
    assert (await api.get("/metrics")).status == 200


@pytest.mark.parametrize("depth", [200, 900, 1023, 5000])
@pytest.mark.parametrize("repeat", [False, True])
async def test_deeply_nested_bodies_are_a_4xx(api: Api, depth: int, repeat: bool) -> None:
    await api.post("/admin/v1/tenants", {"id": "acme", "name": "Acme"})
    nested = "[" * depth + "]" * depth
    twice = ', "a": 1, "a": 2' if repeat else ""
    body = (
        '{"id": "hr", "type": "afas", "base_url": "http://127.0.0.1:9/x", "mapping": "afas", '
        f'"credentials": {{"token": "t"}}, "settings": {{"deep": {nested}{twice}}}}}'
    )
    reply = await api.post(
        "/admin/v1/tenants/acme/connectors",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= reply.status < 500, reply.body
