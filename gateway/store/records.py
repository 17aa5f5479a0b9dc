"""The gateway's state as plain records, and the `Store` protocol every backend implements.

Records hold only what the gateway may keep: ids, configuration, sealed secrets, keyed
subject ids with the minimised egress data, content digests, and counts. Raw vendor
payloads have no record type, so no backend can be asked to store one.

The protocol is written for the sync engine's pattern: read what it needs, decide in
Python (digests, leavers, deletions), then write a page's subjects, feed events, run
progress and ledger entry inside one `transaction()`. Backends stay free of business logic,
so SQLite and PostgreSQL can share one contract test suite.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

from gateway.store import LedgerStore

RunStatus = Literal["running", "succeeded", "failed", "refused", "stopped"]
EventType = Literal["subject.upserted", "subject.deleted"]


class NotFound(LookupError):
    """No such row; the message names the kind and id (ids are never personal data)."""


class AlreadyExists(ValueError):
    """A row with that id exists already."""


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime
    #: The tenant's subject key, sealed under the master key (gateway.keys.master).
    sealed_key: bytes = field(repr=False)


@dataclass(frozen=True)
class ConnectorRecord:
    tenant: str
    id: str
    type: str
    base_url: str
    sealed_credentials: bytes = field(repr=False)
    settings: Mapping[str, Any]
    #: The mapping's TOML text as configured: the digest is computed from it.
    mapping_text: str
    mapping_digest: str
    interval_seconds: int
    max_delete_share: float
    created_at: datetime
    watermark: str | None = None
    last_success_at: datetime | None = None
    #: Set while an admin has paused the connector: no run starts, a running one stops.
    paused_at: datetime | None = None
    #: Set once the connector is deleted (its row is kept so the ledger's names stay unique).
    deleted_at: datetime | None = None
    #: What deletion did with the subjects already delivered: "delete" or "keep".
    deleted_subjects: str | None = None


@dataclass(frozen=True)
class Instruction:
    """A customer's documented authorisation (GDPR Art. 28(3)(a)) for one connector."""

    id: str
    tenant: str
    connector: str
    granted_by: str
    granted_at: datetime
    purpose: str
    mapping_digest: str
    #: Egress field → data category this instruction covers.
    fields: Mapping[str, str]
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def state(self, now: datetime) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.valid_until is not None and self.valid_until <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class RunRecord:
    id: str
    tenant: str
    connector: str
    mode: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    #: The connector's position after the last committed page (resume point).
    cursor: str | None = None
    #: Highest source modification time seen in this run.
    watermark: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    instruction_id: str | None = None
    pages: int = 0
    #: The watermark an incremental run started from (kept so a resumed run asks the same).
    since: str | None = None
    #: How many deletions the admin confirmed for this (full) run, past the delete guard.
    confirm_deletes: int | None = None


@dataclass(frozen=True)
class SubjectState:
    """What the gateway remembers of a subject to detect changes: digest, not history."""

    subject_id: str
    digest: bytes
    present: bool


@dataclass(frozen=True)
class SubjectWrite:
    subject_id: str
    digest: bytes
    present: bool


@dataclass(frozen=True)
class NewEvent:
    id: str
    type: EventType
    subject_id: str
    data: Mapping[str, Any] | None
    occurred_at: datetime
    source: str
    instruction_id: str


@dataclass(frozen=True)
class EventRow:
    tenant: str
    seq: int
    id: str
    type: EventType
    subject_id: str
    data: Mapping[str, Any] | None
    occurred_at: datetime
    source: str
    instruction_id: str


class FeedRow(NamedTuple):
    """An event as the pull feed reads it: the egress data still as its stored JSON text
    and the time as RFC 3339 UTC text, so a page of 1,000 is served without building a
    datetime and a record per event (`events_after` gives the decoded `EventRow`)."""

    seq: int
    id: str
    type: EventType
    subject_id: str
    data_json: str | None
    occurred_at: str
    source: str
    instruction_id: str


@dataclass(frozen=True)
class Consumer:
    """A platform consumer of a tenant's feed; only a hash of its token is kept."""

    id: str
    tenant: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class Store(LedgerStore, Protocol):
    """Everything the gateway persists. Implementations: `gateway.store.sqlite`."""

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together or not at all (ledger appends included)."""
        ...

    # tenants
    def create_tenant(self, tenant: Tenant) -> None: ...
    def get_tenant(self, tenant_id: str) -> Tenant: ...
    def list_tenants(self) -> list[Tenant]: ...

    # connectors
    def create_connector(self, record: ConnectorRecord) -> None: ...
    def get_connector(self, tenant: str, connector_id: str) -> ConnectorRecord: ...
    def list_connectors(self, tenant: str | None = None) -> list[ConnectorRecord]: ...
    def set_connector_sync_state(
        self, tenant: str, connector_id: str, watermark: str | None, succeeded_at: datetime
    ) -> None: ...

    # instructions
    def add_instruction(self, instruction: Instruction) -> None: ...
    def get_instruction(self, instruction_id: str) -> Instruction: ...
    def list_instructions(self, tenant: str, connector_id: str) -> list[Instruction]: ...
    def revoke_instruction(self, instruction_id: str, by: str, at: datetime) -> Instruction: ...

    # runs
    def start_run(self, run: RunRecord) -> bool:
        """Insert a running run unless the connector already has one; False if it has."""
        ...

    def get_run(self, run_id: str) -> RunRecord: ...
    def running_runs(self) -> list[RunRecord]: ...
    def save_run_progress(
        self, run_id: str, cursor: str | None, watermark: str | None, counts: Mapping[str, int]
    ) -> None: ...
    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        at: datetime,
        counts: Mapping[str, int],
        error: str | None = None,
    ) -> None: ...
    def last_run(self, tenant: str, connector_id: str) -> RunRecord | None: ...
    def list_runs(self, tenant: str, connector_id: str, limit: int = 20) -> list[RunRecord]:
        """The connector's most recent runs, newest first."""
        ...

    # subjects and events
    def subject_states(
        self, tenant: str, connector_id: str, subject_ids: Sequence[str]
    ) -> dict[str, SubjectState]: ...
    def write_subjects(
        self, tenant: str, connector_id: str, run_id: str, rows: Sequence[SubjectWrite]
    ) -> None: ...
    def mark_seen(
        self, tenant: str, connector_id: str, run_id: str, subject_ids: Sequence[str]
    ) -> None: ...
    def count_present(self, tenant: str, connector_id: str) -> int: ...
    def unseen_present(self, tenant: str, connector_id: str, run_id: str) -> Iterator[str]: ...
    def append_events(self, tenant: str, events: Sequence[NewEvent]) -> list[int]: ...
    def events_after(self, tenant: str, after_seq: int, limit: int) -> list[EventRow]: ...
    def feed_rows(self, tenant: str, after_seq: int, limit: int) -> list[FeedRow]:
        """`events_after`, undecoded: the same events in the same order, for the feed."""
        ...

    def last_event_seq(self, tenant: str) -> int: ...

    # feed consumers
    def create_consumer(self, consumer: Consumer, token_hash: bytes) -> None: ...
    def consumer_by_token_hash(self, token_hash: bytes) -> Consumer | None: ...

    # connector and consumer lifecycle (admin API)
    def update_connector(
        self,
        tenant: str,
        connector_id: str,
        *,
        sealed_credentials: bytes | None = None,
        mapping_text: str | None = None,
        mapping_digest: str | None = None,
        interval_seconds: int | None = None,
        max_delete_share: float | None = None,
    ) -> ConnectorRecord:
        """Change what is given (None leaves a column as it is); NotFound if deleted."""
        ...

    def set_connector_paused(
        self, tenant: str, connector_id: str, paused_at: datetime | None
    ) -> ConnectorRecord:
        """Pause (a time) or resume (None) a connector; NotFound if deleted."""
        ...

    def mark_connector_deleted(
        self, tenant: str, connector_id: str, at: datetime, subjects: str
    ) -> None:
        """Hide the connector from every lookup; its row stays, so its id is never reused."""
        ...

    def deleted_connector(self, tenant: str, connector_id: str) -> ConnectorRecord | None:
        """The record of a deleted connector (None if it exists or never did)."""
        ...

    def stop_running_runs(
        self, tenant: str, connector_id: str, at: datetime, error: str
    ) -> list[str]:
        """Mark the connector's running runs stopped; returns their ids."""
        ...

    def present_subjects(self, tenant: str, connector_id: str) -> list[str]: ...
    def set_subjects_absent(
        self, tenant: str, connector_id: str, subject_ids: Sequence[str]
    ) -> None: ...
    def latest_events(self, tenant: str, source: str) -> list[EventRow]:
        """Each subject's newest event from `source` (one per subject id), in seq order."""
        ...

    def list_consumers(self, tenant: str) -> list[Consumer]: ...
    def get_consumer(self, tenant: str, consumer_id: str) -> Consumer: ...
    def revoke_consumer(self, tenant: str, consumer_id: str, at: datetime) -> Consumer: ...
    def replace_consumer_token(self, tenant: str, consumer_id: str, token_hash: bytes) -> None:
        """The old token stops working in the same write that makes the new one valid."""
        ...
