"""The admin API (`/admin/v1`): tenants, connectors, instructions and feed consumers.

Every route needs `Authorization: Bearer <admin token>`, compared in constant time. Ids in
paths are always resolved *within* the tenant (and connector) of the path, so an id that
belongs elsewhere is a 404, never a view into another tenant (OWASP API1).

Connectors are answered without their credentials and with a preview of the mapping (which
egress fields pass, with their data categories, and which source fields are read), so an
admin sees exactly what will leave before granting an instruction for it. Syncs and the
ledger live in `gateway.api.runs`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from connectors.netguard import PrivateAddress, check_url
from connectors.registry import UnknownConnectorType, connector_type, known_types
from gateway.api import runs as admin_ops
from gateway.api.httpkit import (
    bearer_token,
    location,
    model_response,
    query_params,
    read_body,
    same_secret,
    services_of,
    store_call,
    unauthorized,
)
from gateway.api.models import (
    ConnectorCreate,
    ConnectorList,
    ConnectorOut,
    ConsumerCreate,
    ConsumerCreated,
    InstructionCreate,
    InstructionList,
    InstructionOut,
    InstructionRevoke,
    MappingPreview,
    MappingText,
    TenantCreate,
    TenantOut,
)
from gateway.api.problems import Handler, Problem, field_error, invalid
from gateway.minimise.mapping import Mapping, MappingError, parse_mapping
from gateway.store.records import ConnectorRecord, Instruction, NotFound
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_consumer, create_tenant
from mappings import bundled_mapping

REALM: Final = "sluis-admin"


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = bearer_token(request)
    if token is None:
        raise unauthorized(REALM, "the admin API needs a bearer token")
    if not same_secret(token, services_of(request).admin_token):
        raise unauthorized(REALM, "the bearer token is not valid for the admin API")
    return await handler(request)


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


async def post_tenant(request: web.Request) -> web.Response:
    body = await read_body(request, TenantCreate)
    s = services_of(request)
    tenant = await store_call(create_tenant, s.store, s.box, body.id, body.name, s.clock())
    out = TenantOut(id=tenant.id, name=tenant.name, created_at=tenant.created_at)
    return model_response(out, 201, {"Location": location(request, tenant.id)})


async def get_tenant(request: web.Request) -> web.Response:
    tenant = await store_call(services_of(request).store.get_tenant, request.match_info["tenant"])
    return model_response(TenantOut(id=tenant.id, name=tenant.name, created_at=tenant.created_at))


# --------------------------------------------------------------------------- connectors


def _mapping_text(choice: str | MappingText) -> str:
    if isinstance(choice, MappingText):
        return choice.toml
    try:
        return bundled_mapping(choice).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise invalid("mapping", "there is no bundled mapping of that name") from None


def _check_connector(body: ConnectorCreate, text: str) -> None:
    """Everything that can be wrong with a new connector, as field-level 422s."""
    try:
        kind = connector_type(body.type)
    except UnknownConnectorType:
        known = ", ".join(known_types())
        raise invalid("type", f"unknown connector type; known types: {known}") from None
    try:
        mapping = parse_mapping(text, "mapping")
    except MappingError as exc:
        where = f"line {exc.line}" if exc.line else "mapping"
        message = f"{where}: {exc.field}: {exc.problem}" if exc.field else f"{where}: {exc.problem}"
        raise Problem(
            422,
            f"the mapping cannot be used: {message}",
            errors=[field_error("mapping", message, line=exc.line, mapping_field=exc.field)],
        ) from None
    if mapping.connector != body.type:
        raise invalid("mapping", f"written for connector type {mapping.connector}, not {body.type}")
    missing = [k for k in kind.credential_keys if not body.credentials.get(k)]
    if missing:
        raise Problem(
            422,
            f"a {body.type} connector needs credentials: {', '.join(missing)}",
            errors=[field_error(f"credentials.{k}", "required") for k in missing],
        )


async def post_connector(request: web.Request) -> web.Response:
    body = await read_body(request, ConnectorCreate)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    text = await asyncio.to_thread(_mapping_text, body.mapping)
    _check_connector(body, text)
    if not s.settings.allow_private_sources:
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
        base_url=body.base_url,
        credentials=body.credentials,
        mapping_text=text,
        now=s.clock(),
        settings=body.settings,
        interval_seconds=body.interval_seconds,
        max_delete_share=body.max_delete_share,
    )
    out = connector_out(record, mapping)
    return model_response(out, 201, {"Location": location(request, record.id)})


async def get_connector(request: web.Request) -> web.Response:
    m = request.match_info
    record = await store_call(services_of(request).store.get_connector, m["tenant"], m["connector"])
    return model_response(connector_out(record))


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
    instruction = await store_call(
        grant,
        s.store,
        tenant=m["tenant"],
        connector=m["connector"],
        granted_by=body.granted_by,
        purpose=body.purpose,
        now=now,
        valid_until=body.valid_until,
    )
    out = instruction_out(instruction, request)
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
    """Revoke at once; `revoked_by` comes from the JSON body or the query (default admin-api)."""
    if not request.query.keys() <= {"revoked_by"}:
        raise invalid("query", "only `revoked_by` may be given")
    # The query is checked even when a body (which wins) is given: nothing sent is ignored.
    from_query = query_params(request, InstructionRevoke)
    if request.can_read_body:
        body = await read_body(request, InstructionRevoke, optional=True)
    else:
        body = from_query
    m = request.match_info
    s = services_of(request)
    try:
        found = await asyncio.to_thread(s.store.get_instruction, m["instruction"])
    except NotFound:
        found = None
    if found is None or (found.tenant, found.connector) != (m["tenant"], m["connector"]):
        raise Problem(404, f"not found: instruction {m['instruction']} of this connector")
    revoked = await store_call(s.store.revoke_instruction, found.id, body.revoked_by, s.clock())
    return model_response(instruction_out(revoked, request))


# --------------------------------------------------------------------------- consumers


async def post_consumer(request: web.Request) -> web.Response:
    body = await read_body(request, ConsumerCreate)
    s = services_of(request)
    consumer, token = await store_call(
        create_consumer, s.store, tenant=request.match_info["tenant"], name=body.name, now=s.clock()
    )
    out = ConsumerCreated(
        id=consumer.id,
        tenant=consumer.tenant,
        name=consumer.name,
        created_at=consumer.created_at,
        token=token,
    )
    headers = {"Cache-Control": "no-store", "Location": location(request, consumer.id)}
    return model_response(out, 201, headers)


# --------------------------------------------------------------------------- wiring

T = "/tenants/{tenant}"
C = T + "/connectors/{connector}"


def make_admin_app() -> web.Application:
    """The `/admin/v1` sub-application (mounted by `gateway.api.app.make_app`)."""
    app = web.Application(middlewares=[admin_auth])
    r = app.router
    r.add_post("/tenants", post_tenant)
    r.add_get(T, get_tenant, allow_head=False)
    r.add_post(T + "/connectors", post_connector)
    r.add_get(T + "/connectors", list_connectors, allow_head=False)
    r.add_get(C, get_connector, allow_head=False)
    r.add_post(C + "/instructions", post_instruction)
    r.add_get(C + "/instructions", list_instructions, allow_head=False)
    r.add_delete(C + "/instructions/{instruction}", revoke_instruction)
    r.add_post(T + "/consumers", post_consumer)
    admin_ops.add_routes(r, tenant_path=T, connector_path=C)
    return app
