"""Data-subject requests as records over the API: entered with a due date, listed oldest
due first, closed once with an outcome that fits, on the ledger at each step, and open and
overdue ones counted in `/metrics` (which the overdue alert watches)."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.runtime.services import Services
from tests.api.conftest import Api, make_tenant
from tests.api.test_metrics import sample, scrape

T = "/admin/v1/tenants/acme"


async def test_a_request_is_entered_due_in_a_month_and_closed_once(
    api: Api, services: Services
) -> None:
    await make_tenant(api)
    made = await api.post(f"{T}/requests", {"kind": "erasure"})
    assert made.status == 201, made.body
    request = made.body
    assert made.headers["Location"] == f"{T}/requests/{request['id']}"
    received = datetime.fromisoformat(request["received_at"])
    assert datetime.fromisoformat(request["due_at"]) - received == timedelta(days=30)
    assert (request["state"], request["overdue"], request["subject_ids"]) == ("open", False, [])
    late_arrival = (services.clock() - timedelta(days=40)).isoformat()
    late = await api.post(f"{T}/requests", {"kind": "access", "received_at": late_arrival,
                                            "subject_ids": ["a" * 32]})  # fmt: skip
    assert late.status == 201 and late.body["overdue"] is True
    listed = (await api.get(f"{T}/requests", params={"state": "open"})).body["requests"]
    assert [r["id"] for r in listed] == [late.body["id"], request["id"]]  # oldest due first

    text = await scrape(api)
    assert sample(text, "sluis_dsr_requests_open", tenant="acme") == 2
    assert sample(text, "sluis_dsr_requests_overdue", tenant="acme") == 1

    path = f"{T}/requests/{late.body['id']}"
    misfit = await api.post(f"{path}/close", {"state": "completed", "outcome": "excessive"})
    assert misfit.status == 422 and misfit.body["errors"][0]["field"] == "outcome"
    closed = await api.post(f"{path}/close", {"state": "completed", "outcome": "fulfilled"})
    assert closed.status == 200, closed.body
    assert (closed.body["state"], closed.body["outcome"], closed.body["overdue"]) == (
        "completed", "fulfilled", False,
    )  # fmt: skip
    again = await api.post(f"{path}/close", {"state": "rejected", "outcome": "excessive"})
    assert again.status == 409
    assert (await api.get(path)).body == closed.body
    assert sample(await scrape(api), "sluis_dsr_requests_overdue", tenant="acme") == 0

    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body
    steps = [(e["entry"]["action"], e["entry"]["target"]) for e in ledger["entries"]
             if e["entry"].get("action", "").startswith("request.")]  # fmt: skip
    assert steps == [
        ("request.opened", request["id"]), ("request.opened", late.body["id"]),
        ("request.closed", late.body["id"]),
    ]  # fmt: skip


async def test_bad_requests_are_refused(api: Api, services: Services) -> None:
    await make_tenant(api)
    future = (services.clock() + timedelta(days=1)).isoformat()
    cases = [
        ({"kind": "gossip"}, 422),
        ({"kind": "access", "received_at": future}, 422),
        ({"kind": "access", "received_at": "2026-11-30T10:00:00"}, 422),  # no zone
        ({"kind": "access", "subject_ids": ["nope"]}, 422),
    ]
    for body, status in cases:
        assert (await api.post(f"{T}/requests", body)).status == status, body
    unknown = f"{T}/requests/dsr_{'0' * 16}"
    assert (await api.get(unknown)).status == 404
    closing = {"state": "rejected", "outcome": "excessive"}
    assert (await api.post(f"{unknown}/close", closing)).status == 404
    assert (await api.get(f"{T}/requests", params={"state": "maybe"})).status == 422
