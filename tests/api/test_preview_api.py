"""The live preview over HTTP: `POST .../preview` and `GET .../previews/{preview}` against the
real AFAS and HubSpot emulators, every answer checked against the OpenAPI document."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT
from connectors.afas.emulator import make_app as afas_app
from connectors.afas.synthetic import SENSITIVE_FIELDS
from connectors.emulator_kit import CONTROL, Fault
from connectors.hubspot.emulator import EMULATOR_TOKEN as HUBSPOT_TOKEN
from connectors.hubspot.emulator import make_app as hubspot_app
from gateway.api.app import make_app
from gateway.ledger.audit import AuditEntry
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from mappings import bundled_mapping
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY, Api, make_connector, make_tenant

C = "/admin/v1/tenants/acme/connectors/hr"


@dataclass
class Clock:
    """Real time plus an offset the test moves (to see a preview expire)."""

    offset: timedelta = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    s = Services.open(
        Settings(
            data_dir=tmp_path,
            admin_token=ADMIN_TOKEN,
            master_key=MASTER_KEY,
            scheduler=False,
            allow_private_sources=True,
        ),
        clock=clock,
    )
    yield s
    s.close()


@pytest.fixture
async def api(aiohttp_client: Any, services: Services) -> Api:
    return Api(await aiohttp_client(make_app(services)))


@dataclass
class Sources:
    afas: web.Application
    afas_url: str
    hubspot_url: str


@pytest.fixture
async def sources(aiohttp_server: Callable[..., Any]) -> Sources:
    afas = afas_app(people=500, seed=3)
    afas_server = await aiohttp_server(afas, host="127.0.0.1")
    hubspot_server = await aiohttp_server(hubspot_app(people=120, seed=3), host="127.0.0.1")
    return Sources(
        afas,
        str(afas_server.make_url("/profitrestservices")),
        str(hubspot_server.make_url("")).rstrip("/"),
    )


async def _setup(api: Api, sources: Sources, tenant: str = "acme") -> None:
    await make_tenant(api, tenant)
    await make_connector(
        api, tenant, base_url=sources.afas_url, credentials={"token": EMULATOR_TOKEN}
    )


def _previews(services: Services, tenant: str = "acme") -> list[AuditEntry]:
    """The tenant's `preview.made` entries (its log also records who set it up)."""
    return [
        r.entry
        for r in services.ledger(tenant).entries(limit=1000)
        if isinstance(r.entry, AuditEntry) and r.entry.action == "preview.made"
    ]


def _secrets(sources: Sources) -> set[str]:
    people = sources.afas[ENVIRONMENT].people
    return {str(p[k]) for p in people for k in (*SENSITIVE_FIELDS, "Email_werk") if p.get(k)}


async def test_a_preview_is_made_without_an_instruction_and_read_back(
    api: Api, sources: Sources, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    await _setup(api, sources)
    with caplog.at_level(logging.DEBUG):
        made = await api.post(f"{C}/preview")
        assert made.status == 201, made.body
        again = await api.get(made.headers["Location"])
    assert made.headers["Cache-Control"] == again.headers["Cache-Control"] == "no-store"
    body = made.body
    assert made.headers["Location"] == f"{C}/previews/{body['id']}"
    assert again.status == 200 and again.body == body
    assert body["records_read"] == 20 and body["limit"] == 20 and body["more_available"]
    assert len(body["people"]) + len(body["quarantined"]) == 20
    assert set(body["people"][0]) == {
        "subject_id", "first_name", "last_name", "email", "job_title", "active",
    }  # fmt: skip
    assert body["fields"]["email"] == {"category": "user.contact.email", "sources": ["Email_werk"]}
    assert {"BSN", "IBAN"} <= body["dropped"].keys()
    assert body["unseen_source_fields"] == []
    assert body["mapping_change"] is None and body["proposed"] is False
    assert datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["made_at"]
    ) == timedelta(minutes=10)

    # Nothing written but the ledger entry.
    store = services.store
    assert store.list_instructions("acme", "hr") == []
    assert store.list_runs("acme", "hr") == []
    assert store.events_after("acme", 0, 100) == []
    assert store.count_present("acme", "hr") == 0
    everything = [r.entry for r in services.ledger("acme").entries()]
    entries = _previews(services)
    assert len(entries) == 1 and everything[-1] is not None
    assert [e.action for e in everything if isinstance(e, AuditEntry)][-1] == "preview.made"
    assert (entries[0].action, entries[0].target) == ("preview.made", body["id"])
    admin = api.people.account("acme") if api.people else None
    assert (entries[0].actor, entries[0].role) == (admin, "admin")
    assert body["made_by"] == admin

    # The people's data is in the answer only: not in the logs, not in the ledger.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    ledger_text = orjson.dumps([e.model_dump(mode="json") for e in everything]).decode()
    shown = [p["email"] for p in body["people"]] + [p["last_name"] for p in body["people"]]
    assert [v for v in shown if v in logged or v in ledger_text] == []
    assert [s for s in _secrets(sources) if s in logged or s in ledger_text] == []
    assert [s for s in _secrets(sources) if s in made.text and "@" not in s] == []


async def test_the_auditor_reads_the_preview_in_the_ledger(api: Api, sources: Sources) -> None:
    await _setup(api, sources)
    made = await api.post(f"{C}/preview", {"limit": 5})
    assert api.people is not None
    auditor = api.people.token("acme", "auditor")
    page = await api.get("/admin/v1/tenants/acme/ledger", token=auditor)
    assert page.status == 200
    entries = [e["entry"] for e in page.body["entries"]]
    [entry] = [e for e in entries if e.get("action") == "preview.made"]
    assert entry["target"] == made.body["id"]
    assert entry["counts"]["records"] == 5
    assert entry["actor"] == made.body["made_by"]
    assert entry["dropped_field_names"] == sorted(made.body["dropped"])
    assert [p["email"] for p in made.body["people"] if p["email"] in page.text] == []


async def test_a_preview_expires_after_ten_minutes(
    api: Api, sources: Sources, clock: Clock
) -> None:
    await _setup(api, sources)
    made = await api.post(f"{C}/preview", {"limit": 3})
    assert made.status == 201
    clock.offset = timedelta(minutes=9, seconds=50)
    assert (await api.get(made.headers["Location"])).status == 200
    clock.offset = timedelta(minutes=10, seconds=1)
    gone = await api.get(made.headers["Location"])
    assert gone.status == 404
    assert "10 min" in gone.body["detail"]


async def test_another_tenants_preview_is_not_found(api: Api, sources: Sources) -> None:
    await _setup(api, sources)
    await _setup(api, sources, "other")
    made = await api.post(f"{C}/preview", {"limit": 2})
    pid = made.body["id"]
    for path in (
        f"/admin/v1/tenants/other/connectors/hr/previews/{pid}",
        f"/admin/v1/tenants/acme/connectors/other/previews/{pid}",
        f"{C}/previews/prv_{'0' * 32}",
        f"{C}/previews/../../x",
    ):
        reply = await api.get(path)
        assert reply.status == 404, path
        assert "@" not in reply.text


async def test_a_proposed_mapping_shows_its_difference(api: Api, sources: Sources) -> None:
    await _setup(api, sources)
    text = bundled_mapping("afas").read_text().replace('source = "Functie"', 'source = "Functei"')
    reply = await api.post(f"{C}/preview", {"mapping": {"toml": text}, "limit": 5})
    assert reply.status == 201, reply.body
    body = reply.body
    assert body["proposed"] is True
    assert body["mapping_digest"] != body["current_digest"]
    assert body["unseen_source_fields"] == ["Functei"]
    change = body["mapping_change"]
    assert change["needs_authorisation"] is True
    assert change["changed"]["job_title"]["after"]["sources"] == ["Functei"]
    assert change["source_fields_removed"] == ["Functie"]
    assert all(p["job_title"] is None for p in body["people"])
    same = await api.post(f"{C}/preview", {"mapping": "afas", "limit": 1})
    assert same.body["mapping_change"]["same"] is True


async def test_hubspot_connectors_preview_too(api: Api, sources: Sources) -> None:
    await make_tenant(api)
    await make_connector(
        api, id="crm", type="hubspot", base_url=sources.hubspot_url,
        credentials={"token": HUBSPOT_TOKEN}, mapping="hubspot",
    )  # fmt: skip
    reply = await api.post("/admin/v1/tenants/acme/connectors/crm/preview", {"limit": 50})
    assert reply.status == 201, reply.body
    assert reply.body["records_read"] == 50
    assert reply.body["fields"]["email"]["sources"] == ["properties.email"]


@pytest.mark.parametrize(
    "body",
    [
        {"limit": 51},
        {"limit": 0},
        {"limit": "20"},
        {"limit": 2.5},
        {"mapping": "hubspot"},
        {"mapping": "nope"},
        {"mapping": {"toml": "connector = "}},
        {"other": 1},
    ],
)
async def test_bad_requests_are_422_and_fetch_nothing(
    api: Api, sources: Sources, body: dict[str, Any]
) -> None:
    await _setup(api, sources)
    reply = await api.post(f"{C}/preview", body)
    assert reply.status == 422, reply.body
    assert sources.afas[CONTROL].log == []


async def test_an_unknown_connector_is_404(api: Api, sources: Sources) -> None:
    await _setup(api, sources)
    reply = await api.post("/admin/v1/tenants/acme/connectors/nope/preview")
    assert reply.status == 404


async def test_only_the_tenants_admins_may_preview(api: Api, sources: Sources) -> None:
    """Reading people's records before an authorisation is the customer admin's call: the
    auditor, the viewer, an operator and another tenant's admin are refused, and nothing is
    fetched."""
    await _setup(api, sources)
    await _setup(api, sources, "other")
    made = await api.post(f"{C}/preview", {"limit": 1})
    assert made.status == 201
    sources.afas[CONTROL].log.clear()
    assert api.people is not None
    refused = [
        api.people.token("acme", "auditor"),
        api.people.token("acme", "viewer"),
        api.people.operator(),
        api.people.token("other", "admin"),
    ]
    for token in refused:
        assert (await api.post(f"{C}/preview", token=token)).status == 403
        assert (await api.get(made.headers["Location"], token=token)).status == 403
    assert (await api.post(f"{C}/preview", token=None)).status == 401
    assert (await api.get(made.headers["Location"], token="wrong")).status == 401
    assert sources.afas[CONTROL].log == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"base_url": "http://127.0.0.1:9/profitrestservices"}, "unavailable"),
        ({"credentials": {"token": "f" * 64}}, "auth"),
        ({"settings": {"max_response_bytes": 1024}}, "too_large"),
    ],
)
async def test_a_failing_source_is_a_502_with_the_error_kind(
    api: Api, sources: Sources, services: Services, overrides: dict[str, Any], code: str
) -> None:
    await make_tenant(api)
    await make_connector(
        api, **{"base_url": sources.afas_url, "credentials": {"token": EMULATOR_TOKEN}, **overrides}
    )
    reply = await api.post(f"{C}/preview")
    assert reply.status == 502, reply.body
    assert reply.body["code"] == code
    assert reply.body["type"] == "urn:sluis:problem:source-failed"
    assert "Traceback" not in reply.text
    assert [s for s in _secrets(sources) if s in reply.text] == []
    assert _previews(services) == []


async def test_a_source_answering_503_is_a_502_unavailable(api: Api, sources: Sources) -> None:
    await _setup(api, sources)
    sources.afas[CONTROL].inject(*[Fault("error", status=503)] * 2)
    reply = await api.post(f"{C}/preview")
    assert (reply.status, reply.body["code"]) == (502, "unavailable")
    assert "503" in reply.body["detail"]


async def test_one_preview_of_a_connector_at_a_time(api: Api, sources: Sources) -> None:
    await _setup(api, sources)
    control = sources.afas[CONTROL]
    control.inject(Fault("slow", seconds=1.0))
    first = asyncio.ensure_future(api.post(f"{C}/preview", {"limit": 2}))
    while control.faults and not first.done():  # the first request has reached the source
        await asyncio.sleep(0.01)
    assert not control.faults, f"the first preview ended before it asked: {first.result()}"
    busy = await api.post(f"{C}/preview", {"limit": 2})
    assert busy.status == 409
    assert busy.body["type"] == "urn:sluis:problem:preview-busy"
    assert (await first).status == 201
    assert (await api.post(f"{C}/preview", {"limit": 2})).status == 201
