"""Prometheus metrics, on a registry of the app's own (no global state between apps/tests).

Label values are connector *types*, refusal codes, outcomes, and admin-chosen tenant and
connector ids: never personal data, never free text. Names follow Prometheus conventions
(`_total` counters, `_seconds` units).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """All collectors of one gateway app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
            "Fetches or deliveries refused for lack of a valid instruction.",
            ["reason"],
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
        self.ledger_entries = Gauge(
            "sluis_ledger_entries",
            "Entries in a tenant's transfer ledger.",
            ["tenant"],
            registry=r,
        )
        self.last_success = Gauge(
            "sluis_last_successful_sync_timestamp_seconds",
            "Unix time of the last successful sync of a connector.",
            ["tenant", "connector"],
            registry=r,
        )
        # Mapping health (mapperf): source field names are mapping config, never data.
        self.mapping_fields_unseen = Gauge(
            "sluis_mapping_fields_unseen",
            "Mapped source fields that no record of a connector's last sync held "
            "(a typo in the mapping, or a field the source does not send).",
            ["tenant", "connector"],
            registry=r,
        )
