"""A tenant's retention policy: how many days each retention rule keeps what it covers.

The platforms Sluis serves promise their users retention limits in their privacy
statements (account data for the contract plus 90 days; usage data at most 24 months), and
a processor in the middle must not keep longer what passes through it. So each rule has a
ceiling (`RETENTION_MAXIMA`, in the settings module) that nothing may exceed: not the
gateway's defaults (the settings refuse them), not a tenant's own policy (`set_policy`
refuses it, and the API answers 422). A tenant, the controller, may always keep less.

The defaults come from the settings (`retention_*`); a tenant's overrides are stored with
only the rules it changed, so a later change of a default still reaches every tenant that
did not choose otherwise. Changing the policy is an audit entry on the tenant's ledger
(`retention.changed`, naming the rules whose days changed: configuration, not data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Final

from gateway.ledger.record import Acting
from gateway.runtime.config import RETENTION_MAXIMA, Settings
from gateway.store.protocols import Store
from gateway.store.records import RETENTION_FIELDS, RetentionField, RetentionOverrides

#: The shortest any rule may be: a day. A leaver's `subject.deleted` must stay in the feed
#: long enough for consumers to read it, and a session's record outlives the session.
MINIMUM_DAYS: Final = 1
MAXIMA: Final[Mapping[RetentionField, int]] = {f: RETENTION_MAXIMA[f] for f in RETENTION_FIELDS}


class PolicyError(ValueError):
    """A policy that cannot be set; names the rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each rule keeps what it covers (see `gateway.lifecycle.retention.rules`)."""

    #: A person's superseded feed events are deleted, and a deleted or erased person's
    #: tombstone holds no data, once they are this old.
    feed_compaction_days: int
    #: A leaver (newest event `subject.deleted`) is removed entirely this long after.
    leaver_grace_days: int
    #: Finished sync runs are kept this long.
    run_history_days: int
    #: Closed data-subject requests, and erasure receipts of people no longer suppressed.
    request_history_days: int
    #: Sessions, invitations, API tokens, pending sign-ins and throttles after they end.
    short_lived_days: int

    def days(self) -> dict[RetentionField, int]:
        found: dict[RetentionField, int] = {f: getattr(self, f) for f in RETENTION_FIELDS}
        return found

    def with_overrides(self, overrides: Mapping[RetentionField, int]) -> RetentionPolicy:
        values: dict[str, int] = asdict(self)
        values.update((str(f), days) for f, days in overrides.items())
        return RetentionPolicy(**values)


def defaults_of(settings: Settings) -> RetentionPolicy:
    """The gateway's defaults, from the settings (which keep them within the maxima)."""
    return RetentionPolicy(
        feed_compaction_days=settings.retention_feed_compaction_days,
        leaver_grace_days=settings.retention_leaver_grace_days,
        run_history_days=settings.retention_run_history_days,
        request_history_days=settings.retention_request_history_days,
        short_lived_days=settings.retention_short_lived_days,
    )


def policy_for(store: Store, tenant: str | None, defaults: RetentionPolicy) -> RetentionPolicy:
    """The policy in force for `tenant` (None: the gateway's own records, by the defaults).
    A stored day above today's maximum (kept from an older release) is held to it."""
    if tenant is None:
        return defaults
    overrides = store.retention_policy(tenant)
    if overrides is None:
        return defaults
    held = {f: min(days, MAXIMA[f]) for f, days in overrides.days.items()}
    return defaults.with_overrides(held)


def check(days: Mapping[RetentionField, int]) -> None:
    """`PolicyError` for a day outside its rule's bounds."""
    for field, value in days.items():
        if field not in MAXIMA:
            raise PolicyError(field, "is not a retention rule")
        if not MINIMUM_DAYS <= value <= MAXIMA[field]:
            raise PolicyError(
                field,
                f"must be between {MINIMUM_DAYS} and {MAXIMA[field]} days (the most the "
                "platforms' privacy statements allow)",
            )


def set_policy(
    store: Store,
    by: Acting,
    days: Mapping[RetentionField, int],
    defaults: RetentionPolicy,
    now: datetime,
) -> RetentionPolicy:
    """Replace `by.tenant`'s overrides with `days` (a rule left out follows the default),
    recorded on its ledger with the rules whose days changed; the policy now in force.
    NotFound for an unknown tenant, `PolicyError` for a day out of bounds."""
    check(days)
    with store.transaction():
        store.get_tenant(by.tenant)
        before = policy_for(store, by.tenant, defaults)
        after = defaults.with_overrides(days)
        changed = [f for f in RETENTION_FIELDS if before.days()[f] != after.days()[f]]
        with by.recording(store, "retention.changed", now, changed=changed):
            store.set_retention_policy(RetentionOverrides(by.tenant, dict(days), now, by.actor.id))
    return after


def describe(policy: RetentionPolicy) -> list[str]:
    """The policy in words, for the record of processing (GDPR Art. 30)."""
    p = policy
    return [
        f"Feed events: a person's superseded versions are deleted {p.feed_compaction_days} "
        "days after they were replaced; a deleted or erased person's last event carries no "
        "data.",
        f"Leavers: a person who left a source is removed (their last event and change-"
        f"detection digest) {p.leaver_grace_days} days after they left.",
        f"Sync run history (counts, no personal data): {p.run_history_days} days.",
        f"Closed data-subject requests (keyed ids, no personal data): "
        f"{p.request_history_days} days after closing; a destination's erasure receipt is "
        "kept while the person's suppression lasts, and goes once it is lifted and the "
        f"receipt is {p.request_history_days} days old.",
        "Suppressions of erased and restricted people (keyed ids only): until an admin "
        "lifts them; a restricted person's data is not deleted by retention.",
        f"Console sessions, invitations, API tokens and sign-in throttles: "
        f"{p.short_lived_days} days after they end. Quarantined source records are never "
        "stored (only their count, in the run history).",
    ]
