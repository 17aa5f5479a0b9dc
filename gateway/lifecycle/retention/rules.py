"""The retention rules: each finds what its part of the policy says is past its time, and
removes it one batch at a time.

A rule is a small object with one protocol (`Rule`): `due` lists what it would remove now
(read-only: the dry run is `due` alone, so it counts exactly what a run would find), and
`remove` deletes one batch of that list in one short transaction. The job
(`gateway.lifecycle.retention.job`) walks `RULES` for every tenant, then for the gateway's
own records; adding a rule is adding an object to that tuple. The ledger is never touched
by these rules: its entries prove what was processed and hold keyed ids and counts only.

What the rules remove, and why it may go:

* `feed-compaction`: a person's superseded feed events (an older event of the same tenant,
  source and keyed id, when a newer one exists), once older than `feed_compaction_days`.
  A consumer reading from the start, or one that fell behind, still gets each person's
  newest state, which is all it applies; the feed pages over the gaps (event numbers are
  never given twice, `event_heads`).
* `tombstone-data`: a `subject.deleted` or `subject.erased` event holds no data (Sluis
  writes them without; this catches any that does, e.g. from an older release).
* `leavers`: a person whose newest event from a source is a `subject.deleted` older than
  `leaver_grace_days` is forgotten there: every remaining event (the tombstone too) and the
  change-detection row. Should the source list them again later, they come back as new.
* `run-history`: finished sync runs older than `run_history_days` (counts and error codes:
  usage data, 24 months at most). Quarantined records are never stored, only counted in
  these runs, so this is also where quarantine details end.
* `requests` and `erasure-receipts`: a data-subject request closed longer ago than
  `request_history_days`. They are the controller's proof of having answered (GDPR Art.
  5(2)), so they are kept as long as usage data, not shorter; a receipt is part of its
  suppression and goes only once the suppression is lifted.
* `sessions`, `invitations`, `api-tokens`, `pending-sign-ins`, `sign-in-throttles`: the
  account register's short-lived records, `short_lived_days` after they ended (a week by
  default: long enough to look into an incident). These also exist for the gateway itself
  (operators), which the job covers under the defaults.

Never removed here: suppressions (they keep erased people out), a restricted person's data
(GDPR Art. 18: stored, not deleted), instructions (who authorised what), and the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Final, Protocol

from gateway.lifecycle.retention.policy import RetentionPolicy
from gateway.store.protocols import Store
from gateway.store.records import ExpiredKind, RecordKey, RetentionField


class Rule(Protocol):
    """One retention rule (see the module docstring)."""

    #: Names the rule in logs, metrics (`rule` label), the ledger and the CLI.
    @property
    def name(self) -> str: ...

    #: What `due` counts ("events", "people", "records").
    @property
    def unit(self) -> str: ...

    #: Whether the gateway itself has such data (operators' records, throttles).
    @property
    def gateway(self) -> bool: ...

    def due(
        self, store: Store, tenant: str | None, policy: RetentionPolicy, now: datetime
    ) -> Sequence[Any]:
        """What this rule would remove now for `tenant` (None: the gateway's own records);
        its length is the count a dry run reports. Reads only."""
        ...

    def remove(self, store: Store, tenant: str | None, batch: Sequence[Any]) -> int:
        """Remove one batch of what `due` found, in one transaction; how many of it went."""
        ...


#: Records the gateway itself has too (its operators', and sign-in throttles).
_GATEWAY_KINDS: Final[frozenset[ExpiredKind]] = frozenset(
    {"sessions", "invitations", "api_tokens", "signin_throttles"}
)


def _cutoff(policy: RetentionPolicy, field: RetentionField, now: datetime) -> datetime:
    return now - timedelta(days=policy.days()[field])


@dataclass(frozen=True, slots=True)
class FeedCompaction:
    name: str = "feed-compaction"
    unit: str = "events"
    gateway: bool = False

    def due(
        self, store: Store, tenant: str | None, policy: RetentionPolicy, now: datetime
    ) -> Sequence[int]:
        if tenant is None:
            return []
        return store.superseded_events(tenant, _cutoff(policy, "feed_compaction_days", now))

    def remove(self, store: Store, tenant: str | None, batch: Sequence[int]) -> int:
        return 0 if tenant is None else store.delete_events(tenant, batch)


@dataclass(frozen=True, slots=True)
class TombstoneData:
    name: str = "tombstone-data"
    unit: str = "events"
    gateway: bool = False

    def due(
        self, store: Store, tenant: str | None, policy: RetentionPolicy, now: datetime
    ) -> Sequence[int]:
        if tenant is None:
            return []
        return store.tombstones_with_data(tenant, _cutoff(policy, "feed_compaction_days", now))

    def remove(self, store: Store, tenant: str | None, batch: Sequence[int]) -> int:
        return 0 if tenant is None else store.clear_event_data(tenant, batch)


@dataclass(frozen=True, slots=True)
class Leaver:
    """A person who left one source: their keyed id there, and every event left of them."""

    source: str
    subject_id: str
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Leavers:
    name: str = "leavers"
    unit: str = "people"
    gateway: bool = False

    def due(
        self, store: Store, tenant: str | None, policy: RetentionPolicy, now: datetime
    ) -> Sequence[Leaver]:
        if tenant is None:
            return []
        rows = store.leaver_events(tenant, _cutoff(policy, "leaver_grace_days", now))
        return [
            Leaver(source, subject_id, tuple(seq for _, _, seq in events))
            for (source, subject_id), events in groupby(rows, key=lambda r: (r[0], r[1]))
        ]

    def remove(self, store: Store, tenant: str | None, batch: Sequence[Leaver]) -> int:
        if tenant is None or not batch:
            return 0
        with store.transaction():
            store.delete_events(tenant, [seq for person in batch for seq in person.seqs])
            store.forget_leavers(tenant, [(p.source, p.subject_id) for p in batch])
        return len(batch)


@dataclass(frozen=True, slots=True)
class Expired:
    """Records of one kind whose time (see `Store.expired_records`) is older than a rule."""

    name: str
    kind: ExpiredKind
    field: RetentionField
    unit: str = "records"

    @property
    def gateway(self) -> bool:
        return self.kind in _GATEWAY_KINDS

    def due(
        self, store: Store, tenant: str | None, policy: RetentionPolicy, now: datetime
    ) -> Sequence[RecordKey]:
        return store.expired_records(self.kind, tenant, _cutoff(policy, self.field, now))

    def remove(self, store: Store, tenant: str | None, batch: Sequence[RecordKey]) -> int:
        return store.delete_records(self.kind, tenant, batch)


#: Every rule, in the order the job applies them (compaction before leavers: a leaver's
#: superseded events go first, as any person's would).
RULES: Final[tuple[Rule, ...]] = (
    FeedCompaction(),
    TombstoneData(),
    Leavers(),
    Expired("run-history", "sync_runs", "run_history_days"),
    Expired("requests", "dsr_requests", "request_history_days"),
    Expired("erasure-receipts", "erasure_receipts", "request_history_days"),
    Expired("sessions", "sessions", "short_lived_days"),
    Expired("invitations", "invitations", "short_lived_days"),
    Expired("api-tokens", "api_tokens", "short_lived_days"),
    Expired("pending-sign-ins", "oidc_pending", "short_lived_days"),
    Expired("sign-in-throttles", "signin_throttles", "short_lived_days"),
)
#: Every rule's name (the metric's `rule` label values, created at 0).
RULE_NAMES: Final = tuple(r.name for r in RULES)
