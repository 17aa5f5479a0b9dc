"""Building blocks shared by the ledger tests: realistic entries and a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ledger.log import TransferCounts, TransferEntry

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ALL_FIELDS: dict[str, str] = {
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "email": "user.contact.email",
    "job_title": "user.job_title",
}


def make_entry(i: int, tenant: str = "acme", **changes: Any) -> TransferEntry:
    data: dict[str, Any] = {
        "time": T0 + timedelta(seconds=i),
        "direction": "outbound" if i % 2 else "inbound",
        "tenant": tenant,
        "connector": "afas",
        "instruction_id": "instr-7",
        "mapping_digest": "sha256:" + "ab" * 32,
        "subject_ids": [f"{i:032x}", f"{i + 1000:032x}"],
        "fields": dict(ALL_FIELDS),
        "counts": TransferCounts(records=2, dropped_fields=14, quarantined=0),
        "dropped_field_names": ["BSN", "IBAN", "Geboortedatum"],
        "destination": "feed:lms-prod" if i % 2 else "gateway",
        "run_id": f"run-{i}",
    }
    data.update(changes)
    return TransferEntry(**data)


class Clock:
    """A controllable wall clock for checkpoint times."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now
