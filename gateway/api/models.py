"""The HTTP API's request and response shapes, as pydantic models.

They are the contract twice over: handlers validate bodies with the request models
(`extra="forbid"`: an unknown property is an error, not silently ignored, OWASP API3) and
serialise through the response models, and `gateway.api.openapi` publishes their JSON Schemas
as `components.schemas`. A response model lists exactly what may be shown: a connector's
credentials have no field anywhere in here, so no handler can return them by accident.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import yarl
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StringConstraints,
    Tag,
)

from connectors.registry import known_types
from gateway.ledger.audit import MAX_PURPOSE_LENGTH, purpose_problem
from gateway.minimise.egress import FORBIDDEN_CHARS, EgressData
from mappings import bundled_names

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
CONNECTOR_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_MAPPING_TEXT = 64 * 1024


def _plain_text(value: str) -> str:
    if FORBIDDEN_CHARS.search(value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


def _http_url(value: str) -> str:
    return _url(value, ("http", "https"))


def _source_url(value: str) -> str:
    return _url(value, ("http", "https", "sftp"))


def _url(value: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must be an {' or '.join(schemes)} URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; put them in `credentials`")
    if parts.fragment or (port is not None and not 0 < port < 65536):
        raise ValueError("must not have a fragment or a bad port")
    if FORBIDDEN_CHARS.search(value) or " " in value:
        raise ValueError("must not contain spaces or control characters")
    # The client parses it with yarl (IDNA included): what it cannot use is refused now,
    # not at the first sync.
    try:
        host = yarl.URL(value).raw_host or ""
    except ValueError:
        raise ValueError("not a valid URL (the host name cannot be encoded)") from None
    if not (_HOST_NAME.fullmatch(host) or _is_ip(host)):
        raise ValueError("the host is not a valid host name or IP address")
    return value


_HOST_NAME = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                        r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?")  # fmt: skip


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_CTRL = "\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
#: No control characters, and at least one that is not white space. Stated as a pattern so
#: that the OpenAPI document says what the validator enforces.
PLAIN_TEXT_PATTERN = rf"^[^{_CTRL}]*[^\s{_CTRL}][^{_CTRL}]*$"
#: http(s), a host without user:password, no fragment (the validator checks the rest).
HTTP_URL_PATTERN = r"^https?://[^\s/?#@\x00-\x1f\x7f]+(?:[/?][^\s#\x00-\x1f\x7f]*)?$"
#: A source's address: as `HTTP_URL_PATTERN`, or sftp:// for an SFTP export directory.
SOURCE_URL_PATTERN = r"^(?:https?|sftp)://[^\s/?#@\x00-\x1f\x7f]+(?:[/?][^\s#\x00-\x1f\x7f]*)?$"

PlainText = Annotated[
    str, StringConstraints(pattern=PLAIN_TEXT_PATTERN), AfterValidator(_plain_text)
]
TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
ConnectorId = Annotated[str, StringConstraints(pattern=CONNECTOR_ID_PATTERN)]
CredentialKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
SettingKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
HttpUrl = Annotated[
    str, StringConstraints(max_length=2048, pattern=HTTP_URL_PATTERN), AfterValidator(_http_url)
]
SourceUrl = Annotated[
    str,
    StringConstraints(max_length=2048, pattern=SOURCE_URL_PATTERN),
    AfterValidator(_source_url),
]


def _whole_number(value: Any) -> Any:
    """JSON Schema's `integer`, exactly: 3 and 3.0, never "3" or true (pydantic's lax mode
    takes strings, its strict mode refuses 3.0; the OpenAPI document promises neither)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)
    return value


#: Put after an int's constraints: a whole number as JSON Schema means it (`_whole_number`).
WHOLE: Final = BeforeValidator(_whole_number)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- requests


class TenantCreate(_Request):
    id: TenantId
    name: Annotated[PlainText, Field(max_length=200)]


class MappingText(_Request):
    """A mapping given inline, as the text of a TOML mapping file."""

    toml: Annotated[str, Field(min_length=1, max_length=MAX_MAPPING_TEXT)]


BundledName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$"),
    Field(json_schema_extra={"enum": bundled_names()}),
]


def _mapping_kind(value: Any) -> str:
    # Tags start with "#": `problems.from_validation` leaves them out of field names.
    return "#bundled" if isinstance(value, str) else "#inline"


class ConnectorCreate(_Request):
    id: ConnectorId
    type: Annotated[
        str, Field(min_length=1, max_length=64, json_schema_extra={"enum": known_types()})
    ]
    base_url: SourceUrl | None = Field(
        default=None,
        description="the source's API address (sftp://host[:port]/directory for an sftp "
        "source); required for every type but scim (an identity provider pushes to the "
        "gateway)",
    )
    credentials: Annotated[
        dict[CredentialKey, Annotated[str, Field(min_length=1, max_length=8192)]],
        Field(max_length=16),
    ] = Field(default_factory=dict)
    #: The name of a bundled mapping (e.g. "afas"), or a mapping's TOML text.
    mapping: Annotated[
        Annotated[BundledName, Tag("#bundled")] | Annotated[MappingText, Tag("#inline")],
        Discriminator(_mapping_kind),
    ]
    settings: Annotated[dict[SettingKey, JsonValue], Field(max_length=32)] = Field(
        default_factory=dict
    )
    interval_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600), WHOLE] = 3600
    max_delete_share: Annotated[float, Field(ge=0.0, le=1.0, strict=True)] = 0.2


def _ledger_purpose(value: str) -> str:
    problem = purpose_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class InstructionCreate(_Request):
    """Who grants is the authenticated principal (with a fresh step-up), never a field."""

    purpose: Annotated[
        PlainText,
        Field(
            max_length=MAX_PURPOSE_LENGTH,
            description="what the platform may use the data for; kept in the ledger forever, "
            "so an email address or a long number in it is refused",
            json_schema_extra={"not": {"pattern": r"\S@\S|\d[\d .-]{6,}\d"}},
        ),
        AfterValidator(_ledger_purpose),
    ]
    valid_until: AwareDatetime | None = Field(
        default=None,
        strict=True,
        description="must lie in the future (a past time is refused with 422)",
    )


class SyncCreate(_Request):
    # Deleting is for full syncs only: the schema says that an incremental sync with
    # `confirm_deletes` is refused (as the route does), so generated clients never send one.
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "properties": {
                    "mode": {"const": "incremental"},
                    "confirm_deletes": {"type": "integer"},
                },
                "required": ["mode", "confirm_deletes"],
            }
        }
    )

    mode: Literal["full", "incremental"] | None = Field(
        default=None,
        description="default: incremental when the connector has a watermark, else full; "
        "full whenever confirm_deletes is given",
    )
    confirm_deletes: Annotated[int, Field(ge=1, le=10_000_000), WHOLE] | None = Field(
        default=None,
        description=(
            "a full sync only (mode full or left out): lets this one run delete exactly this "
            "many subjects past the connector's max_delete_share (the number a stopped run "
            "reported in counts.deletes_held); any other number stops the run again, "
            "deleting nothing"
        ),
    )


class ConsumerCreate(_Request):
    name: Annotated[PlainText, Field(max_length=64)]


class ConnectorUpdate(_Request):
    """What to change; properties left out stay as they are. A new mapping gets a new
    digest: syncing and delivery wait until an instruction authorises it."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    credentials: (
        Annotated[
            dict[CredentialKey, Annotated[str, Field(min_length=1, max_length=8192)]],
            Field(max_length=16, description="replaces all credentials; never returned"),
        ]
        | None
    ) = None
    mapping: (
        Annotated[
            Annotated[BundledName, Tag("#bundled")] | Annotated[MappingText, Tag("#inline")],
            Discriminator(_mapping_kind),
        ]
        | None
    ) = None
    interval_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600), WHOLE] | None = None
    max_delete_share: Annotated[float, Field(ge=0.0, le=1.0, strict=True)] | None = None
    paused: bool | None = Field(
        default=None,
        strict=True,
        description="true: no sync starts and a running one stops before its next page",
    )


class MappingCandidate(_Request):
    """A mapping to compare with the connector's current one, without changing anything."""

    mapping: Annotated[
        Annotated[BundledName, Tag("#bundled")] | Annotated[MappingText, Tag("#inline")],
        Discriminator(_mapping_kind),
    ]


class ConnectorDeleteQuery(_Request):
    subjects: Literal["delete", "keep"] = Field(
        description=(
            "required: `delete` sends subject.deleted for every subject the connector "
            "delivered; `keep` leaves them with the platform, no longer updated"
        )
    )


class FeedQuery(_Request):
    after: Annotated[str, Field(max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class LedgerQuery(_Request):
    #: Bounded like the store's integers (SQLite's are 64-bit).
    after: Annotated[int, Field(ge=-1, le=10**18)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class RunsQuery(_Request):
    limit: Annotated[int, Field(ge=1, le=100)] = 20


# --------------------------------------------------------------------------- responses


class TenantOut(_Response):
    id: str
    name: str
    created_at: datetime
    terminated_at: datetime | None = Field(
        default=None, description="the contract ended: nothing is processed or delivered"
    )
    destroy_after: datetime | None = Field(
        default=None, description="when its data is crypto-shredded (terminated + grace)"
    )
    destroyed_at: datetime | None = Field(
        default=None, description="its data was crypto-shredded; its ledger remains"
    )


class MappingPreview(_Response):
    """What will pass: the egress fields and their categories, and what is read at all."""

    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    fields: dict[str, str] = Field(description="egress field -> data category")
    source_fields: list[str] = Field(description="every source field the mapping reads")


class ConnectorOut(_Response):
    tenant: str
    id: str
    type: str
    base_url: str
    settings: dict[str, JsonValue]
    interval_seconds: int
    max_delete_share: float
    created_at: datetime
    watermark: str | None
    last_success_at: datetime | None
    mapping: MappingPreview
    paused_at: datetime | None = Field(description="set while the connector is paused")


class TenantList(_Response):
    tenants: list[TenantOut]


class FieldSideOut(_Response):
    category: str
    sources: list[str]


class FieldChangeOut(_Response):
    before: FieldSideOut
    after: FieldSideOut


class MappingChange(_Response):
    """What replacing the mapping changes for the platform, to check before authorising."""

    before_digest: str
    after_digest: str
    same: bool = Field(description="the mappings mean the same (same digest)")
    added: dict[str, FieldSideOut] = Field(description="egress fields that start to leave")
    removed: dict[str, FieldSideOut] = Field(description="egress fields that stop leaving")
    changed: dict[str, FieldChangeOut] = Field(
        description="egress fields whose category, sources or rule change"
    )
    source_fields_added: list[str]
    source_fields_removed: list[str]
    identity_changed: bool = Field(
        description="subject ids change: every person looks new to the platform, and the "
        "next full sync deletes the old ids"
    )
    leaver_rules_changed: bool
    needs_authorisation: bool = Field(
        description="syncing and delivery wait for an instruction for after_digest"
    )


class ConnectorChanged(_Response):
    connector: ConnectorOut
    mapping_change: MappingChange | None = Field(description="set when the mapping was given")


class ConnectorDeleted(_Response):
    tenant: str
    id: str
    deleted_at: datetime
    subjects: Literal["delete", "keep"]
    instructions_revoked: list[str]
    runs_stopped: list[str]
    deletion_events: int = Field(ge=0, description="subject.deleted events appended")
    subjects_kept: int = Field(ge=0, description="subjects left with the platform")


class ConnectorList(_Response):
    connectors: list[ConnectorOut]


class InstructionOut(_Response):
    id: str
    tenant: str
    connector: str
    granted_by: str = Field(description="the opaque account id of who granted it")
    granted_at: datetime
    purpose: str
    mapping_digest: str
    fields: dict[str, str]
    valid_until: datetime | None
    state: Literal["active", "revoked", "expired"]
    revoked_at: datetime | None
    revoked_by: str | None = Field(description="the opaque account id of who revoked it")
    reemitted_events: int | None = Field(
        default=None,
        description="only in the answer to a grant after a gap (events withheld): how many "
        "events re-emitted the connector's current state, so consumers that polled through "
        "the gap converge; null otherwise",
    )


class InstructionList(_Response):
    instructions: list[InstructionOut]


class RunOut(_Response):
    id: str
    tenant: str
    connector: str
    mode: str
    status: Literal["running", "succeeded", "failed", "refused", "stopped"]
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    error: str | None
    pages: int
    instruction_id: str | None
    confirm_deletes: int | None = Field(
        default=None, description="deletions the admin confirmed for this run"
    )


class RunList(_Response):
    runs: list[RunOut]


class LedgerEntryOut(_Response):
    index: int = Field(ge=0)
    kind: Literal["transfer", "audit"] = Field(
        description="transfer: data moved (has `direction`); audit: someone acted (has "
        "`action`, the actor's opaque account id and role, never a name)"
    )
    leaf_hash: str = Field(description="RFC 9162 leaf hash, base64")
    entry: dict[str, Any] = Field(description="the entry, as canonically hashed")
    subject_ids: list[str] | None = Field(
        default=None,
        description="a transfer's keyed ids, sorted: the list its `subjects` commitment "
        "names (SHA-256 over their 16-byte binary forms), kept beside the entry; absent for "
        "audit entries and for entries that list `subject_ids` in themselves",
    )


class LedgerPage(_Response):
    tenant: str
    size: int = Field(ge=0)
    checkpoint: str | None = Field(description="latest signed checkpoint note")
    entries: list[LedgerEntryOut]
    next_after: int | None = Field(description="pass as `after` for the next page")


class InclusionProofOut(_Response):
    tenant: str
    leaf_index: int
    tree_size: int
    entry: str
    leaf_hash: str
    audit_path: list[str]
    root: str
    checkpoint: str
    consistency_path: list[str]
    subject_ids: list[str] | None = Field(
        default=None,
        description="a transfer's keyed ids, sorted: the list its `subjects` commitment names "
        "(SHA-256 over their 16-byte forms); with the proof, it shows whom the transfer carried",
    )


class ConsumerCreated(_Response):
    id: str
    tenant: str
    name: str
    created_at: datetime
    token: str = Field(description="bearer token for the feed; shown only in this response")


class ScimTokenCreated(_Response):
    """A SCIM connector's bearer token and where its identity provider sends users."""

    tenant: str
    connector: str
    tenant_url: str = Field(
        description="the SCIM base URL to give the identity provider (Entra ID: Tenant URL; "
        "Okta: SCIM connector base URL)"
    )
    token: str = Field(
        description="bearer token for the SCIM endpoint; shown only in this response, the "
        "previous one stops working at once"
    )


class ConsumerOut(_Response):
    id: str
    tenant: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class ConsumerList(_Response):
    consumers: list[ConsumerOut]


class EventData(EgressData):
    """An event's personal data: the egress schema itself, so the two cannot drift."""


class FeedEvent(_Response):
    id: str = Field(description="unique per event: deduplicate at-least-once delivery by it")
    seq: int = Field(ge=1, description="per tenant, only grows: apply events in this order")
    type: Literal["subject.upserted", "subject.deleted", "subject.erased"] = Field(
        description="upserted: replace what you hold for the subject with `data`; deleted: "
        "the person no longer comes from this source, remove them; erased: the controller "
        "had the person erased (GDPR Art. 17): remove everything you hold of them from this "
        "source and confirm it"
    )
    subject_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="keyed pseudonymous id (per tenant and identity namespace); never a raw id",
    )
    data: EventData | None = Field(
        description="the complete minimised state (uncovered fields null); null when deleted"
    )
    occurred_at: datetime
    source: str = Field(description="the connector the event came from")
    instruction_id: str = Field(description="the instruction the event was fetched under")


class FeedPage(_Response):
    events: list[FeedEvent]
    next_cursor: str = Field(description="opaque; pass as `after` to poll for more")
    withheld: int = Field(
        ge=0, description="events passed over because their connector has no active instruction"
    )


class Health(_Response):
    status: Literal["ok"]


class FieldError(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; extension members (`code`, `run_id`, ...) may follow."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
    code: str | None = None
    instruction_id: str | None = None
    run_id: str | None = None


# --------------------------------------------------------------------------- live preview
# Appended for the live preview (`gateway.api.preview`); kept together so merges stay easy.

PREVIEW_ID_PATTERN = r"^prv_[0-9a-f]{32}$"


class PreviewCreate(_Request):
    """A preview of the connector's mapping (or of `mapping`, proposed in its place) on one
    small page of the source's records."""

    mapping: (
        Annotated[
            Annotated[BundledName, Tag("#bundled")] | Annotated[MappingText, Tag("#inline")],
            Discriminator(_mapping_kind),
        ]
        | None
    ) = Field(
        default=None,
        description="a proposed mapping (a bundled name or its TOML text); default: the "
        "connector's current mapping",
    )
    limit: Annotated[int, Field(ge=1, le=50), WHOLE] = Field(
        default=20, description="records to read from the source (at most 50)"
    )


class PreviewFieldOut(_Response):
    category: str
    sources: list[str]


class PreviewPerson(_Response):
    """A sample person as the platform would receive them (fields the mapping does not
    fill are left out)."""

    subject_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    job_title: str | None = None
    active: bool = Field(description="false: a leaver, to be deleted downstream")


class QuarantinedOut(_Response):
    position: int = Field(ge=0, description="the record's position in the page read")
    reason: str = Field(description="field names and rules, never values")


class PreviewOut(_Response):
    """What the mapping makes of one small page. Holds personal data: not cached, kept by
    the gateway for `expires_at` only."""

    id: str = Field(pattern=PREVIEW_ID_PATTERN)
    tenant: str
    connector: str
    made_at: datetime
    made_by: str = Field(description="the opaque id of the account that asked")
    expires_at: datetime
    mapping_digest: str = Field(description="the mapping previewed")
    current_digest: str = Field(description="the connector's current mapping")
    proposed: bool = Field(description="a proposed mapping was previewed, not the current one")
    limit: int = Field(ge=1)
    records_read: int = Field(ge=0)
    more_available: bool = Field(description="the source holds more records than were read")
    fields: dict[str, PreviewFieldOut] = Field(
        description="egress field -> its category and source field(s)"
    )
    people: list[PreviewPerson] = Field(description="minimised sample people")
    dropped: dict[str, int] = Field(
        description="source field -> records it was dropped from (names only, never values)"
    )
    quarantined: list[QuarantinedOut] = Field(description="records that would be quarantined")
    unseen_source_fields: list[str] = Field(
        description="mapped source fields no record read held (a typo in the mapping?)"
    )
    mapping_change: MappingChange | None = Field(
        description="current -> proposed mapping; null without a proposed mapping"
    )
