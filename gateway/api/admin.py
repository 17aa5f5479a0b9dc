"""The admin API (`/admin/v1`): tenants, connectors, instructions and feed consumers.

Every route needs `Authorization: Bearer <admin token>`, compared in constant time. Ids in
paths are always resolved *within* the tenant (and connector) of the path, so an id that
belongs elsewhere is a 404, never a view into another tenant (OWASP API1).

Connectors are answered without their credentials and with a preview of the mapping (which
egress fields pass, with their data categories, and which source fields are read), so an
admin sees exactly what will leave before granting an instruction for it. Syncs and the
ledger live in `gateway.api.runs`.

A connector's life after creation: `PATCH` changes its mapping (answered with what changes
for the platform; syncing then waits for a new instruction), credentials (sealed, never
returned), interval, delete share, or pauses and resumes it; `POST .../mapping-preview`
shows a mapping's changes without applying them; `DELETE ...?subjects=delete|keep` stops
and deletes it (`gateway.tenancy.delete_connector`). Feed consumers can be listed, revoked
and given a new token (the old one stops at once).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from connectors.netguard import PrivateAddress, check_url
from connectors.registry import UnknownConnectorType, connector_type, known_types
from gateway.api import accounts as account_routes
from gateway.api import preview as previews
from gateway.api import runs as admin_ops
from gateway.api.auth import acting, admin_auth, require_step_up
from gateway.api.httpkit import (
    location,
    model_response,
    query_params,
    read_body,
    services_of,
    store_call,
)
from gateway.api.mapping_views import change_out, mapping_text, usable_mapping
from gateway.api.models import (
    ConnectorChanged,
    ConnectorCreate,
    ConnectorDeleted,
    ConnectorDeleteQuery,
    ConnectorList,
    ConnectorOut,
    ConnectorUpdate,
    ConsumerCreate,
    ConsumerCreated,
    ConsumerList,
    ConsumerOut,
    InstructionCreate,
    InstructionList,
    InstructionOut,
    MappingCandidate,
    MappingChange,
    MappingPreview,
    ScimTokenCreated,
    TenantCreate,
    TenantList,
    TenantOut,
)
from gateway.api.problems import Problem, field_error, invalid
from gateway.delivery.outbox import grant_and_converge
from gateway.lifecycle import termination
from gateway.lifecycle.termination import destroy_after
from gateway.minimise.mapping import Mapping, parse_mapping
from gateway.minimise.mapping_diff import diff_mappings
from gateway.store.records import ConnectorRecord, Consumer, Instruction, NotFound, Tenant
from gateway.sync.instructions import revoke
from gateway.tenancy import (
    change_connector,
    changed_since,
    create_connector,
    create_consumer,
    create_tenant,
    delete_connector,
    issue_scim_token,
    rotate_consumer_token,
    set_paused,
    version,
)
from gateway.tenancy import revoke_consumer as end_consumer

# --------------------------------------------------------------------------- views


def mapping_preview(mapping: Mapping) -> MappingPreview:
    return MappingPreview(
        digest=mapping.digest,
        fields=dict(mapping.categories),
        source_fields=sorted(mapping.source_fields),
    )


def connector_out(record: ConnectorRecord, mapping: Mapping | None = None) -> ConnectorOut:
    if mapping is None:
        mapping = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
    return ConnectorOut(
        tenant=record.tenant,
        id=record.id,
        type=record.type,
        base_url=record.base_url,
        settings=dict(record.settings),
        interval_seconds=record.interval_seconds,
        max_delete_share=record.max_delete_share,
        created_at=record.created_at,
        watermark=record.watermark,
        last_success_at=record.last_success_at,
        mapping=mapping_preview(mapping),
        paused_at=record.paused_at,
    )


def instruction_out(instruction: Instruction, request: web.Request) -> InstructionOut:
    i = instruction
    return InstructionOut(
        id=i.id,
        tenant=i.tenant,
        connector=i.connector,
        granted_by=i.granted_by,
        granted_at=i.granted_at,
        purpose=i.purpose,
        mapping_digest=i.mapping_digest,
        fields=dict(i.fields),
        valid_until=i.valid_until,
        state=i.state(services_of(request).clock()),
        revoked_at=i.revoked_at,
        revoked_by=i.revoked_by,
    )


# --------------------------------------------------------------------------- tenants


def tenant_out(tenant: Tenant, grace_days: int) -> TenantOut:
    return TenantOut(
        id=tenant.id, name=tenant.name, created_at=tenant.created_at,
        terminated_at=tenant.terminated_at,
        destroy_after=destroy_after(tenant, timedelta(days=grace_days)),
        destroyed_at=tenant.destroyed_at,
    )  # fmt: skip


async def list_tenants(request: web.Request) -> web.Response:
    s = services_of(request)
    tenants = await store_call(s.store.list_tenants)
    grace = s.settings.tenant_grace_days
    return model_response(TenantList(tenants=[tenant_out(t, grace) for t in tenants]))


async def post_tenant(request: web.Request) -> web.Response:
    body = await read_body(request, TenantCreate)
    s = services_of(request)
    tenant = await store_call(
        create_tenant, s.store, s.box, body.id, body.name, s.clock(), by=acting(request, body.id)
    )
    out = tenant_out(tenant, s.settings.tenant_grace_days)
    return model_response(out, 201, {"Location": location(request, tenant.id)})


async def get_tenant(request: web.Request) -> web.Response:
    s = services_of(request)
    tenant = await store_call(s.store.get_tenant, request.match_info["tenant"])
    return model_response(tenant_out(tenant, s.settings.tenant_grace_days))


async def terminate_tenant(request: web.Request) -> web.Response:
    """End the tenant's processing at once (operators): every authorisation revoked, the
    fetches under way stopped, nothing authorisable any more; its data is kept for the
    grace period (`gateway.lifecycle.termination`)."""
    tenant_id = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant_id)
    revoked = await store_call(
        termination.terminate, s.store, acting(request, tenant_id), s.clock()
    )
    for instruction in revoked:
        await s.engine.revocations.revoke(instruction.id)
    tenant = await store_call(s.store.get_tenant, tenant_id)
    return model_response(tenant_out(tenant, s.settings.tenant_grace_days))


async def destroy_tenant(request: web.Request) -> web.Response:
    """Crypto-shred a terminated tenant whose grace period is over (operators, step-up)."""
    tenant_id = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant_id)
    grace = timedelta(days=s.settings.tenant_grace_days)
    await store_call(termination.destroy, s.store, acting(request, tenant_id), grace, s.clock())
    tenant = await store_call(s.store.get_tenant, tenant_id)
    return model_response(tenant_out(tenant, s.settings.tenant_grace_days))


# --------------------------------------------------------------------------- connectors


def _check_credentials(type_name: str, credentials: dict[str, str]) -> None:
    missing = [k for k in connector_type(type_name).credential_keys if not credentials.get(k)]
    if missing:
        raise Problem(
            422,
            f"a {type_name} connector needs credentials: {', '.join(missing)}",
            errors=[field_error(f"credentials.{k}", "required") for k in missing],
        )


def _check_connector(body: ConnectorCreate, text: str) -> None:
    """Everything that can be wrong with a new connector, as field-level 422s."""
    try:
        connector_type(body.type)
    except UnknownConnectorType:
        known = ", ".join(known_types())
        raise invalid("type", f"unknown connector type; known types: {known}") from None
    usable_mapping(text, body.type)
    _check_credentials(body.type, body.credentials)
    pushed = connector_type(body.type).pushed
    if body.base_url is None and not pushed:
        raise invalid("base_url", f"required for a {body.type} connector")
    if body.base_url is not None and not pushed:
        scheme = body.base_url.split(":", 1)[0].lower()
        schemes = connector_type(body.type).url_schemes
        if scheme not in schemes:
            raise invalid(
                "base_url", f"a {body.type} connector's address is {' or '.join(schemes)}"
            )
    if pushed and (body.base_url is not None or body.credentials):
        field = "base_url" if body.base_url is not None else "credentials"
        raise invalid(field, f"a {body.type} connector has none: its identity provider "
                      "pushes to the gateway with a token from POST .../scim-token")  # fmt: skip


async def post_connector(request: web.Request) -> web.Response:
    body = await read_body(request, ConnectorCreate)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    text = await asyncio.to_thread(mapping_text, body.mapping)
    _check_connector(body, text)
    gone = await asyncio.to_thread(s.store.deleted_connector, tenant, body.id)
    if gone is not None:
        raise Problem(
            409,
            f"connector id {body.id} belonged to a connector deleted at "
            f"{gone.deleted_at.isoformat() if gone.deleted_at else 'an earlier time'}; ids are "
            "not reused, so the ledger's entries keep naming one connector",
            slug="connector-id-used",
        )
    if body.base_url is not None and not s.settings.allow_private_sources:
        try:
            check_url(body.base_url)
        except PrivateAddress as exc:
            raise invalid(
                "base_url", f"{exc}; sources must be public (or set allow_private_sources)"
            ) from None
    record, mapping = await store_call(
        create_connector,
        s.store,
        s.box,
        tenant=tenant,
        connector_id=body.id,
        type_name=body.type,
        base_url=body.base_url or "",
        credentials=body.credentials,
        mapping_text=text,
        now=s.clock(),
        by=acting(request, tenant),
        settings=body.settings,
        interval_seconds=body.interval_seconds,
        max_delete_share=body.max_delete_share,
    )
    out = connector_out(record, mapping)
    return model_response(out, 201, {"Location": location(request, record.id)})


async def get_connector(request: web.Request) -> web.Response:
    m = request.match_info
    store = services_of(request).store
    try:
        record = await asyncio.to_thread(store.get_connector, m["tenant"], m["connector"])
    except NotFound as exc:
        gone = await asyncio.to_thread(store.deleted_connector, m["tenant"], m["connector"])
        if gone is None or gone.deleted_at is None:
            raise Problem(404, f"not found: {exc}") from None
        raise Problem(
            404,
            f"not found: connector {gone.id} was deleted at {gone.deleted_at.isoformat()} "
            f"(subjects: {gone.deleted_subjects})",
        ) from None
    return model_response(connector_out(record), headers={"ETag": etag(record)})


#: Longer than any version this gateway hands out (documented in the OpenAPI document).
MAX_IF_MATCH = 512


def etag(record: ConnectorRecord) -> str:
    """The connector's version as an HTTP entity tag (`If-Match` on PATCH compares it)."""
    return f'"{version(record)}"'


def _if_match(request: web.Request) -> str | None:
    """The version an edit is based on (None: no `If-Match`, or `*`)."""
    given = request.headers.get("If-Match")
    if given is None or given.strip() == "*":
        return None
    if len(given) > MAX_IF_MATCH:
        raise Problem(400, f"If-Match is longer than {MAX_IF_MATCH} characters")
    return given.strip().removeprefix("W/").strip('"')


def mapping_change(before: Mapping, after: Mapping) -> MappingChange:
    return change_out(diff_mappings(before, after))


async def patch_connector(request: web.Request) -> web.Response:
    """Change a connector; with a new mapping, the answer says what changes for the platform."""
    body = await read_body(request, ConnectorUpdate)
    if not body.model_fields_set:
        raise Problem(422, "give at least one property to change", errors=[
            field_error("body", "no property to change")])  # fmt: skip
    m = request.match_info
    s = services_of(request)
    record = await store_call(s.store.get_connector, m["tenant"], m["connector"])
    change: MappingChange | None = None
    text = None
    if body.mapping is not None:
        text = await asyncio.to_thread(mapping_text, body.mapping)
        after = usable_mapping(text, record.type)
        before = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
        change = mapping_change(before, after)
    if body.credentials is not None:
        if connector_type(record.type).pushed:
            raise invalid(
                "credentials",
                f"a {record.type} connector has no credentials to set; its bearer token is "
                "issued by POST .../scim-token",
            )
        _check_credentials(record.type, body.credentials)
    if body.credentials is not None or (change is not None and not change.same):
        require_step_up(request)
    by = acting(request, record.tenant)
    seen = _if_match(request)

    def apply() -> ConnectorRecord | list[str]:
        # One transaction: the version is compared with what is stored when the change
        # is written, so two saves based on one view cannot both land.
        with s.store.transaction():
            current = s.store.get_connector(record.tenant, record.id)
            moved = changed_since(current, seen) if seen is not None else []
            if moved:
                return moved
            now = s.clock()
            updated = change_connector(
                s.store, s.box, current, credentials=body.credentials, mapping_text=text,
                interval_seconds=body.interval_seconds, max_delete_share=body.max_delete_share,
                now=now, by=by,
            )  # fmt: skip
            if body.paused is not None and body.paused != (updated.paused_at is not None):
                updated = set_paused(s.store, updated, paused=body.paused, now=now, by=by)
            return updated

    outcome = await store_call(apply)
    if isinstance(outcome, list):
        current = await store_call(s.store.get_connector, record.tenant, record.id)
        raise Problem(
            412,
            "the connector changed since the version this edit is based on "
            f"({', '.join(outcome)}); GET it again and re-apply the edit",
            slug="connector-changed",
            headers={"ETag": etag(current)},
            changed=outcome,
        )
    updated = outcome
    return model_response(
        ConnectorChanged(connector=connector_out(updated), mapping_change=change),
        headers={"ETag": etag(updated)},
    )


async def preview_mapping(request: web.Request) -> web.Response:
    """What a mapping would change, without changing anything."""
    body = await read_body(request, MappingCandidate)
    m = request.match_info
    record = await store_call(services_of(request).store.get_connector, m["tenant"], m["connector"])
    text = await asyncio.to_thread(mapping_text, body.mapping)
    after = usable_mapping(text, record.type)
    before = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
    return model_response(mapping_change(before, after))


async def remove_connector(request: web.Request) -> web.Response:
    """Stop and delete; `?subjects=delete|keep` must say what happens to those delivered."""
    query = query_params(request, ConnectorDeleteQuery)
    m = request.match_info
    s = services_of(request)
    now = s.clock()
    done = await store_call(
        delete_connector,
        s.store,
        tenant=m["tenant"],
        connector=m["connector"],
        subjects=query.subjects,
        by=acting(request, m["tenant"]),
        now=now,
    )
    out = ConnectorDeleted(
        tenant=m["tenant"],
        id=m["connector"],
        deleted_at=now,
        subjects=done.subjects,
        instructions_revoked=done.instructions_revoked,
        runs_stopped=done.runs_stopped,
        deletion_events=done.deletion_events,
        subjects_kept=done.subjects_kept,
    )
    return model_response(out)


async def list_connectors(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    store = services_of(request).store
    await store_call(store.get_tenant, tenant)
    records = await store_call(store.list_connectors, tenant)
    return model_response(ConnectorList(connectors=[connector_out(r) for r in records]))


# --------------------------------------------------------------------------- instructions


async def post_instruction(request: web.Request) -> web.Response:
    body = await read_body(request, InstructionCreate)
    m = request.match_info
    s = services_of(request)
    now = s.clock()
    if body.valid_until is not None and body.valid_until <= now:
        raise invalid("valid_until", "must lie in the future")
    instruction, reemitted = await store_call(
        grant_and_converge,
        s.store,
        by=acting(request, m["tenant"]),
        connector=m["connector"],
        purpose=body.purpose,
        now=now,
        valid_until=body.valid_until,
    )
    out = instruction_out(instruction, request)
    out.reemitted_events = reemitted or None
    return model_response(out, 201, {"Location": location(request, instruction.id)})


async def list_instructions(request: web.Request) -> web.Response:
    m = request.match_info
    store = services_of(request).store
    await store_call(store.get_connector, m["tenant"], m["connector"])
    found = await store_call(store.list_instructions, m["tenant"], m["connector"])
    return model_response(
        InstructionList(instructions=[instruction_out(i, request) for i in found])
    )


async def revoke_instruction(request: web.Request) -> web.Response:
    """Revoke at once, in the name of the authenticated principal (after a step-up)."""
    if request.query:
        raise invalid("query", "takes no query parameters (who revokes is the caller)")
    if request.can_read_body and await request.read():
        raise invalid("body", "takes no body (who revokes is the caller)")
    m = request.match_info
    s = services_of(request)
    try:
        found = await asyncio.to_thread(s.store.get_instruction, m["instruction"])
    except NotFound:
        found = None
    if found is None or (found.tenant, found.connector) != (m["tenant"], m["connector"]):
        raise Problem(404, f"not found: instruction {m['instruction']} of this connector")
    revoked = await store_call(
        revoke, s.store, by=acting(request, found.tenant), instruction=found, now=s.clock()
    )
    # Stop this process's fetches under it before answering: after the DELETE returns,
    # the source receives nothing more under this instruction.
    await s.engine.revocations.revoke(found.id)
    return model_response(instruction_out(revoked, request))


# --------------------------------------------------------------------------- consumers


async def post_consumer(request: web.Request) -> web.Response:
    body = await read_body(request, ConsumerCreate)
    s = services_of(request)
    tenant = request.match_info["tenant"]
    consumer, token = await store_call(
        create_consumer, s.store, tenant=tenant, name=body.name, now=s.clock(),
        by=acting(request, tenant),
    )  # fmt: skip
    out = ConsumerCreated(
        id=consumer.id,
        tenant=consumer.tenant,
        name=consumer.name,
        created_at=consumer.created_at,
        token=token,
    )
    headers = {"Cache-Control": "no-store", "Location": location(request, consumer.id)}
    return model_response(out, 201, headers)


def consumer_out(consumer: Consumer) -> ConsumerOut:
    c = consumer
    return ConsumerOut(
        id=c.id, tenant=c.tenant, name=c.name, created_at=c.created_at, revoked_at=c.revoked_at
    )


async def list_consumers(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    store = services_of(request).store
    await store_call(store.get_tenant, tenant)
    found = await store_call(store.list_consumers, tenant)
    return model_response(ConsumerList(consumers=[consumer_out(c) for c in found]))


async def revoke_consumer(request: web.Request) -> web.Response:
    """The consumer's token stops working at once; the consumer stays listed as revoked."""
    m = request.match_info
    s = services_of(request)
    revoked = await store_call(
        end_consumer, s.store, tenant=m["tenant"], consumer_id=m["consumer"], now=s.clock(),
        by=acting(request, m["tenant"]),
    )  # fmt: skip
    return model_response(consumer_out(revoked))


async def rotate_token(request: web.Request) -> web.Response:
    """A new token, shown once; the old one stops working in the same write."""
    m = request.match_info
    s = services_of(request)
    try:
        consumer, token = await store_call(
            rotate_consumer_token, s.store, tenant=m["tenant"], consumer_id=m["consumer"],
            now=s.clock(), by=acting(request, m["tenant"]),
        )  # fmt: skip
    except ValueError as exc:
        raise Problem(409, str(exc), slug="consumer-revoked") from None
    out = ConsumerCreated(
        id=consumer.id,
        tenant=consumer.tenant,
        name=consumer.name,
        created_at=consumer.created_at,
        token=token,
    )
    return model_response(out, 200, {"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- wiring

T = "/tenants/{tenant}"
C = T + "/connectors/{connector}"


async def issue_scim_token_route(request: web.Request) -> web.Response:
    """A SCIM connector's bearer token, shown once, with the tenant URL its identity
    provider is given; the previous token stops working at once."""
    m = request.match_info
    s = services_of(request)
    record = await store_call(s.store.get_connector, m["tenant"], m["connector"])
    if not connector_type(record.type).pushed:
        raise Problem(
            409, f"connector {record.id} is a {record.type} source, fetched by the gateway: "
            "only a scim connector has a SCIM token", slug="not-a-scim-connector",
        )  # fmt: skip
    token = await store_call(
        issue_scim_token, s.store, s.box, record, now=s.clock(), by=acting(request, record.tenant)
    )
    public = s.settings.public_url
    root = public.rstrip("/") if public else f"{request.scheme}://{request.host}"
    out = ScimTokenCreated(
        tenant=record.tenant, connector=record.id, token=token,
        tenant_url=f"{root}/scim/v2/tenants/{record.tenant}/connectors/{record.id}",
    )  # fmt: skip
    return model_response(out, 201, {"Cache-Control": "no-store"})


def make_admin_app() -> web.Application:
    """The `/admin/v1` sub-application (mounted by `gateway.api.app.make_app`)."""
    app = web.Application(middlewares=[admin_auth])
    r = app.router
    r.add_post("/tenants", post_tenant)
    r.add_get("/tenants", list_tenants, allow_head=False)
    r.add_get(T, get_tenant, allow_head=False)
    r.add_post(T + "/terminate", terminate_tenant)
    r.add_post(T + "/destroy", destroy_tenant)
    r.add_post(T + "/connectors", post_connector)
    r.add_get(T + "/connectors", list_connectors, allow_head=False)
    r.add_get(C, get_connector, allow_head=False)
    r.add_patch(C, patch_connector)
    r.add_delete(C, remove_connector)
    r.add_post(C + "/mapping-preview", preview_mapping)
    r.add_post(C + "/instructions", post_instruction)
    r.add_get(C + "/instructions", list_instructions, allow_head=False)
    r.add_delete(C + "/instructions/{instruction}", revoke_instruction)
    r.add_post(T + "/consumers", post_consumer)
    r.add_get(T + "/consumers", list_consumers, allow_head=False)
    r.add_delete(T + "/consumers/{consumer}", revoke_consumer)
    r.add_post(T + "/consumers/{consumer}/token", rotate_token)
    r.add_post(C + "/scim-token", issue_scim_token_route)
    admin_ops.add_routes(r, tenant_path=T, connector_path=C)
    account_routes.add_routes(r, tenant_path=T)
    previews.mount(app, connector_path=C)
    return app
