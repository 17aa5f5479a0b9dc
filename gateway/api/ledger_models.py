"""Request and response shapes of the checkpoint routes (`gateway.api.ledger_routes`).

The tenant's auditor takes every signed checkpoint out of the operator's hands: paged from
one they hold, the latest, or pushed to a URL of their own. Kept beside `gateway.api.models`
(whose conventions they follow) so each module stays small.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from gateway.api.models import ConnectorId, HttpUrl, _Request, _Response


class CheckpointsQuery(_Request):
    after: Annotated[int, Field(ge=0, le=10**18)] = Field(
        default=0, description="a checkpoint's `seq`: only later ones are listed (0: all)"
    )
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class CheckpointOut(_Response):
    seq: int = Field(ge=1, description="orders a log's checkpoints; pass as `after`")
    size: int = Field(ge=0, description="entries the checkpoint vouches for")
    time: datetime
    note: str = Field(
        description="the signed note (C2SP tlog-checkpoint), exactly as signed: keep it; "
        "`sluis audit verify --checkpoints DIR` checks the log against every note kept"
    )


class CheckpointPage(_Response):
    tenant: str
    origin: str | None = Field(description="the log's origin, as its checkpoints name it")
    checkpoints: list[CheckpointOut] = Field(description="oldest first")
    next_after: int = Field(ge=0, description="pass as `after` for the next page")


class CheckpointPushSet(_Request):
    url: HttpUrl = Field(
        description="receives each new signed checkpoint as a text/plain POST; must reach a "
        "public address unless the gateway allows private sources; redirects are not followed"
    )


class CheckpointPushOut(_Response):
    tenant: str
    url: str
    configured_at: datetime
    pushed_seq: int | None = Field(description="the last checkpoint delivered (`seq`)")
    pushed_at: datetime | None
    failed_at: datetime | None = Field(description="the last failed push, until one succeeds")
    failure: str | None = Field(
        description="why it failed: status-<code>, redirect-<code>, network, timeout or "
        "refused-address"
    )


class BreachQuery(_Request):
    """`from`/`to` (the window, `to` excluded), optionally one connector's part."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, populate_by_name=False)

    start: AwareDatetime = Field(alias="from", description="the window's start (with a zone)")
    end: AwareDatetime = Field(alias="to", description="the window's end, excluded")
    connector: ConnectorId | None = Field(default=None, description="only this connector")
    ids: bool = Field(default=True, description="false: the count of subjects, not their ids")


class BreachAuthorisationOut(_Response):
    instruction_id: str
    mapping_digest: str | None
    connector: str
    transfers: int = Field(ge=0)
    records: int = Field(ge=0)


class BreachLedgerPart(_Response):
    first_index: int = Field(ge=0, description="the first entry read")
    stop_index: int = Field(ge=0, description="the entry after the last read")
    log_size: int = Field(ge=0)
    entries_read: int = Field(ge=0)


class BreachScopeOut(_Response):
    """What the tenant's ledger says moved in the window (GDPR Art. 33(3)(a))."""

    tenant: str
    start: datetime
    end: datetime
    connector: str | None
    subjects: int = Field(ge=0, description="distinct data subjects whose data moved")
    subject_ids: list[str] | None = Field(
        description="their keyed ids, sorted (null when asked with ids=false)"
    )
    records_in: int = Field(ge=0, description="records received from sources")
    records_out: int = Field(ge=0, description="records delivered to destinations")
    records_refused: int = Field(ge=0, description="records withheld for want of authorisation")
    transfers: int = Field(ge=0)
    refusals: int = Field(ge=0)
    categories: list[str] = Field(description="data categories that moved")
    fields: dict[str, str] = Field(description="egress field -> data category")
    sources: list[str]
    destinations: list[str]
    authorisations: list[BreachAuthorisationOut]
    first_transfer_at: datetime | None
    last_transfer_at: datetime | None
    ledger: BreachLedgerPart


class RecordQuery(_Request):
    format: Literal["json", "markdown"] = Field(
        default="json", description="markdown: the record for people (text/markdown)"
    )


class RecordProcessor(_Response):
    name: str | None
    contact: str | None
    dpo_contact: str | None


class RecordController(_Response):
    tenant: str
    name: str
    since: datetime


class RecordInstruction(_Response):
    id: str
    purpose: str
    granted_by: str = Field(description="the opaque id of the account that authorised")
    granted_at: datetime
    valid_until: datetime | None
    fields: dict[str, str] = Field(description="egress field -> data category")


class RecordActivity(_Response):
    connector: str
    source_type: str
    state: Literal["authorised", "not authorised", "paused", "deleted"]
    processing: list[str]
    instructions: list[RecordInstruction] = Field(description="the active authorisations")
    since: datetime
    interval_seconds: int


class RecordRecipient(_Response):
    name: str
    kind: str
    since: datetime


class RecordAnchor(_Response):
    origin: str
    size: int = Field(ge=0)
    time: datetime
    seq: int = Field(ge=1)


class ProcessingRecordOut(_Response):
    """The processor's record of processing for this controller (GDPR Art. 30(2))."""

    generated_at: datetime
    generated_by: str
    processor: RecordProcessor
    controller: RecordController
    data_subjects: list[str]
    data_categories: list[str]
    activities: list[RecordActivity]
    recipients: list[RecordRecipient]
    third_country_transfers: str
    security_measures: list[str]
    retention: list[str]
    ledger_anchor: RecordAnchor | None = Field(
        description="the tenant's latest signed checkpoint when the record was made"
    )
