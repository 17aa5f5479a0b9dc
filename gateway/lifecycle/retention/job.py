"""The retention job: every rule for every tenant, then for the gateway's own records; a
dry run that only counts; and the scheduled run, on one replica at a time.

`apply_rules` is the one walk both the app's scheduled job and `sluis retention run` take,
so what the dry run shows is what a run removes (the dry run is each rule's `due` alone).
A run removes in batches of `BATCH_ROWS`, each its own short transaction, so a first run
over a year of events holds the write lock for one batch at a time while syncs and feed
pages go on between them. Per tenant that lost anything it appends one `retention.applied`
audit entry per rule to the tenant's ledger (the rule and the count: no ids, no data), logs
the counts per rule (tenant ids and numbers only), and after the run scrubs the store's
files (`Store.scrub`: on SQLite the WAL, which still holds the pages as they were).

`RetentionJob` is the scheduled form: due `retention_interval` after the last success (an
hour after a failure), claimed in the store for `CLAIM_SECONDS` and renewed after every
batch, so of any number of replicas one runs it and another takes over if it dies; each
run is metered (`sluis_retention_removed_total{rule}`, `sluis_retention_runs_total
{outcome}`) and its outcome kept in the store, whose last success every replica exports
for the `SluisRetentionNotRunning` alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from gateway.ledger.audit import AuditCounts
from gateway.ledger.record import Acting, recording
from gateway.lifecycle.erasure import scrub
from gateway.lifecycle.retention.policy import RetentionPolicy, policy_for
from gateway.lifecycle.retention.rules import RULES, Rule
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.protocols import Store, StoreError

log = logging.getLogger("sluis.retention")

#: The job's name in the store's claims.
JOB_NAME: Final = "retention"
#: Rows (events, people, records) removed per transaction.
BATCH_ROWS: Final = 5000
#: How long a claim lasts without renewal; renewed after every batch.
CLAIM_SECONDS: Final = 600.0
#: A failed run is tried again after this long (or the interval, if shorter).
RETRY_SECONDS: Final = 3600.0
#: How often the app looks whether the job is due.
CHECK_SECONDS: Final = 300.0


class ClaimLost(StoreError):
    """Another process took the retention job over (this one stalled past its claim)."""


class Stopped(StoreError):
    """The app is shutting down: the run ends after the batch it was in."""


@dataclass(frozen=True, slots=True)
class Removal:
    """What one rule removed (or, in a dry run, would remove) for one tenant (None: the
    gateway's own records)."""

    tenant: str | None
    rule: str
    unit: str
    count: int


@dataclass(frozen=True, slots=True)
class RetentionReport:
    at: datetime
    dry_run: bool
    removals: list[Removal] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r.count for r in self.removals)

    def document(self) -> dict[str, Any]:
        """JSON-ready: per tenant ("(gateway)" for the gateway's own records), per rule."""
        return {
            "at": self.at.isoformat(),
            "dry_run": self.dry_run,
            "total": self.total,
            "removals": [
                {"tenant": r.tenant, "rule": r.rule, "unit": r.unit, "count": r.count}
                for r in self.removals
            ],
        }


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _scopes(store: Store, tenant: str | None) -> list[str | None]:
    if tenant is not None:
        store.get_tenant(tenant)  # NotFound for an unknown one
        return [tenant]
    live: list[str | None] = [t.id for t in store.list_tenants() if t.destroyed_at is None]
    return [*live, None]


def apply_rules(
    store: Store,
    *,
    defaults: RetentionPolicy,
    now: datetime,
    dry_run: bool,
    tenant: str | None = None,
    acting_for: Callable[[str], Acting] | None = None,
    batch_rows: int = BATCH_ROWS,
    rules: Sequence[Rule] = RULES,
    renew: Callable[[], None] = lambda: None,
) -> RetentionReport:
    """Apply (or with `dry_run` only count) every rule for `tenant`, or for every tenant
    not destroyed and then the gateway's own records. `acting_for` gives the ledger to
    record each tenant's removals on (required unless `dry_run`); `renew` is called after
    every batch (the scheduled job renews its claim there)."""
    if not dry_run and acting_for is None:
        raise ValueError("a retention run records on the tenants' ledgers: give acting_for")
    report = RetentionReport(now, dry_run)
    for scope in _scopes(store, tenant):
        policy = policy_for(store, scope, defaults)
        found: list[Removal] = []
        for rule in rules:
            if scope is None and not rule.gateway:
                continue
            due = rule.due(store, scope, policy, now)
            count = len(due)
            if not dry_run:
                count = 0
                for batch in _batches(due, batch_rows):
                    count += rule.remove(store, scope, batch)
                    renew()
            found.append(Removal(scope, rule.name, rule.unit, count))
        report.removals.extend(found)
        if not dry_run and acting_for is not None:
            _record(store, scope, found, acting_for, now)
    if not dry_run and report.total:
        scrub(store, "retention run committed")
    return report


def _record(
    store: Store,
    scope: str | None,
    found: Sequence[Removal],
    acting_for: Callable[[str], Acting],
    now: datetime,
) -> None:
    """The tenant's ledger entries (one per rule that removed anything) and the log line."""
    removed = [r for r in found if r.count]
    if not removed:
        return
    log.info(
        "retention removed for %s: %s",
        f"tenant {scope}" if scope is not None else "the gateway",
        ", ".join(f"{r.rule} {r.count} {r.unit}" for r in removed),
        extra={"tenant": scope} if scope is not None else None,
    )
    if scope is None:
        return
    by = acting_for(scope)
    entries = [
        by.entry("retention.applied", now, target=r.rule, counts=AuditCounts(records=r.count))
        for r in removed
    ]
    with recording(store, by.ledger, entries):
        pass


class RetentionJob:
    """The scheduled retention run (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        metrics: GatewayMetrics,
        *,
        defaults: Callable[[], RetentionPolicy],
        acting_for: Callable[[str], Acting],
        clock: Callable[[], datetime],
        owner: str,
        interval: float,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.defaults = defaults
        self.acting_for = acting_for
        self.clock = clock
        self.owner = owner
        self.interval = timedelta(seconds=interval)
        self.batch_rows = batch_rows
        self._stopping = threading.Event()
        self._current: asyncio.Future[RetentionReport | None] | None = None

    def due(self, now: datetime) -> bool:
        """Never run, or `interval` since the last success, or an hour since a failure."""
        state = self.store.job_state(JOB_NAME)
        if state is None or state.last_finished_at is None:
            return True
        if state.last_outcome == "succeeded":
            return now >= state.last_finished_at + self.interval
        retry = min(self.interval, timedelta(seconds=RETRY_SECONDS))
        return now >= state.last_finished_at + retry

    def _renew(self) -> None:
        if self._stopping.is_set():
            raise Stopped("the gateway is shutting down")
        now = self.clock()
        until = now + timedelta(seconds=CLAIM_SECONDS)
        if not self.store.claim_job(JOB_NAME, self.owner, until, now):
            raise ClaimLost("another process took the retention job over")

    def run_once(self, *, force: bool = False, tenant: str | None = None) -> RetentionReport | None:
        """Run the job if it is due (or `force`) and no other process holds it; the report,
        or None when it did not run. A failure is metered, stored and raised. A run for
        one `tenant` only (`sluis retention run --tenant`) is stored as "partial": it is
        not the whole job's success, and the schedule's next run comes soon after."""
        now = self.clock()
        if not force and not self.due(now):
            return None
        if not self.store.claim_job(
            JOB_NAME, self.owner, now + timedelta(seconds=CLAIM_SECONDS), now
        ):
            return None
        try:
            report = apply_rules(
                self.store, defaults=self.defaults(), now=now, dry_run=False, tenant=tenant,
                acting_for=self.acting_for, batch_rows=self.batch_rows, renew=self._renew,
            )  # fmt: skip
        except Exception as exc:
            self.metrics.retention_runs.labels("failed").inc()
            log.warning("retention run failed: %s", type(exc).__name__)
            if not isinstance(exc, ClaimLost):
                self._finish("failed")
            raise
        for removal in report.removals:
            if removal.count:
                self.metrics.retention_removed.labels(removal.rule).inc(removal.count)
        self.metrics.retention_runs.labels("succeeded").inc()
        self._finish("succeeded" if tenant is None else "partial")
        log.info("retention run done: %d removed in all", report.total)
        return report

    def _finish(self, outcome: str) -> None:
        try:
            self.store.finish_job(JOB_NAME, self.owner, outcome, self.clock())
        except StoreError as exc:
            log.warning("retention outcome not stored: %s", type(exc).__name__)

    async def run_forever(self) -> None:
        """Look every few minutes whether the job is due; run it in a worker thread. A
        failure is logged (its kind only) and tried again later; it never ends the loop."""
        pause = min(CHECK_SECONDS, self.interval.total_seconds())
        while True:
            self._current = asyncio.ensure_future(asyncio.to_thread(self.run_once))
            # Metered and logged by run_once (its kind only); tried again later.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._current)
            await asyncio.sleep(pause)

    async def stop(self, timeout: float) -> None:
        """Let a run in progress end after its current batch, and wait for it (a worker
        thread is not cancelled with the task that awaited it: the store must not be
        closed under it)."""
        self._stopping.set()
        current = self._current
        if current is not None and not current.done():
            await asyncio.wait([current], timeout=timeout)
