"""Request and response shapes of the data-subject routes (`gateway.api.subject_routes`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Discriminator, Field, RootModel, StringConstraints, Tag

from gateway.api.models import ConnectorId, _Request, _Response

SUBJECT_ID_PATTERN = r"^[0-9a-f]{32}$"
SubjectId = Annotated[str, StringConstraints(pattern=SUBJECT_ID_PATTERN)]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class EmailSearch(_Request):
    email: Annotated[str, StringConstraints(min_length=3, max_length=320)] = Field(
        description="a work email, normalised as the egress schema does"
    )


class IdentitySearch(_Request):
    connector: ConnectorId
    identity: list[IdentityValue] = Field(
        min_length=1, max_length=8,
        description="the connector's identity fields, in its mapping's order "
        "(e.g. an AFAS employee number)",
    )  # fmt: skip


def _search_kind(value: Any) -> str:
    # Tags start with "#": `problems.from_validation` leaves them out of field names.
    return "#email" if isinstance(value, dict) and "email" in value else "#identity"


class SubjectSearch(
    RootModel[
        Annotated[
            Annotated[EmailSearch, Tag("#email")] | Annotated[IdentitySearch, Tag("#identity")],
            Discriminator(_search_kind),
        ]
    ]
):
    """Either `email`, or `connector` with `identity`."""


class SubjectFoundOut(_Response):
    subject_id: str = Field(description="the keyed id (per source mapping's namespace)")
    sources: list[str] = Field(description="the connectors whose events hold it")


class SubjectsFoundOut(_Response):
    subjects: list[SubjectFoundOut]


class SubjectExportRequest(_Request):
    subject_ids: list[SubjectId] = Field(min_length=1, max_length=20)
    format: Literal["json", "csv"] = "json"


class PersonData(_Response):
    first_name: str | None
    last_name: str | None
    email: str | None
    job_title: str | None


class HeldOut(_Response):
    subject_id: str
    source: str
    state: Literal["present", "deleted", "erased"]
    as_of: datetime
    data: PersonData | None


class HeldEventOut(_Response):
    seq: int
    id: str
    type: str
    subject_id: str
    source: str
    occurred_at: datetime
    instruction_id: str
    data: PersonData | None


class TransferOut(_Response):
    index: int = Field(description="the ledger entry")
    time: datetime
    direction: Literal["inbound", "outbound", "refused"]
    connector: str
    destination: str | None
    instruction_id: str | None
    mapping_digest: str | None
    fields: dict[str, str]
    subject_ids: list[str]


class SubjectExportOut(_Response):
    """What Sluis holds about these keyed ids and where it went (GDPR Art. 15, 20)."""

    tenant: str
    generated_at: datetime
    subject_ids: list[str]
    held: list[HeldOut] = Field(description="the data as it stands, per source")
    events: list[HeldEventOut] = Field(description="every stored change, in feed order")
    transfers: list[TransferOut] = Field(description="every ledger entry that carried the ids")
    nothing_else: str


class SubjectEraseRequest(_Request):
    subject_ids: list[SubjectId] = Field(
        min_length=1, max_length=20, description="one person's keyed ids (from a search)"
    )


class ErasedOut(_Response):
    subject_id: str
    events_deleted: int = Field(ge=0, description="stored events removed")
    sources: list[str] = Field(description="sources told by a `subject.erased` event")


class ErasureOut(_Response):
    erased: list[ErasedOut]


class ErasureReceipt(_Response):
    """A feed consumer's confirmation that it removed an erased person."""

    subject_id: str
    consumer_id: str
    acknowledged_at: datetime = Field(description="the first time it said so")


class SuppressionOut(_Response):
    subject_id: str
    kind: Literal["erased", "restricted"]
    created_at: datetime
    by_actor: str = Field(description="the opaque id of the account that asked")
    receipts: list[ErasureReceipt] = Field(
        default_factory=list, description="erased: the consumers that confirmed removing them"
    )
    pending: list[str] = Field(
        default_factory=list,
        description="erased: the live consumers that have not confirmed yet",
    )


class SuppressionList(_Response):
    suppressions: list[SuppressionOut]


class RestrictedOut(_Response):
    restricted: list[str] = Field(description="the ids restricted now (an erased one stays erased)")


RequestKindField = Literal[
    "access", "portability", "rectification", "erasure", "restriction", "objection"
]


class RequestCreate(_Request):
    kind: RequestKindField
    subject_ids: list[SubjectId] = Field(
        default_factory=list, max_length=20, description="keyed ids, if already found"
    )
    received_at: AwareDatetime | None = Field(
        default=None, description="when the controller received it (default: now)"
    )


class CompletedClose(_Request):
    state: Literal["completed"]
    outcome: Literal["fulfilled", "nothing-held"]


class RejectedClose(_Request):
    state: Literal["rejected"]
    outcome: Literal[
        "identity-unverified", "manifestly-unfounded", "excessive", "not-applicable"
    ] = Field(description="the ground (GDPR Art. 12(5), 12(6))")


def _close_kind(value: Any) -> str:
    # Tags start with "#": `problems.from_validation` leaves them out of field names.
    rejected = isinstance(value, dict) and value.get("state") == "rejected"
    return "#rejected" if rejected else "#completed"


class RequestClose(
    RootModel[
        Annotated[
            Annotated[CompletedClose, Tag("#completed")]
            | Annotated[RejectedClose, Tag("#rejected")],
            Discriminator(_close_kind),
        ]
    ]
):
    """Completed with `fulfilled` or `nothing-held`, or rejected with its ground."""


class RequestsQuery(_Request):
    state: Literal["open", "completed", "rejected"] | None = None


class RequestOut(_Response):
    id: str
    kind: RequestKindField
    requester: str = Field(description="the opaque id of the account that entered it")
    received_at: datetime
    due_at: datetime
    subject_ids: list[str]
    state: Literal["open", "completed", "rejected"]
    outcome: str | None
    closed_at: datetime | None
    closed_by: str | None
    overdue: bool = Field(description="open past its due date")
    receipts: list[ErasureReceipt] = Field(
        default_factory=list, description="for its keyed ids, each consumer's confirmation"
    )


class RequestList(_Response):
    requests: list[RequestOut] = Field(description="oldest due first")


class SubjectRectifyRequest(_Request):
    subject_ids: list[SubjectId] = Field(
        min_length=1, max_length=20, description="one person's keyed ids (from a search)"
    )
    sync: bool = Field(
        default=True,
        description="start a sync of what changed since the last run of each source holding "
        "the person (after the record was corrected there); false: only say where to correct",
    )


class RectifySyncOut(_Response):
    status: Literal["started", "busy", "paused", "not-authorised", "not-asked"] = Field(
        description="started: a sync of the source's changes runs (`run_id`); busy: one is "
        "running already (it picks the correction up if it started after it); paused or "
        "not-authorised: nothing syncs from this source now; not-asked: `sync` was false"
    )
    run_id: str | None
    detail: str


class SourceOfRecordOut(_Response):
    connector: str
    connector_type: str
    base_url: str = Field(description="the source system to correct the record in")
    fields: dict[str, list[str]] = Field(
        description="egress field -> the source fields it is taken from (the mapping's)"
    )
    sync: RectifySyncOut


class RectificationOut(_Response):
    """Where to correct a person's data, and the syncs that bring the correction through."""

    subject_ids: list[str]
    sources: list[SourceOfRecordOut]
    how: str
