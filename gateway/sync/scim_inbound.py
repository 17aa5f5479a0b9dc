"""An identity provider as a source: SCIM users in, through the same door and commit as a
synced page, and the minimised view out.

Every write (create, replace, patch, delete) is one record through the whole flow: read
by the SCIM door (`connectors.scim.door`), projected by the connector's mapping (what it
does not name is dropped and only its name counted), refused by the guard when a value
looks like a BSN, IBAN, phone number or address, compared with what the gateway holds,
and committed by `gateway.sync.commit` with its feed event and an `inbound` ledger entry,
only while an active instruction covers the connector's current mapping (checked before,
and again inside the transaction). Without one the write is refused and the refusal is a
`refused` ledger entry and a metric, as a refused sync is; the provider gets a 403.

Nothing of what a provider sends is kept except the egress fields: the SCIM `id` is the
keyed subject id (the mapping's identity is the lower-cased `userName`), so `userName eq`
filters are answered by computing the id, and reads answer from the stored events, the
minimised view only. A `DELETE` commits a tombstone (an inactive subject with no data;
`subject.deleted` reaches the platform like a leaver's) and forgets the user's
change-detection row in the same transaction, so the user reads as 404; `active: false` is
the mapping's leaver rule and keeps the user readable as inactive.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from connectors.registry import connector_type
from connectors.scim import door, patch
from connectors.scim.door import DoorError
from connectors.scim.patch import PatchError
from gateway.keys.master import SecretBox
from gateway.ledger import entry as entries
from gateway.ledger.log import Ledger
from gateway.ledger.record import record as record_transfer
from gateway.minimise.egress import EGRESS_FIELDS, SubjectRecord
from gateway.minimise.mapping import Mapping as MinimisationMapping
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord, Instruction, NotFound
from gateway.sync.commit import Batch, Committed, commit_batch
from gateway.sync.instructions import InstructionRefused, require_active, require_still_active
from gateway.tenancy import scim_token_matches, subject_key

log = logging.getLogger("sluis.scim")

ScimType = Literal[
    "invalidFilter", "invalidSyntax", "invalidPath", "invalidValue", "noTarget", "uniqueness",
    "tooMany",
]  # fmt: skip
_SID: Final = re.compile(r"[0-9a-f]{32}")
#: `attr eq "value"`, the one filter form providers send to match users.
_EQ_FILTER: Final = re.compile(r'^\s*([\w.:]+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
MAX_PROJECTORS: Final = 256


class ScimFailure(Exception):
    """A SCIM request answered with an error (RFC 7644 §3.12): status, `scimType`, detail.
    The detail names attributes, rules and instructions, never a value."""

    def __init__(self, status: int, detail: str, scim_type: ScimType | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


@dataclass(frozen=True, slots=True)
class ScimUser:
    """A user as the gateway holds it: the keyed id and the egress fields, nothing else."""

    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    job_title: str | None
    active: bool

    def scim_view(self) -> dict[str, Any]:
        """The user in SCIM's words (what a PATCH is applied to)."""
        view: dict[str, Any] = {"active": self.active}
        name = {k: v for k, v in (("givenName", self.first_name),
                                  ("familyName", self.last_name)) if v is not None}  # fmt: skip
        if name:
            view["name"] = name
        if self.email is not None:
            view["emails"] = [{"value": self.email, "type": "work", "primary": True}]
        if self.job_title is not None:
            view["title"] = self.job_title
        return view


def _tombstone(subject_id: str) -> SubjectRecord:
    gone: dict[str, Any] = {
        "subject_id": subject_id,
        **dict.fromkeys(EGRESS_FIELDS),
        "active": False,
    }
    return gone  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class _Source:
    record: ConnectorRecord
    mapping: MinimisationMapping
    projector: Projector


class ScimInbound:
    """The SCIM endpoint's domain logic. Synchronous: the API calls it on worker threads."""

    def __init__(
        self,
        store: Store,
        box: SecretBox,
        ledger_of: Callable[[str], Ledger],
        metrics: GatewayMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.box = box
        self.ledger_of = ledger_of
        self.metrics = metrics
        self.clock = clock
        self._projectors: dict[tuple[str, str, str], Projector] = {}

    # ------------------------------------------------------------------ who may call

    def authenticate(self, tenant: str, connector: str, token: str) -> ConnectorRecord:
        """The connector whose SCIM token `token` is; 401 otherwise (an unknown connector
        answers as a wrong token does, so the endpoint does not tell which exist)."""
        try:
            record = self.store.get_connector(tenant, connector)
        except NotFound:
            record = None
        if (
            record is None
            or not connector_type(record.type).pushed
            or not scim_token_matches(self.box, record, token)
        ):
            raise ScimFailure(401, "the bearer token is not valid for this SCIM endpoint")
        return record

    def _source(self, record: ConnectorRecord) -> _Source:
        """The connector's mapping compiled with the tenant's key, made once per mapping
        digest (parsing the TOML and opening the key for every user would cost more than
        the rest of the door)."""
        key = (record.tenant, record.id, record.mapping_digest)
        projector = self._projectors.get(key)
        if projector is None:
            mapping = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
            if len(self._projectors) >= MAX_PROJECTORS:
                self._projectors.clear()
            tenant = self.store.get_tenant(record.tenant)
            projector = Projector(mapping, subject_key(self.box, tenant))
            self._projectors[key] = projector
        return _Source(record, projector.mapping, projector)

    def _instruction(self, record: ConnectorRecord) -> Instruction:
        """The active instruction for the connector's current mapping, or a recorded
        refusal and a 403 (a paused connector is a 403 too, saying so)."""
        now = self.clock()
        if record.paused_at is not None:
            raise ScimFailure(
                403, f"connector {record.id} is paused; its admin resumes it to accept changes"
            )
        try:
            return require_active(self.store, record.tenant, record.id, record.mapping_digest, now)
        except InstructionRefused as refusal:
            self._report_refusal(record, refusal)
            raise ScimFailure(
                403,
                f"not authorised: {refusal}; a customer admin authorises connector "
                f"{record.id} before its identity provider may provision",
            ) from None

    def _report_refusal(self, record: ConnectorRecord, refusal: InstructionRefused) -> None:
        """As a refused sync is: a `refused` ledger entry and a metric, never silent."""
        self.metrics.refused(record.tenant, record.id, refusal.code)
        entry = entries.refused(
            time=self.clock(), tenant=record.tenant, connector=record.id,
            instruction_id=refusal.instruction_id, mapping_digest=record.mapping_digest,
        )  # fmt: skip
        record_transfer(self.store, self.ledger_of(record.tenant), [entry])

    # ------------------------------------------------------------------ writes

    def create(self, record: ConnectorRecord, body: Any) -> ScimUser:
        """POST /Users: a new user; 409 uniqueness when the userName is held already."""
        _user_body(body)
        instruction = self._instruction(record)
        source = self._source(record)
        subject, batch = self._project(source, body, None)
        state = self.store.subject_states(record.tenant, record.id, [subject["subject_id"]])
        if subject["subject_id"] in state:
            raise ScimFailure(409, "a user with this userName exists already", "uniqueness")
        self._commit(source, instruction, batch)
        return _user_of(subject)

    def replace(self, record: ConnectorRecord, subject_id: str, body: Any) -> ScimUser:
        """PUT /Users/{id}: the user as sent, in full (Okta's way of updating)."""
        _user_body(body)
        instruction = self._instruction(record)
        self._existing(record, subject_id)
        source = self._source(record)
        subject, batch = self._project(source, body, subject_id)
        self._commit(source, instruction, batch)
        return _user_of(subject)

    def modify(self, record: ConnectorRecord, subject_id: str, body: Any) -> ScimUser:
        """PATCH /Users/{id}: the operations applied to the user as held (see
        `connectors.scim.patch`), then through the door as a whole user."""
        instruction = self._instruction(record)
        current = self._existing(record, subject_id)
        try:
            patched = patch.apply(current.scim_view(), body)
        except PatchError as exc:
            raise ScimFailure(400, str(exc), exc.scim_type) from None  # type: ignore[arg-type]
        source = self._source(record)
        subject, batch = self._project(source, patched, subject_id)
        self._commit(source, instruction, batch)
        return _user_of(subject)

    def delete(self, record: ConnectorRecord, subject_id: str) -> None:
        """DELETE /Users/{id}: the user is gone; the platform gets `subject.deleted`."""
        instruction = self._instruction(record)
        self._existing(record, subject_id)
        source = self._source(record)

        def forget(done: Committed) -> None:
            # The user is gone: no change-detection row is left, so a read answers 404 and
            # a later create is new again; the events stay, for the feed and retention.
            self.store.forget_absent_subjects(record.tenant, record.id, [subject_id])

        self._commit(source, instruction, Batch([_tombstone(subject_id)], 1, 0, {}), forget)

    def _project(
        self, source: _Source, user: Any, subject_id: str | None
    ) -> tuple[SubjectRecord, Batch]:
        try:
            raw = door.record_of(user)
        except DoorError as exc:
            raise ScimFailure(400, str(exc), "invalidValue") from None
        if subject_id is not None and not raw.get("userName"):
            raw["userName"] = subject_id  # identity is the URL's id; the value is not used
        page = source.projector.project_page([raw])
        inactive = raw.get("active") is False
        identity = [str(raw.get(name, "")).strip() for name in source.mapping.identity.fields]
        raw.clear()
        ctype = source.record.type
        self.metrics.records_fetched.labels(ctype).inc()
        self.metrics.fields_dropped.labels(ctype).inc(sum(page.dropped.values()))
        if page.rejected and inactive:
            # An inactive user is a leaver: nothing of them leaves, so a value the door
            # would refuse (or a missing address) does not matter; none is kept.
            sid = subject_id or source.projector.subject_id(*identity)
            return _tombstone(sid), Batch([_tombstone(sid)], 1, 0, page.dropped)
        if page.rejected:
            self.metrics.records_quarantined.labels(ctype).inc()
            raise ScimFailure(400, f"the user was refused at the door: {page.rejected[0][1]}",
                              "invalidValue")  # fmt: skip
        self.metrics.records_emitted.labels(ctype).inc()
        subject: SubjectRecord = page.subjects[0]  # type: ignore[assignment]
        if subject_id is not None:
            subject["subject_id"] = subject_id  # the provider addresses the user by this id
        return subject, Batch([subject], 1, 0, page.dropped)

    def _commit(
        self,
        source: _Source,
        instruction: Instruction,
        batch: Batch,
        inside: Callable[[Committed], None] | None = None,
    ) -> None:
        record = source.record

        def check() -> None:
            # As the engine checks before committing a page: a pause or a new mapping since
            # the write began, then the instruction itself (revoked or expired meanwhile).
            current = self.store.get_connector(record.tenant, record.id)
            if current.paused_at is not None:
                raise ScimFailure(403, f"connector {record.id} was paused; nothing was written")
            if current.mapping_digest != record.mapping_digest:
                raise InstructionRefused(
                    "mapping_changed",
                    f"the mapping of connector {record.id} changed; instruction "
                    f"{instruction.id} authorises {instruction.mapping_digest}",
                    instruction.id,
                )
            require_still_active(self.store, instruction, self.clock())

        try:
            done = commit_batch(
                self.store, self.ledger_of(record.tenant), record=record,
                instruction=instruction, mapping_digest=source.mapping.digest,
                fields=source.mapping.categories, batch=batch, now=self.clock(),
                run_id=f"scim_{uuid.uuid4().hex}", check=check, inside=inside, sweep=False,
            )  # fmt: skip
        except InstructionRefused as refusal:
            # Refused inside the transaction (nothing was written): recorded after it.
            self._report_refusal(record, refusal)
            raise ScimFailure(403, f"not authorised: {refusal}") from None
        for event in done.events:
            self.metrics.feed_changes.labels(record.type, event.type).inc()

    # ------------------------------------------------------------------ reads

    def _existing(self, record: ConnectorRecord, subject_id: str) -> ScimUser:
        found = self._users(record, [subject_id])
        if not found:
            raise ScimFailure(404, "no such user")
        return found[0]

    def get(self, record: ConnectorRecord, subject_id: str) -> ScimUser:
        """GET /Users/{id}: the user as held (also inactive ones); 404 once deleted."""
        return self._existing(record, subject_id)

    def _users(self, record: ConnectorRecord, subject_ids: list[str]) -> list[ScimUser]:
        ids = [s for s in subject_ids if _SID.fullmatch(s)]
        if not ids:
            return []
        states = self.store.subject_states(record.tenant, record.id, ids)
        live = [s for s in ids if s in states]
        if not live:
            return []
        newest: dict[str, Mapping[str, Any]] = {}
        for event in self.store.events_of_subjects(record.tenant, live):
            if event.source == record.id and event.data is not None:
                newest[event.subject_id] = event.data
        users = []
        for sid in live:
            data = newest.get(sid, {})
            users.append(ScimUser(
                id=sid, first_name=data.get("first_name"), last_name=data.get("last_name"),
                email=data.get("email"), job_title=data.get("job_title"),
                active=states[sid].present,
            ))  # fmt: skip
        return users

    def search(
        self, record: ConnectorRecord, filter_text: str | None, start: int, count: int
    ) -> tuple[int, list[ScimUser]]:
        """GET /Users: (total, one page) of users, all or `attr eq "value"` for userName
        (answered by computing the keyed id) and id; a filter on an attribute the gateway
        does not keep (externalId, phone numbers, ...) matches nobody."""
        if filter_text is None:
            total, ids = self.store.subject_page(record.tenant, record.id, start - 1, count)
            return total, self._users(record, ids)
        match = _EQ_FILTER.match(filter_text)
        if match is None:
            raise ScimFailure(
                400, 'only filters of the form attribute eq "value" are supported',
                "invalidFilter",
            )  # fmt: skip
        attr = match[1].lower().removeprefix(door.USER_SCHEMA.lower() + ":")
        value = match[2].replace('\\"', '"').replace("\\\\", "\\")
        if attr == "username":
            sid = self._source(record).projector.subject_id(value.strip().lower())
            found = self._users(record, [sid])
        elif attr == "id":
            found = self._users(record, [value])
        else:
            found = []
        return len(found), found[start - 1 : start - 1 + count]


def _user_body(body: Any) -> None:
    if not isinstance(body, Mapping):
        raise ScimFailure(400, "the body is not a SCIM User object", "invalidSyntax")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or door.USER_SCHEMA not in schemas:
        raise ScimFailure(400, f"schemas must list {door.USER_SCHEMA}", "invalidSyntax")
    if not isinstance(body.get("userName"), str) or not body["userName"].strip():
        raise ScimFailure(400, "userName is required", "invalidValue")


def _user_of(subject: SubjectRecord) -> ScimUser:
    return ScimUser(
        id=subject["subject_id"], first_name=subject["first_name"],
        last_name=subject["last_name"], email=subject["email"], job_title=subject["job_title"],
        active=bool(subject["active"]),
    )  # fmt: skip
