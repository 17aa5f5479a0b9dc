"""Prometheus metrics, on a registry of the app's own (no global state between apps/tests).

Label values are connector *types*, refusal codes, outcomes, and admin-chosen tenant and
connector ids: never personal data, never free text. Names follow Prometheus conventions
(`_total` counters, `_seconds` units).

Two kinds of figure live here. Counters count what this process did, and every label
combination known in advance (connector types x outcomes, refusal reasons, event types) is
created at 0, so that `rate()` and alerts see a series before the first increment. Gauges
that describe *state* (how long a tenant's ledger is, when a connector last synced) are read
from the store at scrape time instead: they then count every entry whatever wrote it (sync
pages, feed pages, grants, refusals) and survive restarts, which gauges set by the code
that happened to run in this process cannot.

A few figures only this process can know are kept in memory and joined with the store's at
scrape time: where each feed consumer last asked to continue from (its lag is the tenant's
newest event minus that), and the outcome of the last full verification of each ledger.
With several replicas each reports what it saw; the dashboard and the alert rules take the
minimum lag over replicas (the replica that served the consumer last knows best).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.registry import known_types
from gateway.store.records import RefusalCode

#: How a finished sync run can end (`RunStatus` without the transient ones).
SYNC_OUTCOMES: Final = ("succeeded", "failed", "stopped")
#: Why processing can be refused: the instruction codes, and events the feed held back.
REFUSAL_REASONS: Final = (*get_args(RefusalCode), "feed_withheld")
FEED_CHANGE_TYPES: Final = ("subject.upserted", "subject.deleted", "subject.erased")
#: What became of a signed checkpoint due for a tenant's push URL.
CHECKPOINT_PUSH_OUTCOMES: Final = ("delivered", "failed", "skipped")
#: What a full recomputation of a tenant's ledger found.
LEDGER_VERIFY_OUTCOMES: Final = ("intact", "failed")
#: What a push destination's worker did with an event, and with a request.
PUSH_EVENT_OUTCOMES: Final = ("delivered", "dead_lettered", "withheld")
PUSH_ATTEMPT_OUTCOMES: Final = ("delivered", "retried", "rejected")
#: How a run of the retention job ended.
RETENTION_OUTCOMES: Final = ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class KnownConnector:
    """A configured connector as the metrics see it: ids, type, schedule and the time of its
    last success (times as Unix seconds)."""

    tenant: str
    connector: str
    last_success: float | None = None
    connector_type: str | None = None
    interval: float | None = None
    paused: bool = False
    created: float | None = None


@dataclass(frozen=True, slots=True)
class KnownDestination:
    """A push destination as the metrics see it: ids, its worker's cursor, pause, and how
    many dead letters it holds."""

    tenant: str
    destination: str
    after_seq: int
    paused: bool
    dead_letters: int


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What the store says at scrape time; ids are admin-chosen, never personal data."""

    ledger_sizes: dict[str, int] = field(default_factory=dict)
    connectors: Sequence[KnownConnector] = ()
    #: Each tenant's newest feed event (its sequence number; 0 before the first).
    feed_heads: dict[str, int] = field(default_factory=dict)
    #: The (tenant, consumer id) pairs not revoked.
    consumers: Sequence[tuple[str, str]] = ()
    #: Per tenant with open data-subject requests: (open, of which overdue).
    requests: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: The retention job as stored (Unix seconds): its last success, when it first ran,
    #: and the interval this replica runs it at (None: it never ran).
    retention_last_success: float | None = None
    retention_first_run: float | None = None
    retention_interval: float | None = None
    destinations: Sequence[KnownDestination] = ()


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """Where a consumer last asked the feed to continue from, and when (Unix seconds)."""

    after: int
    at: float


#: Reads the current state (called once per scrape, on the scraping thread).
StateReader = Callable[[], GatewayState]


class _StateCollector(Collector):
    """Gauges computed from the store when scraped, and the per-connector series primed."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        read = self._metrics.state_reader
        if read is None:
            return self._families()
        return self._families(read())

    def _families(self, state: GatewayState | None = None) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "sluis_ledger_entries",
            "Entries in a tenant's transfer ledger (every direction), read from the store.",
            labels=["tenant"],
        )
        last = GaugeMetricFamily(
            "sluis_last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync of a connector, read from the store.",
            labels=["tenant", "connector"],
        )
        if state is not None:
            for tenant, size in sorted(state.ledger_sizes.items()):
                entries.add_metric([tenant], size)
            for known in state.connectors:
                self._metrics.prime_connector(known.tenant, known.connector, known.connector_type)
                if known.last_success is not None:
                    last.add_metric([known.tenant, known.connector], known.last_success)
            for tenant in state.ledger_sizes:
                self._metrics.feed_events_served.labels(tenant)
                for outcome in LEDGER_VERIFY_OUTCOMES:
                    self._metrics.ledger_verifications.labels(tenant, outcome)
                self._metrics.prime_checkpoint_push(tenant)
        yield entries
        yield last
        yield from self._connector_families(state)
        yield from self._feed_families(state)
        yield from self._request_families(state)
        yield from self._retention_families(state)
        yield from self._push_families(state)

    def _push_families(self, state: GatewayState | None) -> Iterator[Metric]:
        """Each destination's backlog and dead letters as stored: the same on every replica
        whichever holds its worker, and kept across restarts."""
        labels = ["tenant", "destination"]
        lag = GaugeMetricFamily(
            "sluis_push_lag_events",
            "Feed events after a push destination's cursor (the tenant's newest event minus"
            " it), read from the store.",
            labels=labels,
        )
        dead = GaugeMetricFamily(
            "sluis_push_dead_letters",
            "Events a push destination could not take, waiting for a replay, read from the store.",
            labels=labels,
        )
        paused = GaugeMetricFamily(
            "sluis_push_paused",
            "1 while a push destination is paused by its admin, else 0.",
            labels=labels,
        )
        for known in state.destinations if state is not None else ():
            ids = [known.tenant, known.destination]
            self._metrics.prime_destination(known.tenant, known.destination)
            newest = state.feed_heads.get(known.tenant, 0) if state is not None else 0
            lag.add_metric(ids, max(newest - known.after_seq, 0))
            dead.add_metric(ids, known.dead_letters)
            paused.add_metric(ids, 1 if known.paused else 0)
        yield lag
        yield dead
        yield paused

    def _retention_families(self, state: GatewayState | None) -> Iterator[Metric]:
        """The retention job as the store keeps it, the same on every replica (one runs it),
        so "no success for twice the interval" survives restarts and replica changes."""
        last = GaugeMetricFamily(
            "sluis_retention_last_success_timestamp_seconds",
            "Unix time the retention job last succeeded (on any replica), read from the store.",
        )
        first = GaugeMetricFamily(
            "sluis_retention_first_run_timestamp_seconds",
            "Unix time the retention job first started, read from the store.",
        )
        interval = GaugeMetricFamily(
            "sluis_retention_interval_seconds",
            "Seconds between retention runs, as this replica is configured.",
        )
        if state is not None:
            if state.retention_last_success is not None:
                last.add_metric([], state.retention_last_success)
            if state.retention_first_run is not None:
                first.add_metric([], state.retention_first_run)
            if state.retention_interval is not None:
                interval.add_metric([], state.retention_interval)
        yield last
        yield first
        yield interval

    def _request_families(self, state: GatewayState | None) -> Iterator[Metric]:
        """Data-subject requests open and overdue, for the alert that keeps the month."""
        opened = GaugeMetricFamily(
            "sluis_dsr_requests_open",
            "Data-subject requests a tenant has open, read from the store.",
            labels=["tenant"],
        )
        overdue = GaugeMetricFamily(
            "sluis_dsr_requests_overdue",
            "Open data-subject requests past their due date, read from the store.",
            labels=["tenant"],
        )
        if state is not None:
            for tenant in sorted(state.ledger_sizes):
                count, late = state.requests.get(tenant, (0, 0))
                opened.add_metric([tenant], count)
                overdue.add_metric([tenant], late)
        yield opened
        yield overdue

    def _connector_families(self, state: GatewayState | None) -> Iterator[Metric]:
        """A connector's schedule as stored, so that "no success for twice the interval"
        can be said in PromQL (paused connectors and ones never synced told apart)."""
        labels = ["tenant", "connector"]
        interval = GaugeMetricFamily(
            "sluis_connector_interval_seconds",
            "A connector's sync interval, read from the store.",
            labels=labels,
        )
        paused = GaugeMetricFamily(
            "sluis_connector_paused",
            "1 while a connector is paused by its admin (the scheduler skips it), else 0.",
            labels=labels,
        )
        created = GaugeMetricFamily(
            "sluis_connector_created_timestamp_seconds",
            "Unix time a connector was created, read from the store.",
            labels=labels,
        )
        for known in state.connectors if state is not None else ():
            ids = [known.tenant, known.connector]
            if known.interval is not None:
                interval.add_metric(ids, known.interval)
            paused.add_metric(ids, 1 if known.paused else 0)
            if known.created is not None:
                created.add_metric(ids, known.created)
        yield interval
        yield paused
        yield created

    def _feed_families(self, state: GatewayState | None) -> Iterator[Metric]:
        head = GaugeMetricFamily(
            "sluis_feed_last_seq",
            "Sequence number of a tenant's newest feed event, read from the store.",
            labels=["tenant"],
        )
        lag = GaugeMetricFamily(
            "sluis_feed_consumer_lag_events",
            "Feed events after the cursor a consumer last polled with on this replica (the"
            " tenant's newest event minus it); take the minimum over replicas.",
            labels=["tenant", "consumer"],
        )
        polled = GaugeMetricFamily(
            "sluis_feed_consumer_last_poll_timestamp_seconds",
            "Unix time a consumer last polled the feed on this replica.",
            labels=["tenant", "consumer"],
        )
        if state is not None:
            for tenant, seq in sorted(state.feed_heads.items()):
                head.add_metric([tenant], seq)
            positions = self._metrics.feed_positions()
            for tenant, consumer in state.consumers:
                position = positions.get((tenant, consumer))
                if position is None:
                    continue  # not polled on this replica since it started
                newest = state.feed_heads.get(tenant, 0)
                lag.add_metric([tenant, consumer], max(newest - position.after, 0))
                polled.add_metric([tenant, consumer], position.at)
        yield head
        yield lag
        yield polled


class GatewayMetrics:
    """All collectors of one gateway app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.state_reader: StateReader | None = None
        self._positions: dict[tuple[str, str], FeedPosition] = {}
        self._positions_lock = threading.Lock()
        r = self.registry
        # Registered first: a scrape primes the per-connector series before they are read.
        r.register(_StateCollector(self))
        self.syncs = Counter(
            "sluis_syncs",
            "Sync runs finished, by connector type and outcome.",
            ["connector_type", "outcome"],
            registry=r,
        )
        self.records_fetched = Counter(
            "sluis_records_fetched",
            "Source records fetched (before minimisation).",
            ["connector_type"],
            registry=r,
        )
        self.records_emitted = Counter(
            "sluis_records_emitted",
            "Minimised subjects that passed the door.",
            ["connector_type"],
            registry=r,
        )
        self.records_quarantined = Counter(
            "sluis_records_quarantined",
            "Source records quarantined (malformed or breaking the egress rules).",
            ["connector_type"],
            registry=r,
        )
        self.fields_dropped = Counter(
            "sluis_source_fields_dropped",
            "Source field values dropped at the door by the mapping (deny by default).",
            ["connector_type"],
            registry=r,
        )
        self.feed_changes = Counter(
            "sluis_feed_changes",
            "Feed events produced by syncs, by event type.",
            ["connector_type", "type"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "sluis_sync_duration_seconds",
            "Wall time of a sync run.",
            ["connector_type"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=r,
        )
        self.refusals = Counter(
            "sluis_authorisation_refusals",
            "Fetches or deliveries refused for lack of a valid instruction, by tenant,"
            " connector and reason.",
            ["tenant", "connector", "reason"],
            registry=r,
        )
        self.source_retries = Counter(
            "sluis_source_retries",
            "Retried source requests (5xx, timeouts, malformed bodies, rate limits).",
            ["connector_type"],
            registry=r,
        )
        self.source_rate_limited = Counter(
            "sluis_source_rate_limited",
            "HTTP 429 answers from sources.",
            ["connector_type"],
            registry=r,
        )
        self.feed_events_served = Counter(
            "sluis_feed_events_served",
            "Events served to platform consumers through the pull feed.",
            ["tenant"],
            registry=r,
        )
        # Mapping health: source field names are mapping config, never data.
        self.mapping_fields_unseen = Gauge(
            "sluis_mapping_fields_unseen",
            "Mapped source fields that no record of a connector's last sync held "
            "(a typo in the mapping, or a field the source does not send).",
            ["tenant", "connector"],
            registry=r,
        )
        self.checkpoint_pushes = Counter(
            "sluis_checkpoint_pushes",
            "Signed checkpoints due for a tenant's push URL, by outcome: delivered, failed"
            " (after retries; pushed again next round) or skipped (a backlog beyond the bound;"
            " a later checkpoint vouches for them).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.mass_delete_stops = Counter(
            "sluis_mass_delete_stops",
            "Full syncs stopped by the mass-delete guard (more subjects gone than the"
            " connector's max_delete_share; nothing deleted until an admin confirms).",
            ["connector_type", "tenant", "connector"],
            registry=r,
        )
        self.ledger_verifications = Counter(
            "sluis_ledger_verifications",
            "Full recomputations of a tenant's ledger in this process (the self-check of"
            " `sluis serve`), by outcome: intact or failed.",
            ["tenant", "outcome"],
            registry=r,
        )
        self.ledger_intact = Gauge(
            "sluis_ledger_intact",
            "1 if the last full recomputation of a tenant's ledger in this process found it"
            " intact, 0 if it failed (run `sluis audit verify` for the first bad index).",
            ["tenant"],
            registry=r,
        )
        self.retention_removed = Counter(
            "sluis_retention_removed",
            "Rows the retention job removed (events, people, records: see the rule), by rule.",
            ["rule"],
            registry=r,
        )
        self.retention_runs = Counter(
            "sluis_retention_runs",
            "Runs of the retention job in this process, by outcome.",
            ["outcome"],
            registry=r,
        )
        for outcome in RETENTION_OUTCOMES:
            self.retention_runs.labels(outcome)
        self.push_events = Counter(
            "sluis_push_events",
            "Feed events a push destination's worker dealt with, by outcome: delivered,"
            " dead_lettered (retries ran out or refused for good; replayable) or withheld"
            " (no active instruction, or a restricted person).",
            ["tenant", "destination", "outcome"],
            registry=r,
        )
        self.push_attempts = Counter(
            "sluis_push_attempts",
            "Requests to push destinations, by outcome: delivered, retried (a network error,"
            " timeout, 408, 429 or 5xx) or rejected (refused for good: dead-lettered).",
            ["tenant", "destination", "outcome"],
            registry=r,
        )
        self._prime_types(known_types())

    def _prime_types(self, types: Iterable[str]) -> None:
        """Create every series whose labels are known in advance, at 0."""
        for ctype in types:
            for outcome in SYNC_OUTCOMES:
                self.syncs.labels(ctype, outcome)
            for change in FEED_CHANGE_TYPES:
                self.feed_changes.labels(ctype, change)
            for counter in (
                self.records_fetched,
                self.records_emitted,
                self.records_quarantined,
                self.fields_dropped,
                self.source_retries,
                self.source_rate_limited,
            ):
                counter.labels(ctype)
            self.sync_duration.labels(ctype)

    def prime_connector(self, tenant: str, connector: str, ctype: str | None = None) -> None:
        """Create a connector's refusal series (and, its type known, its mass-delete stops)
        at 0 (idempotent; cheap once created)."""
        for reason in REFUSAL_REASONS:
            self.refusals.labels(tenant, connector, reason)
        if ctype is not None:
            self.mass_delete_stops.labels(ctype, tenant, connector)

    def prime_checkpoint_push(self, tenant: str) -> None:
        """Create a tenant's checkpoint push series at 0 (idempotent)."""
        for outcome in CHECKPOINT_PUSH_OUTCOMES:
            self.checkpoint_pushes.labels(tenant, outcome)

    def prime_destination(self, tenant: str, destination: str) -> None:
        """Create a destination's push series at 0 (idempotent)."""
        for outcome in PUSH_EVENT_OUTCOMES:
            self.push_events.labels(tenant, destination, outcome)
        for outcome in PUSH_ATTEMPT_OUTCOMES:
            self.push_attempts.labels(tenant, destination, outcome)

    def prime_retention(self, rules: Iterable[str]) -> None:
        """Create every retention rule's removal series at 0 (the rule names are the
        lifecycle's, which this module may not import)."""
        for rule in rules:
            self.retention_removed.labels(rule)

    def refused(self, tenant: str, connector: str, reason: str, count: int = 1) -> None:
        self.refusals.labels(tenant, connector, reason).inc(count)

    def mass_delete_stopped(self, ctype: str, tenant: str, connector: str) -> None:
        self.mass_delete_stops.labels(ctype, tenant, connector).inc()

    def feed_polled(self, tenant: str, consumer: str, after: int, at: float) -> None:
        """A consumer asked for the events after `after`: everything up to it is applied on
        its side, so the consumer's lag is counted from there."""
        with self._positions_lock:
            self._positions[(tenant, consumer)] = FeedPosition(after, at)

    def feed_positions(self) -> dict[tuple[str, str], FeedPosition]:
        with self._positions_lock:
            return dict(self._positions)

    def ledger_verified(self, tenant: str, intact: bool) -> None:
        """The outcome of a full recomputation of `tenant`'s ledger."""
        self.ledger_verifications.labels(tenant, "intact" if intact else "failed").inc()
        self.ledger_intact.labels(tenant).set(1 if intact else 0)
