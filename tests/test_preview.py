"""The live preview against the real AFAS and HubSpot emulators and a real SQLite store.

Covers the promises of gateway/sync/preview.py and gateway/sync/preview_cache.py: one page,
bounded; minimised exactly as a sync would; nothing written but one `preview.made` ledger
entry (counts and dropped names, no values); quarantined records with reasons; unseen
mapped fields; the diff of a proposed mapping; source failures as `PreviewFailed` with the
connector's error kind; results kept briefly and per tenant.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT
from connectors.afas.emulator import make_app as afas_app
from connectors.afas.synthetic import SENSITIVE_FIELDS
from connectors.emulator_kit import CONTROL, Fault
from connectors.hubspot.emulator import EMULATOR_TOKEN as HUBSPOT_TOKEN
from connectors.hubspot.emulator import STATE
from connectors.hubspot.emulator import make_app as hubspot_app
from connectors.hubspot.synthetic import SENSITIVE_PROPERTIES
from gateway.ledger.audit import Actor, AuditEntry
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.records import NotFound
from gateway.sync.preview import (
    DEFAULT_LIMIT,
    Preview,
    PreviewFailed,
    PreviewRefused,
    make_preview,
)
from gateway.sync.preview_cache import PreviewCache
from gateway.tenancy import create_connector, create_tenant, subject_key
from mappings import bundled_mapping
from tests.principals import system

PEOPLE = 500
ADMIN = Actor("acc_0123456789abcdef", "admin")


@dataclass
class World:
    services: Services
    afas: web.Application
    hubspot: web.Application
    afas_url: str
    hubspot_url: str

    @property
    def people(self) -> list[dict[str, Any]]:
        """AFAS people in the order a preview reads them (by employee number)."""
        return sorted(self.afas[ENVIRONMENT].people, key=lambda p: p["Medewerker"])

    async def preview(self, connector: str = "afas", **kw: Any) -> Preview:
        s = self.services
        tenant = kw.pop("tenant", "acme")
        return await make_preview(
            s.store,
            s.box,
            s.ledger(tenant),
            tenant=tenant,
            connector=connector,
            actor=kw.pop("actor", ADMIN),
            allow_private_sources=kw.pop("allow_private_sources", True),
            clock=s.clock,
            workers=s.engine.source_workers,
            **kw,
        )

    def add_connector(self, connector_id: str, **kw: Any) -> None:
        kind = kw.pop("type_name", "afas")
        defaults: dict[str, Any] = (
            {"base_url": self.afas_url, "credentials": {"token": EMULATOR_TOKEN}}
            if kind == "afas"
            else {"base_url": self.hubspot_url, "credentials": {"token": HUBSPOT_TOKEN}}
        )
        tenant = kw.pop("tenant", "acme")
        create_connector(
            self.services.store,
            self.services.box,
            tenant=tenant,
            by=system(self.services, tenant),
            connector_id=connector_id,
            type_name=kind,
            mapping_text=bundled_mapping(kind).read_text(),
            now=datetime.now(UTC),
            **{**defaults, **kw},
        )

    def all_entries(self, tenant: str = "acme") -> list[Any]:
        return [r.entry for r in self.services.ledger(tenant).entries(limit=1000)]

    def ledger_entries(self, tenant: str = "acme") -> list[Any]:
        """The tenant's `preview.made` entries (its log also says who made the tenant and
        its connectors)."""
        return [
            e
            for e in self.all_entries(tenant)
            if isinstance(e, AuditEntry) and e.action == "preview.made"
        ]


@pytest.fixture(params=[0, 1], ids=["in-process", "source-worker"])
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> AsyncIterator[World]:
    """Every preview test runs twice: reading the source in the gateway's process, and in
    a source worker (`source_processes = 1`), which must show the same."""
    afas = afas_app(people=PEOPLE, seed=7)
    hubspot = hubspot_app(people=PEOPLE, seed=7, archived_share=0.0)
    afas_server: TestServer = await aiohttp_server(afas, host="127.0.0.1")
    hubspot_server: TestServer = await aiohttp_server(hubspot, host="127.0.0.1")
    settings = Settings(
        data_dir=tmp_path / "data", admin_token="t" * 32, scheduler=False,
        allow_private_sources=True, source_processes=request.param,
    )  # fmt: skip
    services = Services.open(settings)
    now = datetime.now(UTC)
    for tenant in ("acme", "other"):
        create_tenant(
            services.store, services.box, tenant, f"{tenant} BV", now, by=system(services, tenant)
        )
    w = World(
        services,
        afas,
        hubspot,
        str(afas_server.make_url("/profitrestservices")),
        str(hubspot_server.make_url("")).rstrip("/"),
    )
    w.add_connector("afas")
    w.add_connector("crm", type_name="hubspot")
    yield w
    services.close()


def _afas_secrets(world: World) -> set[str]:
    """Every value that must never leave: sensitive columns and the people's own data."""
    found = {str(p[k]) for p in world.people for k in SENSITIVE_FIELDS if p.get(k)}
    for person in world.people[:DEFAULT_LIMIT]:
        found.update(str(person[k]) for k in ("Achternaam", "Email_werk") if person.get(k))
    return found


def _nothing_written(world: World, tenant: str = "acme") -> None:
    store = world.services.store
    assert store.events_after(tenant, 0, 1000) == []
    for connector in ("afas", "crm"):
        assert store.count_present(tenant, connector) == 0
        assert store.list_runs(tenant, connector) == []
        assert store.get_connector(tenant, connector).watermark is None
    assert store.list_instructions(tenant, "afas") == []


async def test_a_preview_needs_no_instruction_reads_one_bounded_page_and_writes_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        preview = await world.preview()
    assert preview.records_read == DEFAULT_LIMIT  # of 500 people
    assert preview.more_available
    assert preview.limit == DEFAULT_LIMIT
    requests = world.afas[CONTROL].requests_to("/profitrestservices/connectors")
    assert len(requests) == 1
    assert f"take={DEFAULT_LIMIT}" in requests[0].query
    assert len(preview.people) + len(preview.quarantined) == DEFAULT_LIMIT
    _nothing_written(world)

    # Minimised exactly as a sync would: the same projector, key and mapping.
    owner = world.services.store.get_tenant("acme")
    mapping = parse_mapping(bundled_mapping("afas").read_text())
    projector = Projector(mapping, subject_key(world.services.box, owner))
    expected = projector.project_page(world.people[:DEFAULT_LIMIT])
    assert [p["subject_id"] for p in preview.people] == [s["subject_id"] for s in expected.subjects]
    assert list(preview.people) == [
        {k: s[k] for k in ("subject_id", "first_name", "last_name", "email", "job_title", "active")}
        for s in expected.subjects
    ]
    assert [(q.position, q.reason) for q in preview.quarantined] == expected.rejected
    assert preview.dropped == dict(expected.dropped)
    assert {"BSN", "IBAN", "Salaris_bruto"} <= preview.dropped.keys()
    assert all(n <= DEFAULT_LIMIT for n in preview.dropped.values())
    assert {f.name: (f.category, f.sources) for f in preview.fields} == {
        "first_name": ("user.name.first", ("Roepnaam", "Voornaam")),
        "last_name": ("user.name.last", ("Voorvoegsel", "Achternaam")),
        "email": ("user.contact.email", ("Email_werk",)),
        "job_title": ("user.job_title", ("Functie",)),
    }
    assert preview.diff is None and not preview.proposed
    assert preview.mapping_digest == preview.current_digest == mapping.digest

    # Exactly one ledger entry: who asked, counts and dropped names, no values.
    entries = world.ledger_entries()
    assert len(entries) == 1
    entry = entries[0]
    assert isinstance(entry, AuditEntry)
    assert (entry.action, entry.actor, entry.role) == ("preview.made", ADMIN.id, "admin")
    assert (entry.connector, entry.target) == ("afas", preview.id)
    assert entry.mapping_digest == mapping.digest
    assert entry.counts is not None
    assert entry.counts.records == DEFAULT_LIMIT
    assert entry.counts.quarantined == len(preview.quarantined)
    assert entry.counts.dropped_fields == sum(preview.dropped.values())
    assert entry.dropped_field_names == sorted(preview.dropped)
    assert world.services.ledger("acme").verify(world.services.signer.public_key).ok
    assert [e.action for e in world.all_entries()][-1] == "preview.made"

    # No personal data in the ledger or the logs; the preview's own values only in it.
    everything = world.all_entries()
    ledger_text = orjson.dumps([e.model_dump(mode="json") for e in everything]).decode()
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    secrets = _afas_secrets(world)
    assert [s for s in secrets if s in ledger_text or s in logged] == []
    for person in preview.people:
        for value in (person["email"], person["last_name"]):
            assert value not in logged and value not in ledger_text
    assert preview.id in logged  # the preview is logged, by id and counts


async def test_bad_records_are_shown_quarantined_with_reasons_and_positions(world: World) -> None:
    first = world.people[:DEFAULT_LIMIT]
    first[2]["Email_werk"] = None
    first[5]["Functie"] = "Teamleider (bel 06-12345678)"
    first[9]["Email_werk"] = "not an email"
    preview = await world.preview()
    reasons = {q.position: q.reason for q in preview.quarantined}
    assert reasons[2] == "email is required but missing"
    assert "job_title" in reasons[5] and "phone number" in reasons[5]
    assert "email" in reasons[9]
    assert "06-12345678" not in "".join(reasons.values())
    assert "not an email" not in "".join(reasons.values())
    assert preview.records_read == DEFAULT_LIMIT
    assert len(preview.people) == DEFAULT_LIMIT - len(preview.quarantined)
    entry = world.ledger_entries()[0]
    assert entry.counts.quarantined == len(preview.quarantined) >= 3


async def test_a_proposed_mapping_is_previewed_with_its_difference_and_unseen_fields(
    world: World,
) -> None:
    text = bundled_mapping("afas").read_text()
    typo = text.replace('source = "Functie"', 'source = "Functei"')
    typo = typo.replace(
        '[fields.email]\nsource = "Email_werk"', '[fields.email]\nsource = ["Email_werk", "Mail"]'
    )
    proposed = parse_mapping(typo)
    preview = await world.preview(proposed=proposed)
    assert preview.proposed
    assert preview.mapping_digest == proposed.digest != preview.current_digest
    assert preview.unseen_source_fields == ("Functei", "Mail")
    assert all(p["job_title"] is None for p in preview.people)
    assert "Functie" in preview.dropped  # now unmapped, so dropped
    diff = preview.diff
    assert diff is not None and not diff.same
    assert set(diff.changed) == {"job_title", "email"}
    assert diff.source_fields_added == ("Functei", "Mail")
    assert diff.source_fields_removed == ("Functie",)
    assert not diff.identity_changed
    entry = world.ledger_entries()[0]
    assert entry.mapping_digest == proposed.digest
    _nothing_written(world)


async def test_the_current_mapping_sees_every_mapped_field(world: World) -> None:
    preview = await world.preview()
    # Voorvoegsel is empty for most people but present as a key: seen.
    assert preview.unseen_source_fields == ()


async def test_a_proposed_mapping_for_another_type_is_refused_before_any_fetch(
    world: World,
) -> None:
    with pytest.raises(PreviewRefused, match="hubspot"):
        await world.preview(proposed=parse_mapping(bundled_mapping("hubspot").read_text()))
    with pytest.raises(PreviewRefused, match="limit"):
        await world.preview(limit=51)
    assert world.afas[CONTROL].requests_to("/profitrestservices/connectors") == []
    assert world.ledger_entries() == []


async def test_the_limit_bounds_the_page_even_when_the_source_sends_more(world: World) -> None:
    # A page size setting of 100 is overridden by the preview's own (the limit).
    world.add_connector("big", settings={"page_size": 100})
    preview = await world.preview("big", limit=5)
    assert preview.records_read == 5
    assert len(preview.people) + len(preview.quarantined) == 5
    assert world.ledger_entries()[0].counts.records == 5


async def test_hubspot_preview(world: World) -> None:
    preview = await world.preview("crm", limit=50)
    assert preview.records_read == 50
    assert preview.more_available
    assert len(preview.people) + len(preview.quarantined) == 50
    assert {f.name: f.sources for f in preview.fields}["email"] == ("properties.email",)
    assert all(len(p["subject_id"]) == 32 for p in preview.people)
    # HubSpot is asked only for the mapped properties, but sends its defaults anyway.
    assert "properties.hs_object_id" in preview.dropped
    secrets = {
        value
        for contact in world.hubspot[STATE].contacts
        for name in SENSITIVE_PROPERTIES
        if isinstance(value := contact["properties"].get(name), str) and value
    }
    shown = orjson.dumps([list(preview.people), preview.dropped]).decode()
    assert [s for s in secrets if len(s) > 3 and s in shown] == []
    entry = world.ledger_entries()[0]
    assert (entry.connector, entry.counts.records) == ("crm", 50)
    _nothing_written(world)


@pytest.mark.parametrize(
    ("kind", "setup"),
    [
        ("auth", lambda w: w.add_connector("x", credentials={"token": "f" * 64})),
        ("unavailable", lambda w: w.add_connector("x", base_url="http://127.0.0.1:9/prs")),
        ("too_large", lambda w: w.add_connector("x", settings={"max_response_bytes": 1024})),
    ],
)
async def test_a_failing_source_is_a_clear_error_and_nothing_is_recorded(
    world: World, kind: str, setup: Callable[[World], None], caplog: pytest.LogCaptureFixture
) -> None:
    setup(world)
    with caplog.at_level(logging.DEBUG), pytest.raises(PreviewFailed) as failed:
        await world.preview("x")
    assert failed.value.kind == kind
    assert "Traceback" not in str(failed.value)
    assert world.ledger_entries() == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert [s for s in _afas_secrets(world) if s in logged or s in str(failed.value)] == []


async def test_a_source_that_keeps_failing_is_unavailable(world: World) -> None:
    world.afas[CONTROL].inject(*[Fault("error", status=503)] * 3)
    with pytest.raises(PreviewFailed) as failed:
        await world.preview()
    assert failed.value.kind == "unavailable" and failed.value.status == 503
    assert world.ledger_entries() == []


async def test_a_private_address_is_refused_unless_allowed(world: World) -> None:
    with pytest.raises(PreviewFailed) as failed:
        await world.preview(allow_private_sources=False)
    assert failed.value.kind == "config"
    assert "allow_private_sources" in str(failed.value)
    assert world.afas[CONTROL].log == []


async def test_a_source_slower_than_the_deadline_is_unavailable(world: World) -> None:
    world.afas[CONTROL].inject(Fault("slow", seconds=5.0))
    with pytest.raises(PreviewFailed) as failed:
        await world.preview(timeout=0.2)
    assert failed.value.kind == "unavailable"
    assert "did not answer" in str(failed.value)


async def test_another_tenants_connector_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.preview(tenant="other")
    assert world.ledger_entries("other") == []


async def test_previews_land_in_their_own_tenants_ledger(world: World) -> None:
    world.add_connector("afas", tenant="other")
    await world.preview(tenant="other")
    assert world.ledger_entries() == []
    assert [e.tenant for e in world.ledger_entries("other")] == ["other"]


# --------------------------------------------------------------------------- the cache


def _preview(pid: str, tenant: str, made_at: datetime) -> Preview:
    return Preview(
        id=pid, tenant=tenant, connector="afas", made_at=made_at, actor="system",
        mapping_digest="sha256:" + "0" * 64, current_digest="sha256:" + "0" * 64,
        proposed=False, limit=20, records_read=0, more_available=False, fields=(), people=(),
        dropped={}, quarantined=(), unseen_source_fields=(), diff=None,
    )  # fmt: skip


def test_the_cache_keeps_a_preview_for_its_ttl_and_its_tenant_only() -> None:
    cache = PreviewCache(ttl=timedelta(minutes=10))
    t0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    cache.put(_preview("prv_a", "acme", t0), t0)
    assert cache.get("acme", "prv_a", t0 + timedelta(minutes=9, seconds=59)) is not None
    assert cache.get("other", "prv_a", t0) is None
    assert cache.get("acme", "prv_b", t0) is None
    assert cache.get("acme", "prv_a", t0 + timedelta(minutes=10)) is None
    assert len(cache) == 0  # expired entries are dropped, not just hidden


def test_the_cache_is_bounded_and_evicts_the_oldest_first() -> None:
    cache = PreviewCache(max_entries=3)
    t0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    for i in range(5):
        cache.put(_preview(f"prv_{i}", "acme", t0 + timedelta(seconds=i)), t0)
    assert len(cache) == 3
    assert [cache.get("acme", f"prv_{i}", t0) is not None for i in range(5)] == [
        False, False, True, True, True,
    ]  # fmt: skip


def test_the_cache_drops_expired_entries_when_adding() -> None:
    cache = PreviewCache(ttl=timedelta(minutes=10))
    t0 = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    cache.put(_preview("prv_old", "acme", t0), t0)
    later = t0 + timedelta(minutes=11)
    cache.put(_preview("prv_new", "acme", later), later)
    assert len(cache) == 1


def test_preview_ids_are_unguessable() -> None:
    from gateway.sync.preview import preview_id

    ids = {preview_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 36 and i.startswith("prv_") for i in ids)


async def test_an_empty_source_gives_an_empty_preview_and_still_records_it(world: World) -> None:
    world.afas[ENVIRONMENT].people = []
    preview = await world.preview()
    assert (preview.records_read, preview.people, preview.quarantined) == (0, (), ())
    assert not preview.more_available
    assert preview.dropped == {}
    assert preview.unseen_source_fields == ()  # nothing read, nothing to say
    [entry] = world.ledger_entries()
    assert entry.counts.records == 0
