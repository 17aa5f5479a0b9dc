"""Building blocks shared by the ledger tests: realistic entries and a controllable clock."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ledger.entry import commit
from gateway.ledger.log import TransferCounts, TransferEntry

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
ALL_FIELDS: dict[str, str] = {
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "email": "user.contact.email",
    "job_title": "user.job_title",
}


def make_entry(
    i: int, tenant: str = "acme", *, legacy: bool = False, **changes: Any
) -> TransferEntry:
    """A transfer entry as the gateway writes it (its keyed ids committed to in `subjects`),
    or with `legacy` as entries were written before that (the ids listed in the body)."""
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
    if not legacy and "subjects" not in changes:
        ids = sorted(set(data["subject_ids"]))
        with contextlib.suppress(ValueError):  # not hex: left for the model to refuse
            data["subjects"] = commit(ids)
            data["subject_ids"] = ids
    return TransferEntry(**data)


class Clock:
    """A controllable wall clock for checkpoint times."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now
