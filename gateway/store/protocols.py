"""The storage seam: the `Store` and `LedgerStore` protocols every backend implements.

A backend is two objects. The gateway store holds tenants, connectors, instructions, runs,
subjects (digests only), feed events and consumers, and it *has* a ledger store
(`Store.ledger`) for the transfer log's rows, sharing its transactions: a page's subjects,
events, run progress and ledger entry commit together inside one `Store.transaction()`.

The ledger store needs very little: append a batch of entries together with the tree
nodes, the new frontier and a signed checkpoint in one transaction; read entries, leaf
hashes and stored nodes back by index; and give a consistent snapshot for verification.
Stores hold bytes and numbers only; they never interpret an entry, and they are not
trusted: `Ledger.verify` recomputes everything a store hands back.

The row types live in `gateway.store.records`; `tests/store/` is the contract suite every
backend passes (one fixture adds a backend to it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.store.account_records import (
        AccountRecord,
        AccountStatus,
        ApiTokenRecord,
        InvitationRecord,
        OidcPendingRecord,
        OidcRecord,
        SessionRecord,
        ThrottleRecord,
    )
    from gateway.store.event_wire import RenderedEvent
    from gateway.store.records import (
        AppendBase,
        CheckpointPush,
        ConnectorRecord,
        Consumer,
        DeadLetter,
        Destination,
        DsrRequest,
        EntryRow,
        EventRow,
        ExpiredKind,
        FeedAccess,
        FeedBlock,
        FeedRow,
        Instruction,
        JobState,
        LedgerHead,
        NewEvent,
        NodeRow,
        RecordKey,
        RequestOutcome,
        RequestState,
        RetentionOverrides,
        RunRecord,
        RunStatus,
        StoredCheckpoint,
        SubjectSetRow,
        SubjectState,
        SubjectWrite,
        Suppression,
        SuppressionKind,
        Tenant,
        VerifiedPoint,
    )


class StoreError(Exception):
    """Storage failed in a way the caller can report; messages hold no entry content."""


class StoreMissing(StoreError):
    """The database (or its ledger tables) does not exist."""


class StoreConflict(StoreError):
    """Another writer appended first; re-read the head and retry."""


class LogMoved(StoreConflict):
    """The log is not where the append was built (its size, or with `base` its frontier and
    latest checkpoint): nothing was written, and the transaction may go on, so the caller
    can read the head and try again in it."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (down, restarting, failing over, or every
    pooled connection busy): nothing was written; the same request may succeed shortly."""


class LeaseLost(StoreConflict):
    """The run is no longer this process's: its lease ran out and another took it over, or
    it was stopped. Nothing was written."""


class LedgerReader(Protocol):
    """Read access to every tenant's log."""

    def tenants(self) -> list[str]:
        """Every tenant with any ledger row (entries, checkpoints or head), sorted."""
        ...

    def head(self, tenant: str) -> LedgerHead | None: ...

    def iter_entries(
        self, tenant: str, start: int | None = None, stop: int | None = None
    ) -> Iterator[EntryRow]:
        """Rows with `start <= index < stop` in index order; None means unbounded."""
        ...

    def leaf_hashes(self, tenant: str, start: int, stop: int) -> list[bytes]:
        """Stored leaf hashes of entries `[start, stop)`; shorter if entries are missing."""
        ...

    def node_hashes(self, tenant: str, level: int, start: int, stop: int) -> list[bytes]:
        """Stored node hashes at `level` (a multiple of 4) for indices `[start, stop)`."""
        ...

    def iter_nodes(self, tenant: str, after_size: int = 0) -> Iterator[NodeRow]:
        """Every stored node in the order appends complete them (by last leaf, then level),
        from those the entry after the first `after_size` completes."""
        ...

    def subject_sets(self, tenant: str, digests: Collection[bytes]) -> dict[bytes, bytes]:
        """The stored subject lists with these digests (SHA-256, 32 bytes), by digest;
        digests with no list are absent."""
        ...

    def iter_subject_sets(self, tenant: str) -> Iterator[tuple[bytes, bytes]]:
        """Every (digest, list) of the tenant, in the order they were first stored."""
        ...

    def entries_carrying(self, tenant: str, subject: bytes) -> list[int]:
        """Indices, ascending, of the entries whose stored subject list holds `subject`
        (16 bytes): through the index, and lists not indexed yet read directly. Entries
        whose ids are in their body (`iter_unindexed`) are not looked at."""
        ...

    def entries_at(self, tenant: str, indices: Sequence[int]) -> list[EntryRow]:
        """The rows at these indices, in index order (missing ones left out)."""
        ...

    def iter_unindexed(self, tenant: str) -> Iterator[EntryRow]:
        """Rows written before subject lists were stored apart (their ids are in their
        body), in index order."""
        ...

    def verified(self, tenant: str) -> VerifiedPoint | None:
        """Where the last recorded verification of the tenant's log ended."""
        ...

    def iter_checkpoints(self, tenant: str) -> Iterator[StoredCheckpoint]:
        """Checkpoints in the order they were written (`seq`)."""
        ...

    def latest_checkpoint(self, tenant: str) -> StoredCheckpoint | None: ...

    def tip(self, tenant: str) -> tuple[LedgerHead | None, StoredCheckpoint | None]:
        """`head` and `latest_checkpoint`, read together."""
        ...

    def checkpoint_at(self, tenant: str, size: int) -> StoredCheckpoint | None:
        """The latest checkpoint written for exactly `size` entries, if any."""
        ...

    def checkpoints_after(self, tenant: str, after_seq: int, limit: int) -> list[StoredCheckpoint]:
        """Up to `limit` checkpoints with `seq > after_seq`, oldest first (a page)."""
        ...


class LedgerStore(LedgerReader, Protocol):
    """A ledger store: reads plus atomic appends."""

    def append(
        self,
        tenant: str,
        expected_size: int,
        *,
        entries: Sequence[tuple[bytes, bytes]],
        nodes: Sequence[NodeRow],
        frontier: Sequence[bytes],
        checkpoint_note: str,
        subject_sets: Sequence[SubjectSetRow] = (),
        base: AppendBase | None = None,
    ) -> int:
        """In one transaction: add `(body, leaf_hash)` entries from index `expected_size`,
        the completed `nodes`, the new head, and the signed checkpoint for the new size;
        returns the checkpoint's `seq`. Each of `subject_sets` names the subject list of
        the entry at that offset: a list not stored yet is stored and indexed, an existing
        one is shared. Inside the owning gateway store's `transaction()`, it joins that
        transaction.

        `base`: the head and latest checkpoint the append was built on, for a caller that
        did not read them in this transaction (it remembered them): then they are checked
        too, not only the size.

        Raises `LogMoved` if the log no longer has `expected_size` entries (or is not at
        `base`), `StoreConflict` if part of the append is there already.
        """
        ...

    def add_checkpoint(self, tenant: str, expected_size: int, note: str) -> None:
        """Store a checkpoint for the current size, if that is still `expected_size`."""
        ...

    def writing(self, tenant: str) -> AbstractContextManager[None]:
        """A transaction (or the one already open) holding the tenant's write lock from
        its next statement on (PostgreSQL sends the lock with that statement): the head
        read inside stays the head until it ends, so an append built on it cannot be
        raced, by a thread or by another process."""
        ...

    def snapshot(self) -> AbstractContextManager[LedgerReader]:
        """A reader that sees one consistent state while writers carry on."""
        ...

    def index_subject_lists(self, tenant: str, limit: int) -> int:
        """Add up to `limit` stored lists not indexed yet to the index of ids; how many."""
        ...

    def unsound_index(self, tenant: str) -> list[int]:
        """Indexed lists whose index rows are not the ones their ids give (the index is
        derived, so not covered by the log's signatures: a lookup through a damaged one
        would miss transfers)."""
        ...

    def reindex_subject_lists(self, tenant: str, set_nos: Sequence[int]) -> None:
        """Rebuild the index rows of these lists from the lists."""
        ...

    def set_verified(self, tenant: str, point: VerifiedPoint) -> None:
        """Record where a verification of the tenant's log ended (replacing the last)."""
        ...

    def close(self) -> None: ...


class AccountStore(Protocol):
    """The account register: accounts, invitations, console sessions, API tokens,
    sign-in throttles, tenants' identity providers and the logins pending at them.
    Lookups by secret take its SHA-256 hash; compare-and-set methods (`advance_totp_step`,
    `use_recovery_code`, `use_invitation`, `take_oidc_pending`) answer whether they won,
    so two requests racing with one code, link or login cannot both succeed."""

    def create_account(self, account: AccountRecord) -> None:
        """AlreadyExists when the id or the email is taken."""
        ...

    def get_account(self, account_id: str) -> AccountRecord: ...
    def account_by_email(self, email: str) -> AccountRecord | None: ...
    def list_accounts(self, tenant: str | None) -> list[AccountRecord]:
        """The tenant's accounts (None: the operators), oldest first."""
        ...

    def update_account(
        self,
        account_id: str,
        *,
        status: AccountStatus | None = None,
        password_hash: str | None = None,
        sealed_totp: bytes | None = None,
        recovery_hashes: Sequence[bytes] | None = None,
        disabled_at: datetime | None = None,
    ) -> AccountRecord:
        """Change what is given (None leaves it)."""
        ...

    def advance_totp_step(self, account_id: str, step: int) -> bool:
        """Record `step` as used if it is later than the last one used; False if not."""
        ...

    def use_recovery_code(self, account_id: str, code_hash: bytes) -> bool:
        """Remove the code if the account has it; False if it had not (or already used)."""
        ...

    def add_invitation(self, invitation: InvitationRecord) -> None: ...
    def invitation_by_hash(self, token_hash: bytes) -> InvitationRecord | None: ...
    def set_invitation_totp(self, token_hash: bytes, sealed_totp: bytes) -> None: ...
    def use_invitation(self, token_hash: bytes, at: datetime) -> bool:
        """Mark the invitation used; False if it was used already."""
        ...

    def create_session(self, session: SessionRecord) -> None: ...
    def session_by_hash(self, token_hash: bytes) -> SessionRecord | None: ...
    def touch_session(self, session_id: str, at: datetime) -> None: ...
    def set_session_step_up(self, session_id: str, at: datetime) -> None: ...
    def delete_session(self, session_id: str) -> None: ...
    def delete_sessions_of(self, account_id: str) -> int:
        """End every session of the account (disabled, or password changed)."""
        ...

    def create_token(self, token: ApiTokenRecord) -> None: ...
    def token_by_hash(self, token_hash: bytes) -> ApiTokenRecord | None: ...
    def get_token(self, token_id: str) -> ApiTokenRecord: ...
    def list_tokens(self, tenant: str | None) -> list[ApiTokenRecord]:
        """The tenant's tokens (None: the operators'), oldest first, revoked included."""
        ...

    def revoke_token(self, token_id: str, at: datetime) -> ApiTokenRecord: ...
    def revoke_tokens_of(self, account_id: str, at: datetime) -> int: ...
    def set_token_step_up(self, token_id: str, at: datetime) -> None: ...

    def get_throttle(self, key: str) -> ThrottleRecord | None: ...
    def put_throttle(self, record: ThrottleRecord) -> None: ...
    def clear_throttle(self, key: str) -> None: ...

    def put_oidc(self, record: OidcRecord) -> None:
        """Set (or replace) the tenant's identity provider."""
        ...

    def get_oidc(self, tenant: str) -> OidcRecord | None: ...
    def delete_oidc(self, tenant: str) -> bool: ...

    def put_oidc_pending(self, record: OidcPendingRecord, *, keep: int) -> int:
        """Keep a login begun at the tenant's identity provider, then drop the tenant's
        oldest pending logins beyond `keep` (never this one); how many were dropped.
        NotFound for an unknown tenant."""
        ...

    def get_oidc_pending(self, state_hash: bytes) -> OidcPendingRecord | None:
        """A pending login, left in place (expired ones too: the caller has the clock)."""
        ...

    def take_oidc_pending(self, state_hash: bytes) -> OidcPendingRecord | None:
        """Remove a pending login and return it; None if there is none. Of any number of
        callers with the same hash, in any number of processes, one gets it."""
        ...

    def purge_oidc_pending(self, now: datetime) -> int:
        """Remove every pending login that expired at or before `now`; how many."""
        ...


class Store(Protocol):
    """Everything the gateway persists. Implementations: `gateway.store.sqlite`."""

    @property
    def accounts(self) -> AccountStore:
        """The account register, in the same database (and transactions)."""
        ...

    @property
    def ledger(self) -> LedgerStore:
        """The transfer log's rows, in the same database: appends made inside
        `transaction()` commit or roll back with it."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside commit together or not at all (ledger appends included)."""
        ...

    def close(self) -> None: ...

    @property
    def shared(self) -> bool:
        """Whether several processes may use this store at once (PostgreSQL). An unshared
        store (SQLite) has one process, so at its start every running run is orphaned."""
        ...

    @property
    def journals_subjects(self) -> bool:
        """Whether a full sync should journal its subject writes with its seen log
        (`mark_seen`'s `writes`) and merge them many commits at once (`merge_run_writes`) rather
        than write them page by page (`write_subjects`). True on SQLite, where each
        commit's keyed ids dirty a random page of the subjects' B-tree each, written whole
        to the WAL; both stores keep both paths."""
        ...

    # tenants
    def create_tenant(self, tenant: Tenant) -> None: ...
    def get_tenant(self, tenant_id: str) -> Tenant: ...
    def terminate_tenant(self, tenant_id: str, at: datetime) -> bool:
        """Mark the tenant terminated; False when it already was."""
        ...

    def destroy_tenant_data(self, tenant_id: str, at: datetime) -> None:
        """Crypto-shred the tenant: every row of its data, accounts and secrets deleted,
        its subject key overwritten; its row and its ledger kept."""
        ...

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
    def source_standing(
        self, tenant: str, connector_id: str
    ) -> tuple[ConnectorRecord | None, list[Instruction]]:
        """The connector (None when it does not exist or was deleted) and its instructions
        in grant order, read together: what an authorisation check per page needs."""
        ...

    def list_instructions(self, tenant: str, connector_id: str) -> list[Instruction]: ...
    def revoke_instruction(self, instruction_id: str, by: str, at: datetime) -> Instruction: ...

    # runs
    def start_run(self, run: RunRecord) -> bool:
        """Insert a running run unless the connector already has one; False if it has."""
        ...

    def get_run(self, run_id: str) -> RunRecord: ...
    def running_runs(self) -> list[RunRecord]: ...
    def save_run_progress(
        self,
        run_id: str,
        cursor: str | None,
        watermark: str | None,
        counts: Mapping[str, int],
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> None:
        """Record a committed page. With `owner`: only if the run is still running and that
        process's (its lease extended to `lease_until`), else `LeaseLost`."""
        ...

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        at: datetime,
        counts: Mapping[str, int],
        error: str | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        """End a run. With `owner`: only if that process still owns it, else `LeaseLost`
        (another process carries it on). A run an admin stopped keeps its owner, who may
        still record how it ended. The run's seen log (`mark_seen`) is deleted in the same
        transaction, whatever the status: keyed ids are kept no longer than the sweep that
        needs them (not when `LeaseLost`: the new owner's sweep still does)."""
        ...

    def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        """Extend the owner's lease on a running run; False if it is no longer theirs."""
        ...

    def claim_runs(
        self, owner: str, until: datetime, limit: int, *, expired_before: datetime | None
    ) -> list[RunRecord]:
        """Take over up to `limit` running runs whose lease ran out before `expired_before`
        (None: every running run, for an unshared store at start), oldest first. Two
        processes claiming at once never get the same run."""
        ...

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
    ) -> None:
        """Store these people's digests and presence, as written (seen) by the run; a
        person twice in `rows` keeps the last. A row marked `new` is inserted as one:
        if the person is stored already, nothing of the call is written and it raises
        `AlreadyExists` (the writer then writes again without the mark)."""
        ...

    def mark_seen(
        self,
        tenant: str,
        connector_id: str,
        run_id: str,
        subject_ids: Sequence[str],
        writes: Sequence[SubjectWrite] = (),
    ) -> None:
        """Record that the run found these subjects at the source unchanged, so its sweep
        (`unseen_present`) does not take them for leavers, and journal its `writes` (what
        `write_subjects` would write now; `merge_run_writes` writes them). Appended to the
        run's seen log (one row a call, not a write per subject: keyed ids would dirty a
        random page each), in the caller's transaction, so a page's marks and writes
        commit with its events and a run resumed after a crash keeps those of the pages it
        committed. The log lives until the run ends (`finish_run`, which merges what is
        journaled first, as `stop_running_runs` does) or its connector, tenant or history
        goes; an erasure strikes its people from every journal (`delete_subject_data`)."""
        ...

    def journaled_states(self, run_id: str, subject_ids: Sequence[str]) -> dict[str, SubjectState]:
        """The last state the run journaled and has not merged of each of these people
        who has one: what they compare with, over `subject_states`."""
        ...

    def merge_run_writes(self, run_id: str, *, owner: str | None = None) -> None:
        """Write the run's journal into the subjects, the last write of each person, in one
        transaction, and empty it (nothing to do, and no transaction, when it is empty).
        With `owner`, only while that process owns the running run (`LeaseLost` if not). A run
        sweeps only after this (its written people are its seen ones)."""
        ...

    def count_present(self, tenant: str, connector_id: str) -> int: ...
    def unseen_present(self, tenant: str, connector_id: str, run_id: str) -> Iterator[str]:
        """A full sync's leavers, in id order: the connector's present subjects the run
        neither wrote (`write_subjects` with this run, or journaled) nor marked seen
        (`mark_seen`), computed by the database however many subjects the connector has."""
        ...

    def append_events(self, tenant: str, events: Sequence[NewEvent | RenderedEvent]) -> list[int]:
        """Number the events after the tenant's last and store them, each with its wire
        JSON (`gateway.store.event_wire`; events may come rendered but for their number,
        `render_events`); returns their sequence numbers."""
        ...

    def events_after(self, tenant: str, after_seq: int, limit: int) -> list[EventRow]: ...
    def feed_rows(self, tenant: str, after_seq: int, limit: int) -> list[FeedRow]:
        """`events_after` as the feed sends them: the same events in the same order, each
        with its wire JSON (stored at write time; built on read, by the same function, for
        events written before the wire column existed)."""
        ...

    def feed_block(self, tenant: str, after_seq: int, limit: int) -> FeedBlock | None:
        """The events `feed_rows` would give, as one `FeedBlock`, or None when they are not
        one block (more than one source connector, an event without wire JSON, or none)."""
        ...

    def feed_state(self, tenant: str) -> tuple[int, int]:
        """The tenant's feed generation (bumped whenever an event is deleted or rewritten)
        and how many of its people are restricted: what a kept `FeedBlock` depends on
        besides the events after its cursor."""
        ...

    def last_event_seq(self, tenant: str) -> int: ...

    # data-subject requests (read: no index on these, a request is rare)
    def subjects_with_email(self, tenant: str, email: str) -> list[tuple[str, str]]:
        """(subject id, source connector) of every stored event whose data holds exactly
        `email` (already normalised as the egress schema does), each pair once, sorted."""
        ...

    def events_of_subjects(self, tenant: str, subject_ids: Sequence[str]) -> list[EventRow]:
        """Every stored event about these subjects, in sequence order."""
        ...

    def delete_subject_data(self, tenant: str, subject_ids: Sequence[str]) -> int:
        """Delete every stored event and change-detection row of these subjects (erasure);
        the number of events deleted. Deleted content is overwritten where the engine can
        (SQLite `secure_delete`); `scrub` then clears it from the write-ahead log."""
        ...

    def scrub(self) -> None:
        """After an erasure's COMMIT: leave no copy of deleted rows in the database's own
        files where the engine allows it (SQLite: a TRUNCATE checkpoint of the WAL)."""
        ...

    # suppressions: people erased or restricted (by keyed id)
    def add_suppressions(self, rows: Sequence[Suppression]) -> None:
        """Add these, replacing a tenant's existing row for the same subject."""
        ...

    def remove_suppression(self, tenant: str, subject_id: str) -> bool: ...
    def suppressed(self, tenant: str, subject_ids: Sequence[str]) -> dict[str, SuppressionKind]:
        """Which of these keyed ids are suppressed, and how."""
        ...

    def list_suppressions(self, tenant: str) -> list[Suppression]: ...
    def restricted(self, tenant: str) -> frozenset[str]:
        """The keyed ids of the tenant's restricted people (asked before every feed page)."""
        ...

    # data-subject requests as records
    def create_request(self, request: DsrRequest) -> None: ...
    def get_request(self, tenant: str, request_id: str) -> DsrRequest:
        """`NotFound` for an unknown id, or one of another tenant."""
        ...

    def list_requests(self, tenant: str, state: RequestState | None = None) -> list[DsrRequest]:
        """Oldest due first."""
        ...

    def close_request(
        self,
        tenant: str,
        request_id: str,
        *,
        state: RequestState,
        outcome: RequestOutcome,
        closed_at: datetime,
        closed_by: str,
    ) -> bool:
        """Close an open request; False when it is not open (or not there)."""
        ...

    def request_counts(self, now: datetime) -> dict[str, tuple[int, int]]:
        """Per tenant with any open request: (open, of which overdue at `now`)."""
        ...

    # erasure receipts: a consumer's confirmation that it removed an erased person
    def add_erasure_receipt(
        self, tenant: str, subject_id: str, consumer_id: str, at: datetime
    ) -> datetime:
        """Record it (once: a repeat keeps the first time); the time on record."""
        ...

    def erasure_receipts(
        self, tenant: str, subject_ids: Sequence[str]
    ) -> list[tuple[str, str, datetime]]:
        """(subject id, consumer id, acknowledged at) for these ids, sorted."""
        ...

    # feed consumers
    def create_consumer(self, consumer: Consumer, token_hash: bytes) -> None: ...

    def feed_access(
        self, token_hash: bytes, source: tuple[str, str] | None = None
    ) -> FeedAccess | None:
        """The consumer holding the token (revoked or not), with its tenant's
        `feed_state`, read together; None for an unknown token. With `source` (tenant,
        connector), that connector's `source_standing` too, in `standings` (a feed page's
        checks in one read)."""
        ...

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
        """Hide the connector from every lookup; its row stays, so its id is never reused.
        Its runs' seen logs go."""
        ...

    def deleted_connector(self, tenant: str, connector_id: str) -> ConnectorRecord | None:
        """The record of a deleted connector (None if it exists or never did)."""
        ...

    def stop_running_runs(
        self, tenant: str, connector_id: str, at: datetime, error: str
    ) -> list[str]:
        """Mark the connector's running runs stopped (their seen logs deleted: nothing
        more of them commits); returns their ids."""
        ...

    def present_subjects(self, tenant: str, connector_id: str) -> list[str]: ...
    def subject_page(
        self, tenant: str, connector_id: str, offset: int, limit: int
    ) -> tuple[int, list[str]]:
        """How many subjects the connector has rows for (present or not), and `limit` of
        their ids from `offset` in id order: a pushed source's list, a page at a time."""
        ...

    def forget_absent_subjects(
        self, tenant: str, connector_id: str, subject_ids: Sequence[str]
    ) -> int:
        """Delete the change-detection rows of these subjects where they are absent (their
        events stay, for the feed and retention); the number deleted."""
        ...

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

    # checkpoint push: a URL of the tenant's own that receives every new signed checkpoint
    def set_checkpoint_push(self, tenant: str, url: str, at: datetime) -> CheckpointPush:
        """Set (or replace) the tenant's push URL; progress starts afresh. NotFound if no
        such tenant."""
        ...

    def get_checkpoint_push(self, tenant: str) -> CheckpointPush | None: ...
    def clear_checkpoint_push(self, tenant: str) -> bool:
        """Stop pushing; False if nothing was configured."""
        ...

    def list_checkpoint_pushes(self) -> list[CheckpointPush]:
        """Every configured push, by tenant."""
        ...

    def checkpoint_pushed(self, tenant: str, url: str, seq: int, at: datetime) -> None:
        """Record that checkpoint `seq` reached `url` (ignored if the URL was replaced or
        cleared meanwhile, or `seq` is not newer than what was recorded)."""
        ...

    def checkpoint_push_failed(self, tenant: str, url: str, reason: str, at: datetime) -> None:
        """Record a failed push (a short reason code); ignored if the URL was replaced."""
        ...

    def claim_checkpoint_push(
        self, tenant: str, url: str, owner: str, until: datetime, now: datetime
    ) -> bool:
        """Make `owner` the one process pushing the tenant's checkpoints until `until`:
        True if it held the claim already or the last claim ran out by `now`; False if
        another process holds it (or the URL was replaced)."""
        ...

    # push destinations (`gateway.delivery.push`): configuration, and the worker's state
    def create_destination(self, destination: Destination) -> None:
        """Store a new destination (its cursor as given); NotFound for an unknown tenant."""
        ...

    def get_destination(self, tenant: str, destination: str) -> Destination:
        """NotFound if there is no such destination."""
        ...

    def list_destinations(self, tenant: str | None = None) -> list[Destination]:
        """A tenant's destinations by id, or with None every tenant's."""
        ...

    def change_destination(self, destination: Destination) -> Destination:
        """Replace the configuration (secrets, event types, thin, batch size, dead-letter
        limits, pause); the worker's state is left alone. NotFound if it is gone."""
        ...

    def delete_destination(self, tenant: str, destination: str) -> bool:
        """Delete it with its dead letters; False if there was none."""
        ...

    def claim_destination(
        self, tenant: str, destination: str, owner: str, until: datetime, now: datetime
    ) -> bool:
        """Make `owner` the one process delivering to it until `until`: True if it held the
        lease already or the last one ran out by `now`; False if another holds it (or the
        destination is gone)."""
        ...

    def advance_destination(
        self,
        tenant: str,
        destination: str,
        owner: str,
        after_seq: int,
        *,
        at: datetime,
        delivered: bool,
        dead: Sequence[tuple[int, str]] = (),
        reason: str = "",
    ) -> None:
        """Move the cursor to `after_seq` (never back), clear the failures, and park `dead`
        (seq, subject id) as dead letters with `reason`, in one transaction; `delivered`
        also sets `delivered_at`. `LeaseLost` if `owner` no longer holds the lease."""
        ...

    def destination_failed(
        self,
        tenant: str,
        destination: str,
        owner: str,
        *,
        attempts: int,
        since: datetime,
        reason: str,
    ) -> None:
        """Record the current batch's failures so far (`LeaseLost` as above)."""
        ...

    def dead_letters(
        self, tenant: str, destination: str, after_seq: int, limit: int
    ) -> list[DeadLetter]:
        """The destination's dead letters after `after_seq`, by number."""
        ...

    def dead_letter_counts(self) -> dict[tuple[str, str], int]:
        """Dead letters per (tenant, destination) that has any."""
        ...

    def parked_subjects(self, tenant: str, destination: str) -> frozenset[str]:
        """Keyed ids with a dead letter at this destination."""
        ...

    def request_replay(self, tenant: str, destination: str, at: datetime) -> int:
        """Ask the worker to send the dead letters again; how many there are now. NotFound
        if there is no such destination."""
        ...

    def replayed(
        self, tenant: str, destination: str, owner: str, seqs: Sequence[int], *, done: bool
    ) -> None:
        """Remove these dead letters (sent again, or their events gone); `done` also ends
        the replay request (`LeaseLost` as above)."""
        ...

    def events_by_seq(self, tenant: str, seqs: Sequence[int]) -> list[FeedRow]:
        """The feed rows of these events, by number (those that still exist)."""
        ...

    # retention (gateway.lifecycle.retention): find what is past its time, then delete it
    # in batches, each one short transaction (`gateway.store.retention_sql`)
    def retention_policy(self, tenant: str) -> RetentionOverrides | None:
        """The tenant's own retention days (None: the defaults throughout)."""
        ...

    def set_retention_policy(self, overrides: RetentionOverrides) -> None:
        """Set (or replace) the tenant's overrides; NotFound for an unknown tenant."""
        ...

    def superseded_events(self, tenant: str, before: datetime) -> list[int]:
        """Sequence numbers of events that occurred before `before` and are not their
        person's newest from that source (a later event of the same source and subject
        exists), restricted people left out; in order."""
        ...

    def tombstones_with_data(self, tenant: str, before: datetime) -> list[int]:
        """`subject.deleted` and `subject.erased` events before `before` that still hold data
        (restricted people left out)."""
        ...

    def leaver_events(self, tenant: str, before: datetime) -> list[tuple[str, str, int]]:
        """(source, subject id, seq) of every event of each person whose newest event from a
        source is a `subject.deleted` that occurred before `before` (restricted people
        left out), by source, person and seq."""
        ...

    def delete_events(self, tenant: str, seqs: Sequence[int]) -> int:
        """Delete these events in one transaction, the tenant's highest number kept first
        (numbers are never given twice); how many were deleted."""
        ...

    def clear_event_data(self, tenant: str, seqs: Sequence[int]) -> int:
        """Set these events' data to null, their wire JSON rebuilt; how many changed."""
        ...

    def forget_leavers(self, tenant: str, people: Sequence[tuple[str, str]]) -> int:
        """Delete the change-detection rows of these (source, subject id) pairs that are
        still absent (one who came back meanwhile is kept); how many."""
        ...

    def expired_records(
        self, kind: ExpiredKind, tenant: str | None, before: datetime
    ) -> list[RecordKey]:
        """Keys of the records of `kind` whose time ran out before `before`: the tenant's, or
        with None the gateway's own (operators' sessions, invitations and tokens, sign-in
        throttles)."""
        ...

    def delete_records(
        self, kind: ExpiredKind, tenant: str | None, keys: Sequence[RecordKey]
    ) -> int:
        """Delete these records (keys from `expired_records`) in one transaction; how many."""
        ...

    # jobs that run on one replica at a time
    def claim_job(self, name: str, owner: str, until: datetime, now: datetime) -> bool:
        """Make `owner` the one process running job `name` until `until`: True if it held
        the claim already, or nobody did, or the last claim ran out by `now`. Of processes
        claiming at once, one wins."""
        ...

    def finish_job(self, name: str, owner: str, outcome: str, at: datetime) -> bool:
        """Release `owner`'s claim, recording the outcome ("succeeded" also as the last
        success); False if the claim was no longer `owner`'s."""
        ...

    def job_state(self, name: str) -> JobState | None:
        """The job as stored (None: it never ran)."""
        ...
