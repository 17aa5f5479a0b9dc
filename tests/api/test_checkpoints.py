"""The auditor's checkpoint routes and checkpoint push, through the real app; every answer is
checked against the OpenAPI document by the `api` fixture."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.api.app import make_app
from gateway.cli.main import main
from gateway.keys.signing import public_key_pem
from gateway.ledger.audit import Actor, audit
from gateway.ledger.checkpoint import open_checkpoint
from gateway.ledger.record import record
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY, Api, make_tenant
from tests.ledger_helpers import make_entry
from tests.principals import People

T = "/admin/v1/tenants/acme"
ADMIN = Actor("acc_00000000000000aa", "admin")


def _grow(services: Services, batches: int) -> None:
    ledger = services.ledger("acme")
    for _ in range(batches):
        n = ledger.size()
        now = datetime.now(UTC)
        record(services.store, ledger, [make_entry(n), audit("preview.made", time=now,
               tenant="acme", actor=ADMIN, connector="hr")])  # fmt: skip


async def _tenant(api: Api) -> int:
    """Tenant acme with its admin made (both leave audit entries); the latest seq then."""
    await make_tenant(api)
    latest = await api.get(f"{T}/checkpoints/latest")
    assert latest.status == 200
    seq: int = latest.body["seq"]
    return seq


async def test_checkpoints_page_oldest_first_and_each_verifies(
    api: Api, services: Services
) -> None:
    base = await _tenant(api)
    size = services.ledger("acme").size()
    _grow(services, 5)
    key = services.signer.public_key
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await api.get(f"{T}/checkpoints", params={"after": after, "limit": 2})
        assert page.status == 200
        if not page.body["checkpoints"]:
            assert page.body["next_after"] == after
            break
        seen += page.body["checkpoints"]
        after = page.body["next_after"]
    assert [c["seq"] for c in seen] == list(range(1, base + 6))
    assert [c["size"] for c in seen[base:]] == [size + 2 * k for k in range(1, 6)]
    for c in seen:
        cp = open_checkpoint(c["note"], key)
        assert cp.size == c["size"] and cp.origin == page.body["origin"]
        assert cp.origin.endswith("/acme")
    latest = await api.get(f"{T}/checkpoints/latest")
    assert latest.status == 200 and latest.body == seen[-1]
    since = await api.get(f"{T}/checkpoints", params={"after": base + 3})
    assert [c["seq"] for c in since.body["checkpoints"]] == [base + 4, base + 5]
    beyond = await api.get(f"{T}/checkpoints", params={"after": base + 5})
    assert beyond.body["checkpoints"] == [] and beyond.body["next_after"] == base + 5


async def test_checkpoint_routes_refuse_bad_input(api: Api) -> None:
    await _tenant(api)
    for params in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "1001"},
                   {"after": str(10**19)}, {"other": "1"}):  # fmt: skip
        reply = await api.get(f"{T}/checkpoints", params=params)
        assert reply.status == 422, params
    reply = await api.get(f"{T}/checkpoints?after=1&after=2")
    assert reply.status == 400
    for path in ("/checkpoints", "/checkpoints/latest", "/checkpoint-push"):
        assert (await api.get(f"{T}{path}", token="wrong-token-0123456789")).status == 401


async def test_ledger_listing_tells_the_two_kinds_apart(api: Api, services: Services) -> None:
    await _tenant(api)
    start = services.ledger("acme").size()
    _grow(services, 2)
    reply = await api.get(f"{T}/ledger", params={"after": start - 1})
    assert reply.status == 200
    kinds = [(e["kind"], "direction" in e["entry"], "action" in e["entry"])
             for e in reply.body["entries"]]  # fmt: skip
    assert kinds == [("transfer", True, False), ("audit", False, True)] * 2
    assert reply.body["entries"][1]["entry"]["actor"] == ADMIN.id
    proof = await api.get(f"{T}/ledger/proof/{start + 1}")
    assert proof.status == 200 and '"action":"preview.made"' in proof.body["entry"]
    everything = await api.get(f"{T}/ledger")
    assert everything.body["entries"][0]["kind"] == "audit"  # the tenant's creation


async def test_push_url_is_set_read_and_cleared(api: Api, services: Services) -> None:
    await _tenant(api)
    start = services.ledger("acme").size()
    assert (await api.get(f"{T}/checkpoint-push")).status == 404
    assert (await api.delete(f"{T}/checkpoint-push")).status == 404
    url = "http://127.0.0.1:9/checkpoints?k=v"
    put = await api.call("PUT", f"{T}/checkpoint-push", json={"url": url})
    assert put.status == 200, put.body
    assert put.body["url"] == url and put.body["pushed_seq"] is None
    got = await api.get(f"{T}/checkpoint-push")
    assert got.body == put.body
    gone = await api.delete(f"{T}/checkpoint-push")
    assert gone.status == 200 and gone.body["url"] == url
    assert (await api.get(f"{T}/checkpoint-push")).status == 404
    ledger = await api.get(f"{T}/ledger", params={"after": start - 1})
    entries = [e["entry"] for e in ledger.body["entries"]]
    admin = api.people.account("acme") if api.people else None
    assert [(e["action"], e["target"], e["actor"], e["role"]) for e in entries] == [
        ("checkpoint_push.configured", None, admin, "admin"),
        ("checkpoint_push.cleared", None, admin, "admin"),
    ]
    assert "127.0.0.1" not in ledger.text


async def test_bad_push_urls_are_422(api: Api) -> None:
    await make_tenant(api)
    for url in ("ftp://archive.example/x", "http://user:pw@archive.example/", "not a url",
                "https://archive.example/#frag", ""):  # fmt: skip
        reply = await api.call("PUT", f"{T}/checkpoint-push", json={"url": url})
        assert reply.status == 422, url
    reply = await api.call("PUT", f"{T}/checkpoint-push", json={"url": "https://a.example", "x": 1})
    assert reply.status == 422


@pytest.fixture
def public_only(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(
        Settings(data_dir=tmp_path / "strict", admin_token=ADMIN_TOKEN, master_key=MASTER_KEY,
                 scheduler=False, allow_private_sources=False)
    )  # fmt: skip
    yield s
    s.close()


async def test_private_push_urls_are_refused_unless_allowed(
    aiohttp_client: Any, public_only: Services
) -> None:
    api = Api(await aiohttp_client(make_app(public_only)))
    await make_tenant(api)
    for url in ("http://127.0.0.1:8080/cp", "http://localhost/cp", "http://169.254.169.254/",
                "http://[::1]/cp", "http://10.1.2.3/cp", "http://2130706433/cp"):  # fmt: skip
        reply = await api.call("PUT", f"{T}/checkpoint-push", json={"url": url})
        assert reply.status == 422, url
        assert reply.body["errors"][0]["field"] == "url"
    ok = await api.call("PUT", f"{T}/checkpoint-push", json={"url": "https://archive.example/"})
    assert ok.status == 200


@pytest.fixture
def pushing(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(
        Settings(data_dir=tmp_path / "push", admin_token=ADMIN_TOKEN, master_key=MASTER_KEY,
                 scheduler=False, allow_private_sources=True, checkpoint_push_interval=0.02)
    )  # fmt: skip
    yield s
    s.close()


async def test_the_app_pushes_every_new_checkpoint(
    aiohttp_client: Any, aiohttp_server: Any, pushing: Services
) -> None:
    got: list[str] = []
    changed = asyncio.Condition()

    async def take(request: web.Request) -> web.Response:
        got.append(await request.text())
        async with changed:
            changed.notify_all()
        return web.Response(status=204)

    async def until(count: int) -> None:
        async with changed:
            await asyncio.wait_for(changed.wait_for(lambda: len(got) >= count), timeout=30)

    receiver = web.Application()
    receiver.router.add_post("/cp", take)
    server = await aiohttp_server(receiver, host="127.0.0.1")
    api = Api(await aiohttp_client(make_app(pushing)))
    await make_tenant(api)
    put = await api.call("PUT", f"{T}/checkpoint-push", json={"url": str(server.make_url("/cp"))})
    assert put.status == 200
    await until(1)  # the configuration's own audit entry made the first checkpoint
    await asyncio.to_thread(_grow, pushing, 2)
    await until(3)
    stored = [c.note for c in pushing.store.ledger.iter_checkpoints("acme")]
    assert got == stored[-3:]
    last = len(stored)
    for _ in range(1000):  # the pusher records progress just after the receiver answers
        status = await api.get(f"{T}/checkpoint-push")
        if status.body["pushed_seq"] == last:
            break
        await asyncio.sleep(0.01)
    assert status.body["pushed_seq"] == last and status.body["failure"] is None
    metrics = await api.get("/metrics")
    assert 'sluis_checkpoint_pushes_total{outcome="delivered",tenant="acme"} 3.0' in metrics.text


async def test_what_the_routes_return_is_what_audit_verify_keeps(
    api: Api, services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The auditor saves the routes' answers as they are; `sluis audit verify
    --checkpoints` reads them and holds the log to them."""
    base = await _tenant(api)
    _grow(services, 3)
    kept = tmp_path / "kept"
    kept.mkdir()
    page = await api.get(f"{T}/checkpoints", params={"limit": 2})
    (kept / "page-1.json").write_text(page.text)
    latest = await api.get(f"{T}/checkpoints/latest")
    (kept / "latest.json").write_text(latest.text)
    (kept / "latest.txt").write_text(latest.body["note"])
    pub = tmp_path / "sluis.pub"
    pub.write_text(public_key_pem(services.signer.public_key))
    code = main(["audit", "verify", "--data-dir", str(services.settings.data_dir),
                 "--public-key", str(pub), "--checkpoints", str(kept)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    size = services.ledger("acme").size()
    assert f"acme: intact: {size} entries, {base + 3} checkpoints" in out
    assert "acme: 4 kept checkpoints agree with the log" in out


async def test_the_tenants_auditor_fetches_checkpoints_and_others_do_not(
    api: Api, people: People
) -> None:
    await _tenant(api)
    await make_tenant(api, "beta")
    auditor = people.token("acme", "auditor")
    for path in ("/checkpoints", "/checkpoints/latest"):
        assert (await api.get(f"{T}{path}", token=auditor)).status == 200
        assert (await api.get(f"{T}{path}", token=people.token("acme", "viewer"))).status == 403
        assert (await api.get(f"{T}{path}", token=people.token("beta", "admin"))).status == 403
    push = {"url": "https://archive.acme.example/"}
    reply = await api.call("PUT", f"{T}/checkpoint-push", json=push, token=auditor)
    assert reply.status == 403
