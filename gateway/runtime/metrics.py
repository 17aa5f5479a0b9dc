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
"""

from __future__ import annotations

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
FEED_CHANGE_TYPES: Final = ("subject.upserted", "subject.deleted")
#: What became of a signed checkpoint due for a tenant's push URL.
CHECKPOINT_PUSH_OUTCOMES: Final = ("delivered", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class KnownConnector:
    """A configured connector as the metrics see it: ids and the time of its last success."""

    tenant: str
    connector: str
    last_success: float | None = None


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What the store says at scrape time; ids are admin-chosen, never personal data."""

    ledger_sizes: dict[str, int] = field(default_factory=dict)
    connectors: Sequence[KnownConnector] = ()


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
                self._metrics.prime_connector(known.tenant, known.connector)
                if known.last_success is not None:
                    last.add_metric([known.tenant, known.connector], known.last_success)
            for tenant in state.ledger_sizes:
                self._metrics.feed_events_served.labels(tenant)
        yield entries
        yield last


class GatewayMetrics:
    """All collectors of one gateway app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.state_reader: StateReader | None = None
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

    def prime_connector(self, tenant: str, connector: str) -> None:
        """Create a connector's refusal series at 0 (idempotent; cheap once created)."""
        for reason in REFUSAL_REASONS:
            self.refusals.labels(tenant, connector, reason)

    def prime_checkpoint_push(self, tenant: str) -> None:
        """Create a tenant's checkpoint push series at 0 (idempotent)."""
        for outcome in CHECKPOINT_PUSH_OUTCOMES:
            self.checkpoint_pushes.labels(tenant, outcome)

    def refused(self, tenant: str, connector: str, reason: str, count: int = 1) -> None:
        self.refusals.labels(tenant, connector, reason).inc(count)
