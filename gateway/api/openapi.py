"""The OpenAPI 3.1 document, served at `/openapi.json`: spec-first.

Paths and operations are written out here by hand, so the platform-facing contract is
reviewable in one file; the schemas come from the pydantic models in `gateway.api.models`
(`model_json_schema`), so request validation, response serialisation and the document
cannot drift apart on field level. The tests check the other direction: the app's route
table and this document's paths and methods are the same set, and real responses validate
against the schemas documented for their status.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.api import account_models as am
from gateway.api import destination_models as dm
from gateway.api import ledger_models as lm
from gateway.api import models as m
from gateway.api import retention_models as rm
from gateway.api import schema_rules
from gateway.api import subject_models as sm
from gateway.api.problems import PROBLEM_JSON

_REF: Final = "#/components/schemas/{model}"
_REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    m.TenantCreate, m.ConnectorCreate, m.InstructionCreate,
    m.SyncCreate, m.ConsumerCreate,
)  # fmt: skip
_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    m.TenantOut, m.ConnectorOut, m.ConnectorList, m.InstructionOut, m.InstructionList,
    m.RunOut, m.RunList, m.LedgerPage, m.InclusionProofOut, m.ConsumerCreated, m.FeedPage,
    m.Health, m.ProblemDetails, m.ScimTokenCreated,
)  # fmt: skip
_PROBLEMS: Final = {
    400: (
        "Malformed request (bad JSON, a key or parameter given twice, two Authorization "
        "headers, a bad cursor)"
    ),
    401: "Missing or wrong bearer token",
    403: "The token may not access this tenant",
    404: "No such resource (within this tenant and connector)",
    408: "The request body did not arrive in time",
    409: "Conflict with the current state",
    412: "The resource changed since the version If-Match names; `changed` says what",
    413: "Request body too large",
    422: "Validation failed; `errors` names each field",
    500: "Unexpected failure (generic detail; nothing of the request is echoed)",
    502: (
        "The source failed; `code` is the connector error kind (auth, unavailable, "
        "too_large, config, malformed, rate_limited, refused); no response body is quoted"
    ),
    503: "Not ready",
}
Security = list[dict[str, list[str]]]
ADMIN: Final[Security] = [{"adminBearer": []}]
FEED: Final[Security] = [{"feedBearer": []}]
#: Open unless `metrics_token` is set; then a bearer token is required.
METRICS: Final[Security] = [{}, {"metricsBearer": []}]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": _PROBLEMS[code],
            "content": {PROBLEM_JSON: {"schema": _ref(m.ProblemDetails)}},
        }
        for code in (*statuses, 500)
    }


def _path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}  # fmt: skip


def _query(model: type[BaseModel], *names: str) -> list[dict[str, Any]]:
    props = model.model_json_schema()["properties"]
    return [{"name": n, "in": "query", "required": False, "schema": props[n]} for n in names]


def _op(
    op_id: str,
    summary: str,
    ok: tuple[int, type[BaseModel], str],
    problems: tuple[int, ...],
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
    security: Security = ADMIN,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status, model, description = ok
    success = _json(model, description)
    if headers:
        success["headers"] = headers
    if security:
        problems = (*problems, 400)  # two Authorization headers
    if security == ADMIN:
        problems = (*problems, 401, 403)  # every admin route checks role and tenant
    if body is not None:
        problems = (*problems, 408)
    problems = tuple(sorted(set(problems)))
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": {str(status): success, **_problems(*problems)},
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


_LOCATION: Final = {"Location": {"schema": {"type": "string"}, "description": "the new resource"}}
_WRITE: Final = (400, 401, 403, 404, 409, 413, 422)
_ETAG: Final = {"ETag": {"schema": {"type": "string"},
                         "description": "the connector's version, for If-Match"}}  # fmt: skip
_IF_MATCH: Final = {
    "name": "If-Match", "in": "header", "required": False,
    "description": "the ETag the edit is based on: if the connector changed since, the edit "
    "is refused with 412 and `changed` names the properties that moved on",
    "schema": {"type": "string", "maxLength": 512},
}  # fmt: skip
_READ: Final = (401, 403, 404)


def _paths() -> dict[str, Any]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    connector = _path_param("connector", "connector id")
    t, c = "/admin/v1/tenants/{tenant}", "/admin/v1/tenants/{tenant}/connectors/{connector}"
    tc = [tenant, connector]
    return {
        "/healthz": {"get": _op("getHealth", "The process is up", (200, m.Health, "Up"), (),
                                tag="ops", security=[])},
        "/readyz": {"get": _op("getReadiness", "The store answers", (200, m.Health, "Ready"),
                               (503,), tag="ops", security=[])},
        "/metrics": {"get": {
            "operationId": "getMetrics",
            "summary": "Prometheus metrics (no personal data in labels); behind a bearer "
                       "token when the gateway sets `metrics_token`",
            "tags": ["ops"], "security": METRICS,
            "responses": {"200": {"description": "Prometheus text exposition",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_problems(400, 401)},
        }},
        "/openapi.json": {"get": {
            "operationId": "getOpenApi",
            "summary": "This document", "tags": ["ops"], "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/admin/v1/tenants": {"post": _op(
            "createTenant", "Create a tenant", (201, m.TenantOut, "Created"),
            (400, 401, 409, 413, 422), tag="tenants", body=m.TenantCreate, headers=_LOCATION)},
        t: {"get": _op("getTenant", "A tenant", (200, m.TenantOut, "The tenant"), _READ,
                       tag="tenants", params=[tenant])},
        t + "/connectors": {
            "post": _op(
                "createConnector",
                "Add a connector; the answer previews which fields will pass (no credentials)",
                (201, m.ConnectorOut, "Created"), _WRITE, tag="connectors",
                body=m.ConnectorCreate, params=[tenant], headers=_LOCATION),
            "get": _op("listConnectors", "The tenant's connectors (no credentials)",
                       (200, m.ConnectorList, "Connectors"), _READ, tag="connectors",
                       params=[tenant]),
        },
        c: {"get": _op("getConnector", "A connector (no credentials); its ETag is the version "
                       "a PATCH can name in If-Match",
                       (200, m.ConnectorOut, "The connector"), _READ, tag="connectors",
                       params=tc, headers=_ETAG)},
        c + "/instructions": {
            "post": _op("grantInstruction",
                        "Grant an instruction for the connector's current mapping",
                        (201, m.InstructionOut, "Granted"), _WRITE, tag="instructions",
                        body=m.InstructionCreate, params=tc, headers=_LOCATION),
            "get": _op("listInstructions", "The connector's instructions",
                       (200, m.InstructionList, "Instructions"), _READ, tag="instructions",
                       params=tc),
        },
        c + "/instructions/{instruction}": {"delete": _op(
            "revokeInstruction",
            "Revoke an instruction (takes effect before the next page fetched or served)",
            (200, m.InstructionOut, "Revoked"), (400, 401, 403, 404, 422), tag="instructions",
            params=[*tc, _path_param("instruction", "instruction id")])},
        c + "/syncs": {
            "post": _op("startSync", "Start a sync (refused without an active instruction)",
                        (202, m.RunOut, "Started; poll the Location"), _WRITE, tag="syncs",
                        body=m.SyncCreate, body_required=False, params=tc, headers=_LOCATION),
            "get": _op("listSyncs", "Recent runs, newest first", (200, m.RunList, "Runs"),
                       (*_READ, 400, 422), tag="syncs",
                       params=[*tc, *_query(m.RunsQuery, "limit")]),
        },
        c + "/syncs/{run}": {"get": _op(
            "getSync", "A run: status, counts, error, pages", (200, m.RunOut, "The run"), _READ,
            tag="syncs", params=[*tc, _path_param("run", "run id")])},
        t + "/ledger": {"get": _op(
            "listLedgerEntries",
            "Ledger entries with leaf hashes, and the latest signed checkpoint",
            (200, m.LedgerPage, "Entries"), (*_READ, 400, 422), tag="ledger",
            params=[tenant, *_query(m.LedgerQuery, "after", "limit")])},
        t + "/ledger/proof/{index}": {"get": _op(
            "getInclusionProof", "Inclusion proof of one entry against a signed checkpoint",
            (200, m.InclusionProofOut, "The proof"), _READ, tag="ledger",
            params=[tenant, _path_param("index", "entry index", r"^\d{1,18}$")])},
        t + "/consumers": {"post": _op(
            "createConsumer", "Add a feed consumer; its token is shown once",
            (201, m.ConsumerCreated, "Created"), (400, 401, 404, 413, 422), tag="consumers",
            body=m.ConsumerCreate, params=[tenant], headers=_LOCATION)},
        "/feed/v1/tenants/{tenant}/events": {"get": _op(
            "listFeedEvents",
            "Next page of minimised changes; events of connectors without an active "
            "instruction are withheld and counted",
            (200, m.FeedPage, "A page (possibly empty); poll again with next_cursor"),
            (400, 401, 403, 404, 422), tag="feed", security=FEED,
            params=[tenant, _cursor_param(), *_query(m.FeedQuery, "limit")])},
    }  # fmt: skip


# --------------------------------------------------------------------------- lifecycle
# Routes added for connector and consumer lifecycle, kept apart so the table above stays as
# it was; `_with_lifecycle` merges them in.

_LIFECYCLE_REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    m.ConnectorUpdate, m.MappingCandidate,
)  # fmt: skip
_LIFECYCLE_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    m.TenantList, m.ConnectorChanged, m.MappingChange, m.ConnectorDeleted, m.ConsumerOut,
    m.ConsumerList,
)  # fmt: skip

_EVENT_SEMANTICS: Final = (
    "Events are applied per `subject_id`, in `seq` order. `subject.upserted` carries the "
    "subject's complete minimised state (`data`; a field the instruction does not cover is "
    "null): replace what you hold. `subject.deleted` has `data: null` and means the person "
    "no longer comes from this source (left, removed at the source, or the connector was "
    "deleted with subjects=delete): remove them. `subject.erased` (also `data: null`) means "
    "the controller had the person erased: remove everything of theirs from this source; it "
    "is sent even while the source's other events are withheld, and the gateway stores and "
    "sends nothing more about them. Delivery is at least once: deduplicate by "
    "`id` (unique per event, also across re-emissions of the same state) or keep the last "
    "`seq` applied; `seq` is per tenant and only grows. `subject_id` is an HMAC under the "
    "tenant's key of the mapping's identity namespace and the source's identifier: one "
    "person in two sources of different kinds (an HR and a CRM system) has two subject ids, "
    "and the gateway does not join them (it would need the identifiers it must not send). "
    "Hold records per (`source`, `subject_id`): `source` names the connector, and a "
    "`subject.deleted` from one source says nothing about another. After a gap in which "
    "events were withheld (instruction revoked, expired, or mapping not yet authorised), "
    "a new grant re-emits each subject's current "
    "state as fresh events, so polling on converges. A cursor of another tenant's feed is "
    "a 409 `cursor-other-tenant`, one past the newest event a 409 `cursor-beyond-head` "
    "(with `head_cursor`)."
)


def _lifecycle_paths() -> dict[str, dict[str, Any]]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    connector = _path_param("connector", "connector id")
    consumer = _path_param("consumer", "consumer id")
    t, c = "/admin/v1/tenants/{tenant}", "/admin/v1/tenants/{tenant}/connectors/{connector}"
    tc = [tenant, connector]
    subjects = {
        "name": "subjects", "in": "query", "required": True,
        "description": m.ConnectorDeleteQuery.model_fields["subjects"].description,
        "schema": {"type": "string", "enum": ["delete", "keep"]},
    }  # fmt: skip
    return {
        "/admin/v1/tenants": {"get": _op(
            "listTenants", "Every tenant", (200, m.TenantList, "Tenants"), (401,),
            tag="tenants")},
        c: {
            "patch": _op(
                "updateConnector",
                "Change the mapping, credentials (never returned), interval or delete share, "
                "or pause/resume; a new mapping needs a new instruction before syncing",
                (200, m.ConnectorChanged, "Changed; mapping_change says what changes"),
                (*_WRITE, 412), tag="connectors", body=m.ConnectorUpdate,
                params=[*tc, _IF_MATCH], headers=_ETAG),
            "delete": _op(
                "deleteConnector",
                "Stop and delete the connector: instructions revoked, running sync stopped; "
                "`subjects` says what happens to the subjects already delivered",
                (200, m.ConnectorDeleted, "Deleted"), (400, 401, 404, 422), tag="connectors",
                params=[*tc, subjects]),
        },
        c + "/mapping-preview": {"post": _op(
            "previewMappingChange",
            "What a mapping would change compared with the connector's (nothing is changed)",
            (200, m.MappingChange, "The difference"), _WRITE, tag="connectors",
            body=m.MappingCandidate, params=tc)},
        t + "/consumers": {"get": _op(
            "listConsumers", "The tenant's feed consumers (no tokens)",
            (200, m.ConsumerList, "Consumers"), _READ, tag="consumers", params=[tenant])},
        t + "/consumers/{consumer}": {"delete": _op(
            "revokeConsumer", "Revoke a feed consumer: its token stops working at once",
            (200, m.ConsumerOut, "Revoked"), _READ, tag="consumers",
            params=[tenant, consumer])},
        c + "/scim-token": {"post": _op(
            "issueScimToken",
            "A SCIM connector's bearer token (shown once; the previous one stops working at "
            "once) and the tenant URL to give its identity provider",
            (201, m.ScimTokenCreated, "The new token"), (401, 404, 409), tag="connectors",
            params=tc)},
        t + "/consumers/{consumer}/token": {"post": _op(
            "rotateConsumerToken",
            "A new token for the consumer, shown once; the old one stops working at once",
            (200, m.ConsumerCreated, "The new token"), (401, 404, 409), tag="consumers",
            params=[tenant, consumer])},
    }  # fmt: skip


_ACCOUNT_REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    am.StepUp, am.TokenCreate, am.InvitationCreate, am.OperatorInvitationCreate, am.OidcSet,
)  # fmt: skip
_ACCOUNT_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    am.StepUpDone, am.Me, am.TokenOut, am.TokenCreated, am.TokenList, am.AccountOut,
    am.InvitationCreated, am.AccountList, am.OidcOut,
)  # fmt: skip


def _account_paths() -> dict[str, dict[str, Any]]:
    tenant = _path_param("tenant", "tenant id")
    account = _path_param("account", "account id")
    t = "/admin/v1/tenants/{tenant}"
    invite = "Invite: a one-time link (shown once) for the invitee to set a password and "
    return {
        "/admin/v1/me": {"get": _op("getMe", "Who this token acts as",
                                    (200, am.Me, "The principal"), (), tag="accounts")},
        "/admin/v1/step-up": {"post": _op(
            "stepUp", "Give a fresh authenticator code: for five minutes this credential may "
            "grant and revoke authorisations, change mappings or credentials, create consumers",
            (200, am.StepUpDone, "Stepped up"), (413, 422), tag="accounts", body=am.StepUp)},
        "/admin/v1/tokens": {
            "get": _op("listTokens", "API tokens (an admin sees the tenant's)",
                       (200, am.TokenList, "Tokens"), (), tag="accounts"),
            "post": _op("createToken", "A token for automation, with a role no higher than "
                        "the account's; shown once", (201, am.TokenCreated, "Created"),
                        (413, 422), tag="accounts", body=am.TokenCreate, headers=_LOCATION),
        },
        "/admin/v1/tokens/{token}": {"delete": _op(
            "revokeToken", "Revoke a token at once", (200, am.TokenOut, "Revoked"), (404,),
            tag="accounts", params=[_path_param("token", "token id")])},
        "/admin/v1/operators": {
            "post": _op("inviteOperator", invite + "enrol an authenticator (the bootstrap "
                        "token may do this until the first operator has enrolled)",
                        (201, am.InvitationCreated, "Invited"), (409, 413, 422),
                        tag="accounts", body=am.OperatorInvitationCreate, headers=_LOCATION),
            "get": _op("listOperators", "The operators", (200, am.AccountList, "Operators"),
                       (), tag="accounts"),
        },
        "/admin/v1/operators/{account}": {"delete": _op(
            "disableOperator", "Disable an operator (sessions end, tokens revoked)",
            (200, am.AccountOut, "Disabled"), (404,), tag="accounts", params=[account])},
        t + "/accounts": {
            "post": _op("inviteAccount", invite + "enrol an authenticator",
                        (201, am.InvitationCreated, "Invited"), (404, 409, 413, 422),
                        tag="accounts", body=am.InvitationCreate, params=[tenant],
                        headers=_LOCATION),
            "get": _op("listAccounts", "The tenant's accounts (the register that maps the "
                       "ledger's account ids to people)", (200, am.AccountList, "Accounts"),
                       (404,), tag="accounts", params=[tenant]),
        },
        t + "/oidc": {
            "get": _op("getOidc", "The tenant's identity provider for console sign-in",
                       (200, am.OidcOut, "Configured"), (404,), tag="accounts", params=[tenant]),
            "put": _op("setOidc", "Let the tenant's people sign in through its own identity "
                       "provider (OpenID Connect, code flow with PKCE); the secret is sealed "
                       "and never returned; needs a step-up", (200, am.OidcOut, "Configured"),
                       (404, 413, 422), tag="accounts", body=am.OidcSet, params=[tenant]),
            "delete": _op("removeOidc", "Stop sign-in through the identity provider",
                          (200, am.OidcOut, "Removed"), (404,), tag="accounts", params=[tenant]),
        },
        t + "/accounts/{account}": {"delete": _op(
            "disableAccount", "Disable an account (sessions end, tokens revoked)",
            (200, am.AccountOut, "Disabled"), (404,), tag="accounts",
            params=[tenant, account])},
    }  # fmt: skip


def _with_lifecycle(paths: dict[str, Any]) -> dict[str, Any]:
    for path, ops in _lifecycle_paths().items():
        paths.setdefault(path, {}).update(ops)
    for path, ops in _account_paths().items():
        paths.setdefault(path, {}).update(ops)
    feed = paths["/feed/v1/tenants/{tenant}/events"]["get"]
    feed["description"] = _EVENT_SEMANTICS
    feed["responses"]["409"] = {
        "description": (
            "The cursor is of another tenant's feed, or beyond the newest event "
            "(`head_cursor` says where that is)"
        ),
        "content": {PROBLEM_JSON: {"schema": _ref(m.ProblemDetails)}},
    }
    return paths


# --------------------------------------------------------------------------- live preview
# Appended for the live preview (`gateway.api.preview`); `_with_previews` merges them in.

_PREVIEW_REQUESTS: Final[tuple[type[BaseModel], ...]] = (m.PreviewCreate,)
_PREVIEW_RESPONSES: Final[tuple[type[BaseModel], ...]] = (m.PreviewOut,)
_NO_STORE: Final = {
    "Cache-Control": {"schema": {"type": "string", "const": "no-store"},
                      "description": "the result holds personal data: never cached"},
}  # fmt: skip


def _preview_paths() -> dict[str, dict[str, Any]]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    connector = _path_param("connector", "connector id")
    preview = _path_param("preview", "preview id (from the Location of the POST)")
    c = "/admin/v1/tenants/{tenant}/connectors/{connector}"
    return {
        c + "/preview": {"post": _op(
            "createPreview",
            "Preview the connector's mapping (or a proposed one) on one small page of the "
            "source's records, before any authorisation: fields, minimised sample people, "
            "dropped and unseen source fields, quarantined records; recorded in the ledger, "
            "nothing else written; the result is kept 10 minutes; one at a time per "
            "connector (409 `preview-busy`)",
            (201, m.PreviewOut, "The preview"), (*_WRITE, 502), tag="previews",
            body=m.PreviewCreate, body_required=False, params=[tenant, connector],
            headers={**_LOCATION, **_NO_STORE})},
        c + "/previews/{preview}": {"get": _op(
            "getPreview", "A preview made within the last 10 minutes",
            (200, m.PreviewOut, "The preview"), _READ, tag="previews",
            params=[tenant, connector, preview], headers=_NO_STORE)},
    }  # fmt: skip


def _with_previews(paths: dict[str, Any]) -> dict[str, Any]:
    for path, ops in _preview_paths().items():
        paths.setdefault(path, {}).update(ops)
    return paths


def _cursor_param() -> dict[str, Any]:
    return {
        "name": "after", "in": "query", "required": False,
        "description": "a `next_cursor` this feed handed out; anything else is a 400",
        "schema": {"type": "string", "pattern": schema_rules.CURSOR_PATTERN},
    }  # fmt: skip


# --------------------------------------------------------------------------- checkpoints
# Routes that take signed checkpoints out of the operator's hands (`gateway.api.ledger_routes`).

_LEDGER_REQUESTS: Final[tuple[type[BaseModel], ...]] = (lm.CheckpointPushSet,)
_LEDGER_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    lm.CheckpointPage, lm.CheckpointOut, lm.CheckpointPushOut, lm.BreachScopeOut,
    lm.BreachAuthorisationOut, lm.BreachLedgerPart, lm.ProcessingRecordOut,
    lm.RecordProcessor, lm.RecordController, lm.RecordInstruction, lm.RecordActivity,
    lm.RecordRecipient, lm.RecordAnchor,
)  # fmt: skip


def _ledger_paths() -> dict[str, dict[str, Any]]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    t = "/admin/v1/tenants/{tenant}"
    return {
        t + "/checkpoints": {"get": _op(
            "listCheckpoints",
            "The log's signed checkpoints written after the one with seq `after`, oldest "
            "first (paged): an auditor keeps them to catch a rewritten history later",
            (200, lm.CheckpointPage, "Checkpoints"), (*_READ, 400, 422), tag="ledger",
            params=[tenant, *_query(lm.CheckpointsQuery, "after", "limit")])},
        t + "/reports/breach": {"get": _op(
            "getBreachScope",
            "What the tenant's ledger says moved in a window (GDPR Art. 33(3)(a)): data "
            "subjects (count and keyed ids), records, data categories, sources, destinations "
            "and the authorisations they moved under",
            (200, lm.BreachScopeOut, "The scope"), (*_READ, 422), tag="ledger",
            params=[tenant, *_breach_params()])},
        t + "/reports/processing-record": {"get": _op(
            "getProcessingRecord",
            "The processor's record of processing for this controller (GDPR Art. 30(2)): "
            "processor and controller, the connectors and the authorisations they run under, "
            "data categories, recipients, third-country transfers, security measures, "
            "retention; `format=markdown` for people (text/markdown)",
            (200, lm.ProcessingRecordOut, "The record"), (*_READ, 422), tag="ledger",
            params=[tenant, *_query(lm.RecordQuery, "format")])},
        t + "/checkpoints/latest": {"get": _op(
            "getLatestCheckpoint", "The log's latest signed checkpoint (404 while it has none)",
            (200, lm.CheckpointOut, "The checkpoint"), _READ, tag="ledger", params=[tenant])},
        t + "/checkpoint-push": {
            "put": _op(
                "setCheckpointPush",
                "POST every new signed checkpoint (text/plain, the note as signed) to this "
                "URL, oldest first, with retries; recorded in the ledger (without the URL)",
                (200, lm.CheckpointPushOut, "Set; pushing starts from the latest checkpoint"),
                (400, 401, 404, 413, 422), tag="ledger", body=lm.CheckpointPushSet,
                params=[tenant]),
            "get": _op(
                "getCheckpointPush", "Where checkpoints are pushed, and how far that got",
                (200, lm.CheckpointPushOut, "The push"), _READ, tag="ledger", params=[tenant]),
            "delete": _op(
                "clearCheckpointPush", "Stop pushing checkpoints; recorded in the ledger",
                (200, lm.CheckpointPushOut, "Cleared (what it was)"), _READ, tag="ledger",
                params=[tenant]),
        },
    }  # fmt: skip


def _breach_params() -> list[dict[str, Any]]:
    props = lm.BreachQuery.model_json_schema(by_alias=True)["properties"]
    required = {"from", "to"}
    return [
        {"name": n, "in": "query", "required": n in required, "schema": props[n]}
        for n in ("from", "to", "connector", "ids")
    ]


# --------------------------------------------------------------------------- data subjects
# Finding a person and exporting what is held (`gateway.api.subject_routes`).

_SUBJECT_REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    sm.SubjectSearch, sm.EmailSearch, sm.IdentitySearch, sm.SubjectExportRequest,
    sm.SubjectEraseRequest, sm.SubjectRectifyRequest, sm.RequestCreate, sm.RequestClose,
    sm.CompletedClose,
    sm.RejectedClose,
)  # fmt: skip
_SUBJECT_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    sm.SubjectsFoundOut, sm.SubjectFoundOut, sm.SubjectExportOut, sm.PersonData, sm.HeldOut,
    sm.HeldEventOut, sm.TransferOut, sm.ErasureOut, sm.ErasedOut, sm.SuppressionOut,
    sm.SuppressionList, sm.RestrictedOut, sm.RequestOut, sm.RequestList, sm.ErasureReceipt,
    sm.RectificationOut, sm.SourceOfRecordOut, sm.RectifySyncOut,
)  # fmt: skip


def _subject_paths() -> dict[str, dict[str, Any]]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    t = "/admin/v1/tenants/{tenant}"
    export = _op(
        "exportSubject",
        "What Sluis holds about a person's keyed ids and where it went (GDPR Art. 15, 20): "
        "the data per source as it stands, every stored change, every transfer that carried "
        "them; `format: csv` for one CSV table. Recorded in the ledger; 404 when nothing is "
        "held about them",
        (200, sm.SubjectExportOut, "The export"), (*_READ, 413, 422), tag="subjects",
        body=sm.SubjectExportRequest, params=[tenant])  # fmt: skip
    export["responses"]["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    request = _path_param("request", "request id", "^dsr_[0-9a-f]{16}$")
    return {
        t + "/subjects/search": {"post": _op(
            "searchSubjects",
            "Find a person by work email (normalised as the egress schema does) or by their "
            "identity in a source (the connector's identity fields, in order): their keyed "
            "ids and the sources holding them. Recorded in the ledger (the count, never the "
            "email)",
            (200, sm.SubjectsFoundOut, "The keyed ids found"), (*_READ, 413, 422),
            tag="subjects", body=sm.SubjectSearch, params=[tenant])},
        t + "/subjects/export": {"post": export},
        "/feed/v1/tenants/{tenant}/erasures/{subject}/ack": {"post": _op(
            "acknowledgeErasure",
            "A feed consumer confirms it removed an erased person (after their "
            "`subject.erased` event): the receipt of this destination, shown on the "
            "suppression and on the erasure request; a repeat answers the first time again; "
            "404 when the person is not erased",
            (200, sm.ErasureReceipt, "The receipt"), (400, 401, 403, 404), tag="feed",
            security=FEED,
            params=[tenant, _path_param("subject", "keyed subject id", "^[0-9a-f]{32}$")])},
        t + "/terminate": {"post": _op(
            "terminateTenant",
            "End a tenant's contract (operators): every authorisation revoked at once, fetches "
            "under way stopped, nothing authorisable any more; its data is kept for "
            "`tenant_grace_days` (90), then crypto-shredded; 409 when terminated already; on "
            "the ledger",
            (200, m.TenantOut, "Terminated"), (401, 403, 404, 409), tag="tenants",
            params=[tenant])},
        t + "/destroy": {"post": _op(
            "destroyTenant",
            "Crypto-shred a terminated tenant once its grace period is over (operators, a "
            "fresh second factor needed): its subject key overwritten, every row of its data, "
            "accounts and secrets deleted; its ledger kept, ending with a signed "
            "`tenant.destroyed` entry; 409 before `destroy_after`",
            (200, m.TenantOut, "Destroyed"), (401, 403, 404, 409), tag="tenants",
            params=[tenant])},
        t + "/subjects/rectify": {"post": _op(
            "rectifySubject",
            "Rectify a person (GDPR Art. 16): where each passed field of theirs comes from "
            "(the source connectors holding them and the source fields behind each egress "
            "field: correct the record there, the system of record), and a sync of each such "
            "source's changes since its last run to bring the correction through; 404 when "
            "Sluis holds nothing about them; on the ledger",
            (200, sm.RectificationOut, "Where to correct, and the syncs started"),
            (401, 403, 404, 413, 422), tag="subjects",
            body=sm.SubjectRectifyRequest, params=[tenant])},
        t + "/subjects/erase": {"post": _op(
            "eraseSubject",
            "Erase a person (GDPR Art. 17; a fresh second factor needed): their stored data "
            "deleted, a `subject.erased` event to every destination per source that held them, "
            "and a suppression that keeps later syncs from bringing them back; on the ledger",
            (200, sm.ErasureOut, "Erased"), (401, 403, 404, 413, 422), tag="subjects",
            body=sm.SubjectEraseRequest, params=[tenant])},
        t + "/subjects/restrict": {"post": _op(
            "restrictSubject",
            "Restrict a person (GDPR Art. 18; a fresh second factor needed): nothing more is "
            "stored or delivered about them and the feed withholds what it holds, but nothing "
            "is deleted until the restriction is lifted or they are erased; on the ledger",
            (200, sm.RestrictedOut, "Restricted"), (401, 403, 404, 413, 422), tag="subjects",
            body=sm.SubjectEraseRequest, params=[tenant])},
        t + "/requests": {
            "post": _op(
                "openRequest",
                "Enter a data-subject request the controller received (its kind, when it "
                "arrived, the keyed ids if already found): due `dsr_due_days` after arrival; "
                "on the ledger",
                (201, sm.RequestOut, "Entered"), (401, 403, 404, 413, 422), tag="requests",
                body=sm.RequestCreate, params=[tenant], headers=_LOCATION),
            "get": _op(
                "listRequests", "The tenant's data-subject requests, oldest due first",
                (200, sm.RequestList, "Requests"), (*_READ, 422), tag="requests",
                params=[tenant, *_query(sm.RequestsQuery, "state")]),
        },
        t + "/requests/{request}": {"get": _op(
            "getRequest", "A data-subject request",
            (200, sm.RequestOut, "The request"), _READ, tag="requests",
            params=[tenant, request])},
        t + "/requests/{request}/close": {"post": _op(
            "closeRequest",
            "Close a request with an outcome code (completed: fulfilled or nothing-held; "
            "rejected: the ground); 409 when it is closed already; on the ledger",
            (200, sm.RequestOut, "Closed"), (401, 403, 404, 409, 413, 422), tag="requests",
            body=sm.RequestClose, params=[tenant, request])},
        t + "/suppressions": {"get": _op(
            "listSuppressions",
            "People whose data is no longer stored or delivered (erased or restricted), by "
            "keyed id",
            (200, sm.SuppressionList, "Suppressions"), _READ, tag="subjects",
            params=[tenant])},
        t + "/suppressions/{subject}": {"delete": _op(
            "liftSuppression",
            "Let a suppressed person be processed again (a fresh second factor needed): an "
            "erased one comes back as new with the next sync, a restricted one's newest state "
            "is sent again at once; on the ledger",
            (200, sm.SuppressionOut, "Lifted (what it was)"), _READ, tag="subjects",
            params=[tenant, _path_param("subject", "keyed subject id", "^[0-9a-f]{32}$")])},
    }  # fmt: skip


def _with_subjects(paths: dict[str, Any]) -> dict[str, Any]:
    for path, ops in _subject_paths().items():
        paths.setdefault(path, {}).update(ops)
    return paths


def _with_ledger(paths: dict[str, Any]) -> dict[str, Any]:
    ledger = _ledger_paths()
    record = ledger["/admin/v1/tenants/{tenant}/reports/processing-record"]["get"]
    record["responses"]["200"]["content"]["text/markdown"] = {"schema": {"type": "string"}}
    for path, ops in ledger.items():
        paths.setdefault(path, {}).update(ops)
    return paths


# --------------------------------------------------------------------------- retention
# A tenant's retention policy (`gateway.api.retention_routes`).

_RETENTION_REQUESTS: Final[tuple[type[BaseModel], ...]] = (rm.RetentionSet,)
_RETENTION_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    rm.RetentionPolicyOut, rm.RetentionDays,
)  # fmt: skip


def _with_retention(paths: dict[str, Any]) -> dict[str, Any]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    paths["/admin/v1/tenants/{tenant}/retention"] = {
        "get": _op(
            "getRetentionPolicy",
            "How long Sluis keeps this tenant's data, rule by rule: the days in force, the "
            "gateway's defaults, the maxima the platforms' privacy statements allow",
            (200, rm.RetentionPolicyOut, "The policy"), _READ, tag="retention",
            params=[tenant]),
        "put": _op(
            "setRetentionPolicy",
            "Set the tenant's retention policy (a rule left out follows the default; none "
            "may exceed its maximum); the retention job applies it at its next run; on the "
            "ledger",
            (200, rm.RetentionPolicyOut, "Set"), (401, 404, 413, 422), tag="retention",
            body=rm.RetentionSet, body_required=False, params=[tenant]),
    }  # fmt: skip
    return paths


# --------------------------------------------------------------------------- destinations
# Push destinations (`gateway.api.destination_routes`).

_DESTINATION_REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    dm.DestinationCreate, dm.DestinationChange, dm.SecretRotate,
)  # fmt: skip
_DESTINATION_RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    dm.DestinationOut, dm.DestinationCreated, dm.DestinationList, dm.DeadLetterPage,
    dm.ReplayOut,
)  # fmt: skip


def _with_destinations(paths: dict[str, Any]) -> dict[str, Any]:
    tenant = _path_param("tenant", "tenant id", m.TENANT_ID_PATTERN)
    dest = _path_param("destination", "destination id", "^dst_[0-9a-f]{16}$")
    t = "/admin/v1/tenants/{tenant}/destinations"
    d = t + "/{destination}"
    paths[t] = {
        "post": _op(
            "createDestination",
            "A push destination (a fresh second factor needed), under the same authorisations "
            "as the feed: `webhook`, the tenant's feed events POSTed in order in signed "
            "batches (Standard Webhooks), the signing secret shown once; or `scim`, people "
            "provisioned as SCIM Users on the platform's server with its bearer token; on "
            "the ledger",
            (201, dm.DestinationCreated, "Created"),
            (401, 404, 413, 422),
            tag="destinations",
            body=dm.DestinationCreate,
            params=[tenant],
            headers=_LOCATION,
        ),
        "get": _op(
            "listDestinations",
            "The tenant's push destinations and how far each got",
            (200, dm.DestinationList, "Destinations"),
            _READ,
            tag="destinations",
            params=[tenant],
        ),
    }
    paths[d] = {
        "get": _op(
            "getDestination",
            "A destination: its settings, cursor, lag, failures, dead letters",
            (200, dm.DestinationOut, "The destination"),
            _READ,
            tag="destinations",
            params=[tenant, dest],
        ),
        "patch": _op(
            "changeDestination",
            "Pause (its worker stops before the next attempt) or resume a destination, or "
            "change its event types, thin mode, batch size or dead-letter limits; on the ledger",
            (200, dm.DestinationOut, "Changed"),
            (401, 404, 413, 422),
            tag="destinations",
            body=dm.DestinationChange,
            params=[tenant, dest],
        ),
        "delete": _op(
            "deleteDestination",
            "Stop delivering and forget the destination; on the ledger",
            (200, dm.DestinationOut, "Deleted (what it was)"),
            _READ,
            tag="destinations",
            params=[tenant, dest],
        ),
    }
    paths[d + "/secret"] = {
        "post": _op(
            "rotateDestinationSecret",
            "A webhook's new signing secret, shown once (a fresh second factor needed); the "
            "current one stays valid for the overlap, requests meanwhile signed under both. "
            "A SCIM destination's new bearer token (`token`), from the platform; on the ledger",
            (200, dm.DestinationCreated, "Rotated"),
            (401, 404, 413, 422),
            tag="destinations",
            body=dm.SecretRotate,
            body_required=False,
            params=[tenant, dest],
        )
    }
    paths[d + "/dead-letters"] = {
        "get": _op(
            "listDeadLetters",
            "Events the destination could not take (retries ran out, or refused for good), "
            "by number; a person with one is parked, their later events queued behind it",
            (200, dm.DeadLetterPage, "Dead letters"),
            (*_READ, 400, 422),
            tag="destinations",
            params=[tenant, dest, *_query(dm.DeadLettersQuery, "after", "limit")],
        )
    }
    paths[d + "/dead-letters/replay"] = {
        "post": _op(
            "replayDeadLetters",
            "Have the destination's worker send its dead letters again, in order, before "
            "anything new (each under the authorisation in force then); on the ledger",
            (200, dm.ReplayOut, "Replay requested"),
            _READ,
            tag="destinations",
            params=[tenant, dest],
        )
    }
    return paths


@lru_cache(maxsize=2)
def _document(today: date) -> dict[str, Any]:
    requests = (
        *_REQUESTS, *_LIFECYCLE_REQUESTS, *_ACCOUNT_REQUESTS, *_LEDGER_REQUESTS, *_SUBJECT_REQUESTS,
        *_PREVIEW_REQUESTS, *_RETENTION_REQUESTS, *_DESTINATION_REQUESTS,
    )  # fmt: skip
    responses = (
        *_RESPONSES, *_LIFECYCLE_RESPONSES, *_ACCOUNT_RESPONSES, *_LEDGER_RESPONSES,
        *_SUBJECT_RESPONSES,
        *_PREVIEW_RESPONSES, *_RETENTION_RESPONSES, *_DESTINATION_RESPONSES,
    )  # fmt: skip
    models = [(x, "validation") for x in requests] + [(x, "serialization") for x in responses]
    _, defs = models_json_schema(models, ref_template=_REF)  # type: ignore[arg-type]
    schema_rules.apply(defs["$defs"], today)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluis privacy gateway",
            "version": __version__,
            "description": (
                "Admin API (tenants, connectors, instructions, syncs, ledger, consumers) and "
                "the pull feed of minimised changes. Errors are RFC 9457 problem details."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": _with_destinations(_with_retention(
            _with_subjects(_with_previews(_with_ledger(_with_lifecycle(_paths()))))
        )),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer",
                                "description": "an API token (`sluis_tok_...`) made by an "
                                "account; its role and tenant decide what it may do"},
                "feedBearer": {"type": "http", "scheme": "bearer",
                               "description": "a feed consumer's token (one tenant)"},
                "metricsBearer": {"type": "http", "scheme": "bearer",
                                  "description": "the gateway's `metrics_token`"},
            },
        },
    }  # fmt: skip


def document() -> dict[str, Any]:
    """The OpenAPI document (built once a day: `valid_until`'s pattern names tomorrow;
    callers must not mutate it)."""
    return _document(datetime.now(UTC).date())
