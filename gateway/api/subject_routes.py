"""Admin routes of data-subject requests (`gateway.lifecycle.subjects`, `.erasure`).

`POST .../subjects/search` finds a person by work email or by their identity in a source
and answers keyed ids; `POST .../subjects/export` says what Sluis holds about them and
where it went, as JSON or CSV. Both are POSTs so that an email never sits in a URL (and so
in an access log), both are for the tenant's admins and auditors, and each is recorded in
the tenant's ledger (`subject.searched` with the number found, `subject.exported` per
keyed id), since reading a person's data is processing too. Answers hold personal data:
sent with `Cache-Control: no-store`.

`POST .../subjects/rectify` answers where a person's data comes from (each source and the
source fields behind each passed field: the source is the system of record, the record is
corrected there) and starts a sync of each such source's changes, to bring the correction
through at once (`gateway.lifecycle.rectification`).

`POST .../subjects/erase` erases a person and `.../subjects/restrict` restricts one
(admins, with a fresh second factor); the suppressions they leave are listed at `GET
.../suppressions` and lifted with `DELETE .../suppressions/{subject}` (admins, with a fresh
second factor).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from aiohttp import web

from gateway.api.auth import acting
from gateway.api.httpkit import (
    SYNC_TASKS,
    model_response,
    read_body,
    services_of,
    spawn,
    store_call,
)
from gateway.api.problems import Problem, invalid
from gateway.api.subject_models import (
    ErasedOut,
    ErasureOut,
    ErasureReceipt,
    IdentitySearch,
    RectificationOut,
    RectifySyncOut,
    RestrictedOut,
    SourceOfRecordOut,
    SubjectEraseRequest,
    SubjectExportOut,
    SubjectExportRequest,
    SubjectFoundOut,
    SubjectRectifyRequest,
    SubjectSearch,
    SubjectsFoundOut,
    SuppressionList,
    SuppressionOut,
)
from gateway.delivery.push import destination_name
from gateway.ledger.audit import AuditCounts
from gateway.ledger.record import record
from gateway.lifecycle import erasure, rectification, subjects
from gateway.store.records import NotFound, Suppression
from gateway.sync.engine import ConnectorPaused, PushedSource, SyncBusy
from gateway.sync.instructions import InstructionRefused

NO_STORE = {"Cache-Control": "no-store"}


async def search(request: web.Request) -> web.Response:
    body = await read_body(request, SubjectSearch)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    by = acting(request, tenant)

    def find() -> list[subjects.Found]:
        way = body.root
        if isinstance(way, IdentitySearch):
            found = subjects.find_by_identity(s.store, s.box, tenant, way.connector, way.identity)
            connector: str | None = way.connector
        else:
            found, connector = subjects.find_by_email(s.store, tenant, way.email), None
        with by.recording(s.store, "subject.searched", s.clock(), connector=connector,
                          counts=AuditCounts(records=len(found))):  # fmt: skip
            pass
        return found

    try:
        found = await store_call(find)
    except subjects.SubjectLookupError as exc:
        raise invalid(exc.field, exc.message) from None
    out = SubjectsFoundOut(
        subjects=[SubjectFoundOut(subject_id=f.subject_id, sources=list(f.sources)) for f in found]
    )
    return model_response(out, headers=NO_STORE)


async def export(request: web.Request) -> web.Response:
    body = await read_body(request, SubjectExportRequest)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    by = acting(request, tenant)
    ids = sorted(set(body.subject_ids))

    def make() -> dict[str, object] | None:
        made = subjects.subject_export(s.store, s.store.ledger, tenant, ids, s.clock())
        if made is not None:
            now = s.clock()
            record(s.store, by.ledger, [by.entry("subject.exported", now, target=i) for i in ids])
        return made

    try:
        made = await store_call(make)
    except NotFound as exc:  # pragma: no cover - the tenant was checked above
        raise Problem(404, f"not found: {exc}") from None
    if made is None:
        raise Problem(404, "not found: Sluis holds nothing about these subject ids")
    if body.format == "csv":
        return web.Response(
            text=subjects.export_csv(made),
            content_type="text/csv",
            headers={**NO_STORE, "Content-Disposition": 'attachment; filename="subject.csv"'},
        )
    return model_response(SubjectExportOut.model_validate(made), headers=NO_STORE)


async def erase(request: web.Request) -> web.Response:
    """Erase a person (`gateway.lifecycle.erasure`): their data deleted, every destination
    told, and a suppression that keeps later syncs from bringing them back."""
    body = await read_body(request, SubjectEraseRequest)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    done = await store_call(
        erasure.erase, s.store, acting(request, tenant), body.subject_ids, s.clock()
    )
    return model_response(
        ErasureOut(
            erased=[
                ErasedOut(subject_id=e.subject_id, events_deleted=e.events_deleted,
                          sources=list(e.sources))
                for e in done
            ]
        )
    )  # fmt: skip


async def restrict(request: web.Request) -> web.Response:
    """Restrict a person: nothing more stored or delivered about them, nothing deleted."""
    body = await read_body(request, SubjectEraseRequest)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    done = await store_call(
        erasure.restrict, s.store, acting(request, tenant), body.subject_ids, s.clock()
    )
    return model_response(RestrictedOut(restricted=done))


def _suppression_out(
    row: Suppression,
    receipts: Sequence[tuple[str, str, datetime]] = (),
    consumers: Sequence[str] = (),
) -> SuppressionOut:
    mine = [r for r in receipts if r[0] == row.subject_id] if row.kind == "erased" else []
    confirmed = {consumer for _, consumer, _ in mine}
    return SuppressionOut(
        subject_id=row.subject_id, kind=row.kind, created_at=row.created_at,
        by_actor=row.by_actor,
        receipts=[ErasureReceipt(subject_id=sid, consumer_id=c, acknowledged_at=at)
                  for sid, c, at in mine],
        pending=[c for c in consumers if c not in confirmed] if row.kind == "erased" else [],
    )  # fmt: skip


async def list_suppressions(request: web.Request) -> web.Response:
    """The suppressions; an erased person's with each live consumer's receipt, or as
    pending (`POST /feed/v1/.../erasures/{subject}/ack`)."""
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)

    def read() -> list[SuppressionOut]:
        rows = s.store.list_suppressions(tenant)
        erased = [r.subject_id for r in rows if r.kind == "erased"]
        receipts = s.store.erasure_receipts(tenant, erased)
        now = s.clock()
        live = [c.id for c in s.store.list_consumers(tenant)
                if c.revoked_at is None or c.revoked_at > now]  # fmt: skip
        # Push destinations give their receipt by taking the erasure (`webhook:<id>`).
        live += [destination_name(d) for d in s.store.list_destinations(tenant)]
        return [_suppression_out(r, receipts, live) for r in rows]

    return model_response(SuppressionList(suppressions=await store_call(read)))


async def lift_suppression(request: web.Request) -> web.Response:
    """Let a suppressed person be processed again: the next sync brings them back."""
    tenant, subject_id = request.match_info["tenant"], request.match_info["subject"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    row = await store_call(erasure.lift, s.store, acting(request, tenant), subject_id, s.clock())
    if row is None:
        raise Problem(404, f"not found: no suppression of {subject_id}")
    return model_response(_suppression_out(row))


RECTIFY_HOW: Final = (
    "The source is the system of record: correct the person's record there (the fields "
    "listed per source are those each passed field is taken from). A sync of each source's "
    "changes since its last run brings the correction to every destination; Sluis holds no "
    "copy of its own to edit."
)


async def rectify(request: web.Request) -> web.Response:
    """Where to correct a person, and a sync of each of their sources' changes."""
    body = await read_body(request, SubjectRectifyRequest)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    ids = sorted(set(body.subject_ids))
    found = await store_call(rectification.sources_of_record, s.store, tenant, ids)
    if not found:
        raise Problem(404, "not found: Sluis holds nothing about these subject ids")
    syncs = [await _resync(request, tenant, src.connector, asked=body.sync) for src in found]
    started = sum(1 for sync in syncs if sync.status == "started")
    by = acting(request, tenant)
    now = s.clock()
    entries = [by.entry("subject.resynced", now, target=i, counts=AuditCounts(records=started))
               for i in ids]  # fmt: skip
    await store_call(record, s.store, by.ledger, entries)
    out = RectificationOut(
        subject_ids=ids,
        sources=[
            SourceOfRecordOut(
                connector=src.connector, connector_type=src.connector_type,
                base_url=src.base_url, fields={k: list(v) for k, v in src.fields.items()},
                sync=sync,
            )
            for src, sync in zip(found, syncs, strict=True)
        ],
        how=RECTIFY_HOW,
    )  # fmt: skip
    return model_response(out, headers=NO_STORE)


async def _resync(
    request: web.Request, tenant: str, connector: str, *, asked: bool
) -> RectifySyncOut:
    """Start a sync of the connector's changes since its last run, or say why not."""
    if not asked:
        return RectifySyncOut(status="not-asked", run_id=None, detail="no sync was asked for")
    engine = services_of(request).engine
    try:
        run = await engine.start(tenant, connector, None)
    except ConnectorPaused:
        return RectifySyncOut(status="paused", run_id=None, detail="the connector is paused")
    except PushedSource:
        return RectifySyncOut(
            status="not-asked", run_id=None,
            detail="an identity provider pushes this source: its next change comes by itself",
        )  # fmt: skip
    except InstructionRefused as refusal:
        return RectifySyncOut(status="not-authorised", run_id=None, detail=str(refusal))
    except SyncBusy as busy:
        return RectifySyncOut(
            status="busy", run_id=busy.run_id,
            detail="a sync is running; one started after the correction brings it through",
        )  # fmt: skip
    spawn(request.config_dict[SYNC_TASKS], engine.run(run))
    return RectifySyncOut(status="started", run_id=run.id, detail=f"a {run.mode} sync started")


def add_routes(router: web.UrlDispatcher, *, tenant_path: str) -> None:
    router.add_post(tenant_path + "/subjects/search", search)
    router.add_post(tenant_path + "/subjects/rectify", rectify)
    router.add_post(tenant_path + "/subjects/export", export)
    router.add_post(tenant_path + "/subjects/erase", erase)
    router.add_post(tenant_path + "/subjects/restrict", restrict)
    router.add_get(tenant_path + "/suppressions", list_suppressions, allow_head=False)
    router.add_delete(tenant_path + r"/suppressions/{subject:[0-9a-f]{32}}", lift_suppression)
