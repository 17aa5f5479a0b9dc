"""Times as the SQLite store spells them: RFC 3339 UTC text with microseconds and a `Z`,
which sorts like the instants it names (so `ORDER BY` and range queries on text work)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.store.protocols import StoreError


def to_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_text(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def required(value: str | None) -> datetime:
    """A NOT NULL column's time."""
    parsed = from_text(value)
    if parsed is None:  # pragma: no cover - NOT NULL columns
        raise StoreError("a required time is missing")
    return parsed
