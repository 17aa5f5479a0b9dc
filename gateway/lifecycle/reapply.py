"""After a restore: put back the erasures and restrictions made since the backup was taken.

A backup goes back in time, and with it the suppressions: a person erased after the
backup is in the restored database again, with their data, and would be delivered again
by the next sync or to a consumer reading from the start. The tenant's ledger recorded
every erasure, restriction and lifting as an audit entry with the person's keyed id
(`subject.erased`, `subject.restricted`, `suppression.lifted`), and the auditor's export
(or one taken before restoring) still holds the entries the restore lost. Replayed in
order, they give each person's suppression as it stood at the export; `plan` compares
that with the restored database, and `reapply` erases and restricts whoever the database
no longer keeps out, recorded on the ledger like any erasure (by the gateway itself).

Liftings are only reported: putting someone back is the admin's decision to make again,
never a side effect of a restore.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from gateway.ledger.audit import AuditEntry
from gateway.ledger.record import Acting
from gateway.lifecycle.erasure import erase, restrict
from gateway.store.protocols import Store
from gateway.store.records import SuppressionKind

#: What an audit action says of the person it names (None: the suppression was lifted).
_EFFECT: dict[str, SuppressionKind | None] = {
    "subject.erased": "erased",
    "subject.restricted": "restricted",
    "suppression.lifted": None,
}


@dataclass(slots=True)
class Plan:
    """For one tenant: whom to erase and to restrict again, and who was lifted since."""

    tenant: str
    erase: list[str] = field(default_factory=list)
    restrict: list[str] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.erase or self.restrict)


def recorded_suppressions(entries: Iterable[AuditEntry]) -> dict[str, SuppressionKind | None]:
    """Each keyed id's suppression after these audit entries, replayed in log order (an
    erasure outlasts a restriction; a lifting ends either)."""
    state: dict[str, SuppressionKind | None] = {}
    for entry in entries:
        if entry.action not in _EFFECT or entry.target is None:
            continue
        effect = _EFFECT[entry.action]
        if effect == "restricted" and state.get(entry.target) == "erased":
            continue  # restricting an erased person leaves them erased
        state[entry.target] = effect
    return state


def plan(store: Store, tenant: str, recorded: dict[str, SuppressionKind | None]) -> Plan:
    """What the restored store lacks of the recorded suppressions."""
    ids = sorted(recorded)
    held = store.suppressed(tenant, ids) if ids else {}
    out = Plan(tenant)
    for sid in ids:
        want, have = recorded[sid], held.get(sid)
        if want == "erased" and have != "erased":
            out.erase.append(sid)
        elif want == "restricted" and have is None:
            out.restrict.append(sid)
        elif want is None and have is not None:
            out.lifted.append(sid)
    return out


def reapply(store: Store, by: Acting, todo: Plan, now: datetime) -> None:
    """Erase and restrict as `todo` says, each on the ledger (see the module docstring)."""
    if todo.erase:
        erase(store, by, todo.erase, now)
    if todo.restrict:
        restrict(store, by, todo.restrict, now)
