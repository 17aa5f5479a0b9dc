"""The processor's record of processing for one controller (GDPR Art. 30(2)).

Art. 30(2) asks a processor to keep, per controller: its own name and contact details (and
its DPO's), the controller's, the categories of processing carried out for it, transfers
to third countries, and a general description of its Art. 32 security measures. Sluis
generates the record instead of someone keeping it by hand: the controller is the tenant,
the categories of processing are its connectors with the instructions (purpose, fields and
data categories, who authorised them and until when) they run under, the recipients are
its feed consumers and push destinations, and the measures are what this gateway does
(stated only where this installation's settings make them true). The record is anchored in
the tenant's ledger by its latest signed checkpoint, so an auditor can check it against the
log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from gateway import __version__
from gateway.ledger.checkpoint import CheckpointError, read_unverified
from gateway.lifecycle.retention.policy import RetentionPolicy, defaults_of, describe, policy_for
from gateway.runtime.config import Settings
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord

#: What every installation does, by construction (each names where it is enforced).
MEASURES: Final[tuple[str, ...]] = (
    "Data minimisation at ingestion: only the fields an authorised mapping names (first name, "
    "last name, email, job title) are kept; every other source field is dropped before "
    "storage and never logged (gateway/minimise).",
    "Pseudonymisation: people are identified by keyed ids (HMAC-SHA256 with a key per "
    "controller), never by a source's own identifiers (gateway/keys).",
    "Processing only on documented instructions: nothing is fetched or delivered without an "
    "active authorisation of the controller; revocation stops both before the next page "
    "(gateway/sync/instructions.py).",
    "Encryption at rest of secrets: source credentials and each controller's subject key are "
    "sealed with AES-256-GCM under a master key kept outside the database (gateway/keys).",
    "Access control: accounts with roles per controller (admin, auditor, viewer) and "
    "operators; passwords hashed with Argon2; TOTP second factor, and a fresh one for "
    "authorisations (gateway/accounts).",
    "Accountability: every transfer and every authorisation is an entry in a tamper-evident "
    "log per controller (RFC 9162 Merkle tree, Ed25519-signed checkpoints) that the "
    "controller's auditor verifies offline (gateway/ledger).",
    "No personal data in logs, metrics labels, error messages or the ledger (keyed ids, "
    "field names and counts only).",
    "Network: sources are reached at public addresses only unless explicitly allowed "
    "(server-side request forgery guard); responses from sources are size- and time-limited.",
)


@dataclass(frozen=True, slots=True)
class Processor:
    """Who processes (the operator of this gateway), as configured."""

    name: str | None
    contact: str | None
    dpo_contact: str | None
    #: Transfers of personal data outside the EEA, as configured (None: none).
    third_country_transfers: str | None
    #: Settings that decide further measures (stated only when true here).
    metrics_protected: bool
    public_url: str | None
    #: The retention defaults (each tenant's own policy is read from the store).
    retention_defaults: RetentionPolicy = field(default_factory=lambda: defaults_of(Settings()))


def processor_of(settings: Settings) -> Processor:
    """The processor as this installation's settings describe it."""
    return Processor(
        name=settings.processor_name,
        contact=settings.processor_contact,
        dpo_contact=settings.dpo_contact,
        third_country_transfers=settings.third_country_transfers,
        metrics_protected=settings.metrics_token is not None,
        public_url=settings.public_url,
        retention_defaults=defaults_of(settings),
    )


def processing_record(
    store: Store, tenant_id: str, processor: Processor, now: datetime
) -> dict[str, Any]:
    """The record for `tenant_id`, as JSON-ready data (`render_markdown` for people)."""
    tenant = store.get_tenant(tenant_id)
    activities = []
    categories: set[str] = set()
    for connector in store.list_connectors(tenant_id):
        instructions = store.list_instructions(tenant_id, connector.id)
        active = [i for i in instructions if i.state(now) == "active"]
        for instruction in active:
            categories.update(instruction.fields.values())
        activities.append(
            {
                "connector": connector.id,
                "source_type": connector.type,
                "state": _state(connector, bool(active)),
                "processing": [
                    "collection from the controller's system",
                    "minimisation",
                    "pseudonymisation",
                    "storage",
                    "transmission to the controller's platform",
                ],
                "instructions": [
                    {
                        "id": i.id,
                        "purpose": i.purpose,
                        "granted_by": i.granted_by,
                        "granted_at": i.granted_at,
                        "valid_until": i.valid_until,
                        "fields": dict(sorted(i.fields.items())),
                    }
                    for i in active
                ],
                "since": connector.created_at,
                "interval_seconds": connector.interval_seconds,
            }
        )
    recipients = [
        {"name": c.name, "kind": "pull feed consumer", "since": c.created_at}
        for c in store.list_consumers(tenant_id)
        if c.revoked_at is None or c.revoked_at > now
    ]
    # Push destinations are recipients too, named by the host that receives (the platform's
    # endpoint; the path and query may carry tokens, so only the host is stated).
    recipients += [
        {"name": urlsplit(d.url).hostname or d.id, "kind": f"{d.kind} destination",
         "since": d.created_at}
        for d in store.list_destinations(tenant_id)
    ]  # fmt: skip
    measures = list(MEASURES)
    if processor.public_url and processor.public_url.startswith("https://"):
        measures.append("Transport encryption: the gateway is reached over HTTPS.")
    if processor.metrics_protected:
        measures.append("Operational metrics are served only with a bearer token.")
    latest = store.ledger.latest_checkpoint(tenant_id)
    anchor: dict[str, Any] | None = None
    if latest is not None:
        try:
            cp = read_unverified(latest.note)
            anchor = {"origin": cp.origin, "size": cp.size, "time": cp.time, "seq": latest.seq}
        except CheckpointError:
            anchor = None
    return {
        "generated_at": now,
        "generated_by": f"Sluis {__version__}",
        "processor": {
            "name": processor.name,
            "contact": processor.contact,
            "dpo_contact": processor.dpo_contact,
        },
        "controller": {"tenant": tenant.id, "name": tenant.name, "since": tenant.created_at},
        "data_subjects": [
            "the controller's employees and other staff, as held in its HR and CRM systems"
        ],
        "data_categories": sorted(categories),
        "activities": activities,
        "recipients": recipients,
        "third_country_transfers": processor.third_country_transfers or "none",
        "security_measures": measures,
        "retention": [
            # The tenant's policy as in force now (`gateway.lifecycle.retention`).
            *describe(policy_for(store, tenant_id, processor.retention_defaults)),
            "Minimised subject data: a person's newest state is kept while they are at the "
            "source and the connector exists; a connector deleted with subjects=delete sends "
            "their deletion to the platform.",
            "Digests for change detection: no personal data values, kept with the person.",
            "Source credentials: sealed, removed with the connector.",
            "The ledger: keyed ids, field names and counts only, kept for the life of the "
            "controller's log so that every transfer stays provable.",
        ],
        "ledger_anchor": anchor,
    }


def _state(connector: ConnectorRecord, authorised: bool) -> str:
    if connector.deleted_at is not None:
        return "deleted"
    if connector.paused_at is not None:
        return "paused"
    return "authorised" if authorised else "not authorised"


def render_markdown(record: dict[str, Any]) -> str:
    """The record for people: Markdown with the Art. 30(2) headings."""

    def when(value: Any) -> str:
        return (
            value.isoformat()
            if isinstance(value, datetime)
            else ("-" if value is None else str(value))
        )

    p, c = record["processor"], record["controller"]
    out = [
        f"# Record of processing activities (GDPR Art. 30(2)): {c['name']}",
        "",
        f"Generated {when(record['generated_at'])} by {record['generated_by']}.",
        "",
        "## Processor",
        f"- Name: {p['name'] or '(not configured: set processor_name)'}",
        f"- Contact: {p['contact'] or '(not configured: set processor_contact)'}",
        f"- Data protection officer: {p['dpo_contact'] or '(not configured: set dpo_contact)'}",
        "",
        "## Controller",
        f"- {c['name']} (tenant `{c['tenant']}`, since {when(c['since'])})",
        "",
        "## Categories of processing",
    ]
    for a in record["activities"]:
        out.append(f"### Connector `{a['connector']}` ({a['source_type']}): {a['state']}")
        out.append(f"- Processing: {', '.join(a['processing'])}")
        out.append(f"- Since {when(a['since'])}, every {a['interval_seconds']} s")
        if not a["instructions"]:
            out.append("- No active authorisation: nothing is fetched or delivered.")
        for i in a["instructions"]:
            fields = ", ".join(f"{k} ({v})" for k, v in i["fields"].items())
            out.append(
                f'- Authorisation `{i["id"]}`: purpose "{i["purpose"]}", granted by '
                f"`{i['granted_by']}` on {when(i['granted_at'])}, valid "
                f"{'until ' + when(i['valid_until']) if i['valid_until'] else 'until revoked'};"
                f" fields: {fields}"
            )
        out.append("")
    out += [
        "## Data subjects",
        *[f"- {s}" for s in record["data_subjects"]],
        "",
        "## Categories of personal data",
        *([f"- `{cat}`" for cat in record["data_categories"]] or ["- none authorised"]),
        "",
        "## Recipients",
        *(
            [f"- {r['name']} ({r['kind']}, since {when(r['since'])})" for r in record["recipients"]]
            or ["- none"]
        ),
        "",
        "## Transfers to third countries",
        f"- {record['third_country_transfers']}",
        "",
        "## Security measures (Art. 32)",
        *[f"- {m}" for m in record["security_measures"]],
        "",
        "## Retention",
        *[f"- {r}" for r in record["retention"]],
        "",
    ]
    anchor = record["ledger_anchor"]
    if anchor:
        out.append(
            f"Ledger: `{anchor['origin']}`, {anchor['size']} entries at checkpoint {anchor['seq']} "
            f"({when(anchor['time'])}); check it with `sluis audit verify`."
        )
    else:
        out.append("Ledger: no checkpoint yet.")
    return "\n".join(out) + "\n"
