"""Customer authorisations ("instructions", GDPR Art. 28(3)(a)): no instruction, no processing.

An instruction records who authorised which connector of which tenant, when, for what
purpose, under which mapping (its digest) and for which egress fields and categories, and
until when. Every page fetched and every feed page served asks `require_active` first, so a
revocation takes effect before the next page. A refusal is an `InstructionRefused` whose
message names the instruction (or its absence) and what is wrong, for the admin API, the
metrics and the ledger; it is never silent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from gateway.ledger.audit import purpose_problem
from gateway.ledger.record import Acting
from gateway.minimise.mapping import parse_mapping
from gateway.store.records import Instruction, RefusalCode, Store, TenantEnded


class InstructionRefused(Exception):
    """Processing refused for lack of a valid instruction."""

    def __init__(self, code: RefusalCode, message: str, instruction_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.instruction_id = instruction_id


def grant(
    store: Store,
    *,
    by: Acting,
    connector: str,
    purpose: str,
    now: datetime,
    valid_until: datetime | None = None,
) -> Instruction:
    """Record an authorisation for the connector's current mapping (digest and fields),
    and the ledger's `authorisation.granted` entry naming who gave it, in one commit."""
    tenant = by.tenant
    if store.get_tenant(tenant).terminated_at is not None:
        raise TenantEnded(f"tenant {tenant} is terminated: nothing can be authorised any more")
    record = store.get_connector(tenant, connector)
    mapping = parse_mapping(record.mapping_text, f"connector {connector}")
    if valid_until is not None and valid_until <= now:
        raise ValueError("valid_until must lie in the future")
    problem = purpose_problem(purpose)
    if problem is not None:
        raise ValueError(f"purpose {problem}")
    instruction = Instruction(
        id=f"ins_{uuid.uuid4().hex}",
        tenant=tenant,
        connector=connector,
        granted_by=by.actor.id,
        granted_at=now,
        purpose=purpose,
        mapping_digest=mapping.digest,
        fields=mapping.categories,
        valid_until=valid_until,
    )
    with by.recording(
        store, "authorisation.granted", now, connector=connector, target=instruction.id,
        mapping_digest=mapping.digest, fields=mapping.categories, purpose=purpose,
        valid_until=valid_until,
    ):  # fmt: skip
        store.add_instruction(instruction)
    return instruction


def revoke(store: Store, *, by: Acting, instruction: Instruction, now: datetime) -> Instruction:
    """Revoke at once, with the ledger's `authorisation.revoked` entry, in one commit."""
    with by.recording(
        store, "authorisation.revoked", now, connector=instruction.connector,
        target=instruction.id, mapping_digest=instruction.mapping_digest,
        fields=instruction.fields,
    ):  # fmt: skip
        return store.revoke_instruction(instruction.id, by.actor.id, now)


def require_active(
    store: Store, tenant: str, connector: str, mapping_digest: str, now: datetime
) -> Instruction:
    """The newest active instruction covering this mapping, or `InstructionRefused`."""
    return active_among(
        store.list_instructions(tenant, connector), tenant, connector, mapping_digest, now
    )


def active_among(
    instructions: Sequence[Instruction],
    tenant: str,
    connector: str,
    mapping_digest: str,
    now: datetime,
) -> Instruction:
    """`require_active` over instructions already read (grant order)."""
    if not instructions:
        raise InstructionRefused(
            "missing", f"no instruction authorises connector {connector} of tenant {tenant}"
        )
    active = [i for i in instructions if i.state(now) == "active"]
    if not active:
        latest = instructions[-1]
        state = latest.state(now)
        code: RefusalCode = "revoked" if state == "revoked" else "expired"
        when = latest.revoked_at if code == "revoked" else latest.valid_until
        raise InstructionRefused(
            code,
            f"instruction {latest.id} for connector {connector} was {state}"
            + (f" at {when.isoformat()}" if when else ""),
            latest.id,
        )
    for instruction in reversed(active):
        if instruction.mapping_digest == mapping_digest:
            return instruction
    newest = active[-1]
    raise InstructionRefused(
        "mapping_changed",
        f"instruction {newest.id} authorises mapping {newest.mapping_digest}, but connector "
        f"{connector} now uses {mapping_digest}: a new authorisation is needed",
        newest.id,
    )


def require_still_active(store: Store, instruction: Instruction, now: datetime) -> None:
    """Re-check the instruction a run started under, before each further page."""
    still_active(store.get_instruction(instruction.id), now)


def still_active(current: Instruction, now: datetime) -> None:
    """`require_still_active` over the instruction as just read: a caller that reads it
    together with its connector (`Store.source_standing`, one statement inside every page's
    transaction) refuses with the same words as one that reads it alone."""
    state = current.state(now)
    if state != "active":
        when = current.revoked_at if state == "revoked" else current.valid_until
        raise InstructionRefused(
            "revoked" if state == "revoked" else "expired",
            f"instruction {current.id} was {state}" + (f" at {when.isoformat()}" if when else ""),
            current.id,
        )
