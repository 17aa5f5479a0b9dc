"""Admin routes that act rather than configure: start and watch syncs, read the ledger.

A sync is started in the request (the instruction check and the claim on the connector
happen before the answer, so a refusal is a 409 the admin sees at once) and then driven by a
background task the app owns: the answer is 202 with the run and its `Location`, and the
app's cleanup cancels unfinished runs on shutdown (they keep their claim and cursor, and
the next start resumes them, as after a crash).

A full run stopped by the mass-delete guard reports the number it held back in
`counts.deletes_held`; the admin confirms exactly that many for one run with
`{"mode": "full", "confirm_deletes": N}` (kept on the run record), or raises the
connector's `max_delete_share`. A paused connector's sync is a 409 `connector-paused`.

The ledger routes hand out what an auditor needs to check the log without trusting the
gateway: entries with their leaf hashes, the latest signed checkpoint, and inclusion proofs.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import orjson
from aiohttp import web

from connectors.base import SyncMode
from gateway.api import (
    destination_routes,
    ledger_routes,
    request_routes,
    retention_routes,
    subject_routes,
)
from gateway.api.httpkit import (
    SYNC_TASKS,
    location,
    model_response,
    query_params,
    read_body,
    services_of,
    spawn,
    store_call,
)
from gateway.api.models import (
    InclusionProofOut,
    LedgerEntryOut,
    LedgerPage,
    LedgerQuery,
    RunList,
    RunOut,
    RunsQuery,
    SyncCreate,
)
from gateway.api.problems import Problem, invalid
from gateway.ledger.audit import AuditEntry
from gateway.ledger.entry import TransferEntry
from gateway.ledger.kinds import entry_bytes
from gateway.ledger.log import Ledger, LedgerCorrupt, LedgerError
from gateway.store.records import NotFound, RunRecord
from gateway.sync.engine import ConnectorPaused, PushedSource, SyncBusy
from gateway.sync.instructions import InstructionRefused

log = logging.getLogger("sluis.http")


def run_out(run: RunRecord) -> RunOut:
    return RunOut(
        id=run.id,
        tenant=run.tenant,
        connector=run.connector,
        mode=run.mode,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        counts=dict(run.counts),
        error=run.error,
        pages=run.pages,
        instruction_id=run.instruction_id,
        confirm_deletes=run.confirm_deletes,
    )


# --------------------------------------------------------------------------- syncs


async def post_sync(request: web.Request) -> web.Response:
    body = await read_body(request, SyncCreate, optional=True)
    tenant, connector = request.match_info["tenant"], request.match_info["connector"]
    s = services_of(request)
    mode = SyncMode(body.mode) if body.mode else None
    if body.confirm_deletes is not None:
        if mode is SyncMode.INCREMENTAL:
            raise invalid("confirm_deletes", 'only a full sync deletes: give "mode": "full"')
        mode = SyncMode.FULL
    try:
        run = await s.engine.start(tenant, connector, mode, confirm_deletes=body.confirm_deletes)
    except NotFound as exc:
        raise Problem(404, f"not found: {exc}") from None
    except ConnectorPaused as paused:
        raise Problem(
            409, str(paused), slug="connector-paused", title="The connector is paused"
        ) from None
    except PushedSource as pushed:
        raise Problem(
            409, str(pushed), slug="connector-pushed", title="The connector's source pushes"
        ) from None
    except InstructionRefused as refusal:
        raise Problem(
            409,
            str(refusal),
            slug="instruction-refused",
            title="No active instruction covers this connector",
            code=refusal.code,
            instruction_id=refusal.instruction_id,
        ) from None
    except SyncBusy as busy:
        running = f"run {busy.run_id}" if busy.run_id else "another run"
        raise Problem(
            409,
            f"connector {connector} is already syncing ({running}); wait for it to finish",
            slug="sync-busy",
            title="A sync is already running",
            run_id=busy.run_id,
        ) from None
    spawn(request.config_dict[SYNC_TASKS], s.engine.run(run))
    return model_response(run_out(run), 202, {"Location": location(request, run.id)})


async def get_sync(request: web.Request) -> web.Response:
    m = request.match_info
    run = await store_call(services_of(request).store.get_run, m["run"])
    if (run.tenant, run.connector) != (m["tenant"], m["connector"]):
        raise Problem(404, f"not found: run {m['run']} of this connector")
    return model_response(run_out(run))


async def list_syncs(request: web.Request) -> web.Response:
    query = query_params(request, RunsQuery)
    m = request.match_info
    store = services_of(request).store
    await store_call(store.get_connector, m["tenant"], m["connector"])
    runs = await store_call(store.list_runs, m["tenant"], m["connector"], query.limit)
    return model_response(RunList(runs=[run_out(r) for r in runs]))


# --------------------------------------------------------------------------- ledger


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _ledger_page(ledger: Ledger, query: LedgerQuery, latest_note: str | None) -> LedgerPage:
    records = ledger.entries(query.after, query.limit)
    entries = [
        LedgerEntryOut(
            index=r.index,
            kind="audit" if isinstance(r.entry, AuditEntry) else "transfer",
            leaf_hash=_b64(r.leaf_hash),
            entry=orjson.loads(entry_bytes(r.entry)),
            subject_ids=(
                r.entry.subject_ids
                if isinstance(r.entry, TransferEntry) and r.entry.subjects is not None
                else None
            ),
        )
        for r in records
    ]
    return LedgerPage(
        tenant=ledger.tenant,
        size=ledger.size(),
        checkpoint=latest_note,
        entries=entries,
        next_after=records[-1].index if records else query.after,
    )


async def get_ledger(request: web.Request) -> web.Response:
    query = query_params(request, LedgerQuery)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    ledger = s.ledger(tenant)

    def read() -> LedgerPage:
        latest = s.store.ledger.latest_checkpoint(tenant)
        return _ledger_page(ledger, query, latest.note if latest else None)

    try:
        page = await asyncio.to_thread(read)
    except LedgerCorrupt:
        raise _corrupt() from None
    return model_response(page)


def _corrupt() -> Problem:
    return Problem(
        500, "the ledger failed its self-check; run `sluis audit verify` on this gateway"
    )


async def get_proof(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    ledger = s.ledger(tenant)
    try:
        proof = await asyncio.to_thread(ledger.prove_inclusion, int(request.match_info["index"]))
    except LedgerCorrupt:
        raise _corrupt() from None
    except LedgerError as exc:
        raise Problem(404, str(exc)) from None
    return model_response(InclusionProofOut.model_validate(proof.to_json()))


def add_routes(router: web.UrlDispatcher, *, tenant_path: str, connector_path: str) -> None:
    router.add_post(connector_path + "/syncs", post_sync)
    router.add_get(connector_path + "/syncs", list_syncs, allow_head=False)
    router.add_get(connector_path + "/syncs/{run}", get_sync, allow_head=False)
    router.add_get(tenant_path + "/ledger", get_ledger, allow_head=False)
    router.add_get(tenant_path + r"/ledger/proof/{index:\d{1,18}}", get_proof, allow_head=False)
    ledger_routes.add_routes(router, tenant_path=tenant_path)
    subject_routes.add_routes(router, tenant_path=tenant_path)
    request_routes.add_routes(router, tenant_path=tenant_path)
    retention_routes.add_routes(router, tenant_path=tenant_path)
    destination_routes.add_routes(router, tenant_path=tenant_path)
