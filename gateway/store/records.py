"""The gateway's state as plain records: the row types of the `Store` and `LedgerStore`
protocols (`gateway.store.protocols`).

Records hold only what the gateway may keep: ids, configuration, sealed secrets, keyed
subject ids with the minimised egress data, content digests, and counts. Raw vendor
payloads have no record type, so no backend can be asked to store one.

The protocols are written for the sync engine's pattern: read what it needs, decide in
Python (digests, leavers, deletions), then write a page's subjects, feed events, run
progress and ledger entry inside one `transaction()`. Backends stay free of business logic,
so SQLite and PostgreSQL can share one contract test suite.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

# Re-exported: the protocol used to live here, and callers still import it from here.
from gateway.store.protocols import Store as Store  # noqa: PLC0414

RunStatus = Literal["running", "succeeded", "failed", "refused", "stopped"]
#: Why an instruction does not cover a transfer (refusal problems, metrics, ledger).
RefusalCode = Literal["missing", "revoked", "expired", "mapping_changed", "superseded"]
EventType = Literal["subject.upserted", "subject.deleted", "subject.erased"]


class TenantEnded(Exception):
    """The tenant's contract has ended (terminated, or its data destroyed)."""


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
    #: The contract ended: nothing is processed or delivered any more.
    terminated_at: datetime | None = None
    #: Its data was destroyed (crypto-shredded): `sealed_key` is empty.
    destroyed_at: datetime | None = None


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
    #: The process (replica) running it, and until when it may without renewing.
    owner: str | None = None
    lease_until: datetime | None = None


# SubjectState, SubjectWrite and NewEvent are made once per person per sync (100,000 of
# each for a full sync of 100,000), so they are NamedTuples: as immutable as a frozen
# dataclass, and made in half the time (1.4 against 2.9 us for NewEvent's seven fields,
# timeit on the 2-core bench machine), time a page's commit spends holding the GIL.


class SubjectState(NamedTuple):
    """What the gateway remembers of a subject to detect changes: digest, not history."""

    subject_id: str
    digest: bytes
    present: bool


class SubjectWrite(NamedTuple):
    subject_id: str
    digest: bytes
    present: bool
    #: Not stored when the writer compared (a first sighting): a store may insert the row
    #: without looking for one to update. One there after all is the store's to refuse
    #: (`AlreadyExists`) and the writer's to write again without the hint.
    new: bool = False


def new_event_id() -> str:
    """Unique and roughly time-ordered (so the id index grows at its end, not all over).

    Writers that append several events at once number them within one base
    (`f"{base}{n:05x}"`), which keeps them unique and in order."""
    return f"evt_{time.time_ns():016x}{secrets.token_hex(8)}"


class NewEvent(NamedTuple):
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


#: An event as the pull feed reads it: `(seq, type, subject_id, source, wire)`, what the
#: feed decides on (source connector, type, keyed subject id for the ledger) and the event's
#: wire JSON, the bytes it sends for it (`gateway.store.event_wire`). A plain tuple as the
#: driver returns it, so a page of 1,000 is spliced together without building an object,
#: decoding or rebuilding anything per event (`events_after` gives the decoded `EventRow`).
FeedRow = tuple[int, EventType, str, str, bytes]


@dataclass(frozen=True, slots=True)
class FeedBlock:
    """The next page of a feed as one block, read as one aggregate row: the events of a
    page that all come from one source connector and all carry wire JSON. The common page;
    the feed serves it without touching an event in Python (`gateway.delivery.feed`)."""

    #: How many events, and the sequence number of the last (the next cursor).
    count: int
    last_seq: int
    #: The one source connector of every event in the block.
    source: str
    #: Their keyed subject ids, in sequence order (the ledger's outbound entry).
    subject_ids: list[str]
    #: Their wire JSON joined by commas, in sequence order: a JSON array's insides.
    wire: bytes
    #: How many people of the tenant are restricted (their events are withheld): when
    #: none, the page needs no further question.
    restricted: int = 0


SuppressionKind = Literal["erased", "restricted"]
RequestKind = Literal[
    "access", "portability", "rectification", "erasure", "restriction", "objection"
]
RequestState = Literal["open", "completed", "rejected"]
#: How a request ended: completed ones were fulfilled, or found nothing held; rejected
#: ones name the ground (GDPR Art. 12(5), 12(6)).
RequestOutcome = Literal[
    "fulfilled",
    "nothing-held",
    "identity-unverified",
    "manifestly-unfounded",
    "excessive",
    "not-applicable",
]


@dataclass(frozen=True, slots=True)
class DsrRequest:
    """A data-subject request as a record: by ids, times and codes only."""

    id: str
    tenant: str
    kind: RequestKind
    #: The opaque id of the account that entered it.
    requester: str
    received_at: datetime
    due_at: datetime
    subject_ids: tuple[str, ...]
    state: RequestState = "open"
    outcome: RequestOutcome | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None


@dataclass(frozen=True, slots=True)
class Suppression:
    """A person (by keyed id) whose data is no longer stored or delivered, until lifted:
    erased (GDPR Art. 17) or restricted (Art. 18)."""

    tenant: str
    subject_id: str
    kind: SuppressionKind
    created_at: datetime
    #: The opaque id of the account that asked.
    by_actor: str


@dataclass(frozen=True)
class Consumer:
    """A platform consumer of a tenant's feed; only a hash of its token is kept."""

    id: str
    tenant: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FeedAccess:
    """What a feed page reads first, together: the consumer holding the token, and its
    tenant's feed generation and number of restricted people (`Store.feed_state`); and,
    when asked for, one source connector's `Store.source_standing`."""

    consumer: Consumer
    generation: int
    restricted: int
    #: (tenant, connector) -> the connector (None if missing or deleted) and its
    #: instructions in grant order; empty unless a source was asked for.
    standings: Mapping[tuple[str, str], tuple[ConnectorRecord | None, list[Instruction]]] = field(
        default_factory=dict
    )


# --------------------------------------------------------------------------- the ledger's rows

#: (index, canonical entry bytes, stored leaf hash), in index order.
EntryRow = tuple[int, bytes, bytes]
#: (level, index, hash) of a perfect subtree node.
NodeRow = tuple[int, int, bytes]


@dataclass(frozen=True, slots=True)
class LedgerHead:
    """Where a tenant's log stands: its size and the frontier to extend it from."""

    size: int
    frontier: tuple[bytes, ...]


#: (offset of the entry in its batch, SHA-256 of its subject list, the list: 16-byte keyed ids,
#: ascending) for each transfer entry of an append that names a subject list.
SubjectSetRow = tuple[int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class VerifiedPoint:
    """Where a verification of a tenant's log ended: `size` entries matched the signed
    checkpoint `seq`, and `frontier` is the tree's frontier there, so the next verification
    can go on from `size` instead of entry 0."""

    size: int
    seq: int
    frontier: tuple[bytes, ...]
    verified_at: datetime


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint note as stored; `seq` orders them per tenant, `size` is an index."""

    seq: int
    size: int
    note: str


@dataclass(frozen=True, slots=True)
class AppendBase:
    """The log an append was built on, as its writer last left it (`LedgerStore.append`'s
    `base`): the head's frontier (None for an empty log) and the latest checkpoint's seq
    (0 for none). With the size, they pin the log: an append built on a log another
    writer grew, or on one of its own appends that was rolled back, matches none of the
    three, as two logs of one size share a frontier only if they hold the same entries."""

    frontier: bytes | None
    checkpoint_seq: int


@dataclass(frozen=True, slots=True)
class CheckpointPush:
    """Where a tenant's new signed checkpoints are POSTed, and how far that has got.

    `failure` is a short reason code (`status-503`, `refused-address`, ...), never a
    response body."""

    tenant: str
    url: str
    configured_at: datetime
    pushed_seq: int | None = None
    pushed_at: datetime | None = None
    failed_at: datetime | None = None
    failure: str | None = None


#: The rules of a retention policy, each a number of days (`gateway.lifecycle.retention`
#: says what each removes, and why its bound is what it is).
RetentionField = Literal[
    "feed_compaction_days",
    "leaver_grace_days",
    "run_history_days",
    "request_history_days",
    "short_lived_days",
]
RETENTION_FIELDS: tuple[RetentionField, ...] = (
    "feed_compaction_days",
    "leaver_grace_days",
    "run_history_days",
    "request_history_days",
    "short_lived_days",
)


@dataclass(frozen=True)
class RetentionOverrides:
    """A tenant's own retention days, where they differ from the gateway's defaults."""

    tenant: str
    #: Only the fields the tenant set; the rest follow the defaults.
    days: Mapping[RetentionField, int]
    updated_at: datetime
    #: The opaque id of the account that set them.
    updated_by: str


#: Records the retention job removes once they are old enough, found by one time column
#: each (`Store.expired_records`): finished sync runs, closed data-subject requests, erasure
#: receipts of people no longer suppressed, and the short-lived records of the account
#: register.
ExpiredKind = Literal[
    "sync_runs",
    "dsr_requests",
    "erasure_receipts",
    "sessions",
    "invitations",
    "api_tokens",
    "oidc_pending",
    "signin_throttles",
]
#: A record's key within its table (and tenant): one value, or two (erasure receipts).
RecordKey = tuple[str | bytes, ...]


@dataclass(frozen=True)
class JobState:
    """A background job that runs on one replica at a time, as the store keeps it."""

    name: str
    claimed_by: str | None
    claimed_until: datetime | None
    first_run_at: datetime
    last_finished_at: datetime | None = None
    #: "succeeded" or "failed".
    last_outcome: str | None = None
    last_success_at: datetime | None = None


DestinationKind = Literal["webhook", "scim"]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a tenant's feed events are pushed (`gateway.delivery.push`), and how far its
    worker got.

    `sealed_secrets` holds the signing secrets (sealed; the store never opens them); the
    previous one stays valid until `previous_until` after a rotation. `failure` is a short
    reason code (`status-503`, `timeout`), never a response body."""

    tenant: str
    id: str
    kind: DestinationKind
    url: str
    sealed_secrets: bytes
    event_types: tuple[str, ...]
    thin: bool
    batch_size: int
    max_attempts: int
    max_age_seconds: int
    created_at: datetime
    previous_until: datetime | None = None
    paused_at: datetime | None = None
    #: The worker's cursor: every event up to this number is done with (sent, withheld,
    #: filtered out or dead-lettered).
    after_seq: int = 0
    attempts: int = 0
    failing_since: datetime | None = None
    failure: str | None = None
    delivered_at: datetime | None = None
    replay_requested_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a destination could not take, by number; the event stays in the feed."""

    seq: int
    subject_id: str
    reason: str
    dead_at: datetime
