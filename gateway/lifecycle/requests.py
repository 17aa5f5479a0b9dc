"""Data-subject requests as records: what was asked, when it is due, how it ended.

The platforms promise answers within 30 days (GDPR Art. 12(3): one month), and a processor
must help the controller keep that promise (Art. 28(3)(e)). So a request the controller
receives (by email, by its platform's form) is entered here with its type and arrival
date, gets a due date, is worked with the subject routes (search, export, erase,
restrict), and is closed with an outcome code; each step is an audit entry in the tenant's
ledger, and open and overdue requests are metrics an alert watches
(`SluisDataSubjectRequestOverdue`). A record holds keyed ids, the opaque id of the account
that entered it, times and codes: never a name, an email or free text.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.ledger.record import Acting
from gateway.store.protocols import Store
from gateway.store.records import DsrRequest, RequestKind, RequestOutcome, RequestState

#: Outcomes a completed request may end with; the rest are grounds for rejecting one.
COMPLETED_OUTCOMES: frozenset[RequestOutcome] = frozenset({"fulfilled", "nothing-held"})


class RequestError(ValueError):
    """A request that cannot be entered or closed as asked (names the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def open_request(
    store: Store,
    by: Acting,
    kind: RequestKind,
    subject_ids: Sequence[str],
    *,
    received_at: datetime | None,
    due_days: int,
    now: datetime,
) -> DsrRequest:
    """Enter a request received at `received_at` (default: now; never in the future); due
    `due_days` after it arrived."""
    received = received_at or now
    if received > now + timedelta(minutes=5):
        raise RequestError("received_at", "a request cannot arrive in the future")
    request = DsrRequest(
        id=f"dsr_{secrets.token_hex(8)}",
        tenant=by.tenant,
        kind=kind,
        requester=by.actor.id,
        received_at=received,
        due_at=received + timedelta(days=due_days),
        subject_ids=tuple(sorted(set(subject_ids))),
    )
    with by.recording(store, "request.opened", now, target=request.id):
        store.create_request(request)
    return request


def close_request(
    store: Store,
    by: Acting,
    request_id: str,
    *,
    state: RequestState,
    outcome: RequestOutcome,
    now: datetime,
) -> DsrRequest:
    """Close an open request with an outcome that fits its state; `NotFound` for an
    unknown one, `RequestError` for a closed one or a misfit outcome."""
    if state == "open":
        raise RequestError("state", "close a request as completed or rejected")
    if (outcome in COMPLETED_OUTCOMES) != (state == "completed"):
        fitting = "fulfilled or nothing-held" if state == "completed" else "a ground to reject"
        raise RequestError("outcome", f"a {state} request ends with {fitting}")
    store.get_request(by.tenant, request_id)
    with by.recording(store, "request.closed", now, target=request_id):
        closed = store.close_request(
            by.tenant, request_id, state=state, outcome=outcome, closed_at=now,
            closed_by=by.actor.id,
        )  # fmt: skip
        if not closed:
            raise RequestError("state", "the request is already closed")
    return store.get_request(by.tenant, request_id)
