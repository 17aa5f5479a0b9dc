"""The SCIM push sender: a destination's events become SCIM 2.0 Users on the platform's own
SCIM server (RFC 7643, RFC 7644), for platforms that provision users rather than read a feed.

A person is a `User`: `userName` and the primary work `emails` value from the email,
`name.givenName` / `name.familyName`, `title`, `active`, and `externalId` = the keyed subject
id, which is how Sluis finds its users again. What each event does:

* `subject.upserted`: the user is created (`POST /Users`), or replaced (`PUT /Users/{id}`)
  with `active: true` when it exists;
* `subject.deleted` (a leaver): the user is deactivated, by `PATCH` of `active` where the
  server says it supports PATCH, else by reading the user and `PUT`ting it back inactive;
* `subject.erased`: the user is deleted (`DELETE /Users/{id}`); a user that is not there is
  as good as deleted.

Finding a user: the sender remembers the id each keyed subject got (per worker, bounded);
otherwise it asks `GET /Users?filter=externalId eq "..."`. A create answered 409 (the
`userName` is taken: the person was provisioned by hand, or an earlier create's answer was
lost) links the existing user found by `userName eq` and replaces it, so its `externalId`
becomes ours. A user that vanished (404) is created again once; an `ETag` the server gave is
sent as `If-Match`, and a 412 reads the user again and tries once more. Fields a narrowed
instruction no longer covers arrive as null and are left out of a replacement of a user
that exists; a user cannot be created without its email (`userName`), and such a batch is
refused for good (`no-user-name`).

Order and speed: a batch's events are grouped by person, each person's events applied in
order, up to `in_flight` people at a time (a SCIM server takes one user per request; the
batch still succeeds or fails as a whole). A retry sends the whole batch again, and every
step above is safe to repeat: creates find the user they made, replacements and deletions
land on the same state.

What an answer means is the webhook sender's rule (`gateway.delivery.webhook`): 2xx
done; 408, 429, 5xx, timeouts and network errors worth another attempt (`Retry-After`
honoured on 429 and 503); anything else, a redirect included, refused for good with a
short reason code. A SCIM server's error `detail` can carry the very values we sent, so no
response body is logged or stored; bodies are read only for ids, versions and search
results, parsed with `scim2-models`.

Payloads are built and read with `scim2-models` (the ecosystem's models, maintained with
the RFCs). HTTP is the gateway's aiohttp session, not `scim2-client` (httpx): every
connection must pass `connectors.netguard`'s checks, as sources and webhooks do.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import ValidationError
from scim2_models import (
    Context,
    Email,
    ListResponse,
    Name,
    PatchOp,
    ServiceProviderConfig,
    User,
)

from connectors.netguard import PrivateAddress, check_url
from gateway.delivery.push import Batch, Outcome, Sender
from gateway.delivery.webhook import answer_outcome, failed_outcome, public_session, retry_after
from gateway.store.records import Destination

CONTENT_TYPE: Final = "application/scim+json"
PATCH_OP: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
#: People applied at once per destination (each person's events stay in order).
IN_FLIGHT: Final = 4
#: Subject ids whose SCIM user id the sender remembers (about 150 bytes each).
LINKS_KEPT: Final = 100_000
#: The largest answer read (a search for one user, a user); a larger one is refused.
MAX_ANSWER_BYTES: Final = 1024 * 1024


class _Stop(Exception):
    """An answer that ends the batch's attempt with `outcome`."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class _Found:
    id: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any] | None
    version: str | None


@dataclass(frozen=True, slots=True)
class ServerTraits:
    """What the server said it supports (`/ServiceProviderConfig`); without an answer,
    the conservative reading: no PATCH, no ETags."""

    patch: bool = False
    etag: bool = False


def user_of(subject_id: str, data: Mapping[str, Any], *, active: bool = True) -> User[Any]:
    """The SCIM User for a person's egress fields; fields that are null are left out."""
    email = data.get("email")
    first, last = data.get("first_name"), data.get("last_name")
    user: User[Any] = User(external_id=subject_id, active=active)
    if email:
        user.user_name = email
        user.emails = [Email(value=email, type=Email.Type.work, primary=True)]
    if first or last:
        user.name = Name(given_name=first or None, family_name=last or None)
    if data.get("job_title"):
        user.title = data["job_title"]
    return user


def _filter_value(text: str) -> str:
    """A string as a SCIM filter literal (RFC 7644 §3.4.2.2: JSON string rules)."""
    return orjson.dumps(text).decode()


class ScimSender(Sender):
    """The `Sender` of a SCIM destination; one session and one memory of links for the
    worker's life."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession,
        timeout: float = 30.0,
        allow_private: bool = False,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": f"{CONTENT_TYPE}, application/json",
        }
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow_private = allow_private
        self._in_flight = max(1, in_flight)
        self._links: OrderedDict[str, _Found] = OrderedDict()
        self._traits: ServerTraits | None = None

    # ------------------------------------------------------------------ the seam

    async def send(self, batch: Batch) -> Outcome:
        if not self._allow_private:
            try:
                check_url(self._base)
            except PrivateAddress:
                return Outcome("rejected", "refused-address")
        try:
            events = orjson.loads(batch.body)["data"]["events"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Outcome("rejected", "bad-batch")
        people: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            people.setdefault(str(event["subject_id"]), []).append(event)
        try:
            if self._traits is None:
                self._traits = await self._discover()
            gate = asyncio.Semaphore(self._in_flight)

            async def person(chain: list[dict[str, Any]]) -> Outcome | None:
                async with gate:
                    try:
                        for event in chain:
                            await self._apply(event)
                    except _Stop as stop:
                        return stop.outcome
                return None

            outcomes = await asyncio.gather(*(person(chain) for chain in people.values()))
        except _Stop as stop:
            return stop.outcome
        return _worst([o for o in outcomes if o is not None])

    # ------------------------------------------------------------------ one event

    async def _apply(self, event: Mapping[str, Any]) -> None:
        kind, subject = str(event["type"]), str(event["subject_id"])
        if kind == "subject.upserted":
            await self._upsert(subject, event.get("data") or {})
        elif kind == "subject.deleted":
            await self._deactivate(subject)
        elif kind == "subject.erased":
            await self._erase(subject)

    async def _upsert(self, subject: str, data: Mapping[str, Any]) -> None:
        user = user_of(subject, data)
        found = await self._find(subject)
        if found is None:
            if not user.user_name:
                raise _Stop(Outcome("rejected", "no-user-name"))
            created = await self._call(
                "POST", "/Users", _dump(user, Context.RESOURCE_CREATION_REQUEST)
            )
            if created.status in (200, 201):
                self._link(subject, _found_in(created))
                return
            if created.status != 409:
                raise _Stop(_refused(created.status))
            # The userName is taken: someone's account from before, or our own create
            # whose answer was lost. Take it over (its externalId becomes ours).
            found = await self._find(subject) or await self._find_by("userName", user.user_name)
            if found is None:
                raise _Stop(Outcome("rejected", "conflict-unlinked"))
        await self._replace(subject, found, user)

    async def _replace(self, subject: str, found: _Found, user: User[Any]) -> None:
        """Bring an existing user to `user`'s values. Only the attributes Sluis manages
        change: by PATCH where the server takes it, else the server's user is read and
        `PUT` back with them laid over (a bare PUT would wipe what the platform added,
        roles or groups). Fields that are null (no longer covered) are left as they are."""
        assert self._traits is not None
        if self._traits.patch:
            ops = _patch_ops(user)
            answer = await self._patch(subject, found, ops)
            if answer is None or answer.status == 404:
                return await self._recreate(subject, user)
            if answer.status in (200, 204):
                return None
            if answer.status not in (400, 405, 501):
                raise _Stop(_refused(answer.status))
            self._traits = ServerTraits(patch=False, etag=self._traits.etag)
        current = await self._read(subject, found)
        if current is None:
            return await self._recreate(subject, user)
        found, merged = current[0], _merged(current[1], user)
        body = _dump(merged, Context.RESOURCE_REPLACEMENT_REQUEST)
        answer = await self._call("PUT", f"/Users/{_seg(found.id)}", body, found.version)
        if answer.status == 404:
            return await self._recreate(subject, user)
        if answer.status not in (200, 201, 204):
            raise _Stop(_refused(answer.status))  # a 412 now: retried with the batch
        self._link(subject, _found_in(answer, found.id) if answer.body else _Found(found.id))
        return None

    async def _patch(
        self, subject: str, found: _Found, ops: list[tuple[str, object]]
    ) -> _Answer | None:
        """PATCH the user, reading it again and trying once more on a 412 (None: the user
        is gone). A 2xx answer updates the link; other answers are the caller's."""
        body = _patch_body(ops)
        answer = await self._call("PATCH", f"/Users/{_seg(found.id)}", body, found.version)
        if answer.status == 412:
            current = await self._read(subject, found)
            if current is None:
                return None
            found = current[0]
            answer = await self._call("PATCH", f"/Users/{_seg(found.id)}", body, found.version)
        if answer.status in (200, 204):
            self._link(subject, _found_in(answer, found.id) if answer.body else _Found(found.id))
        return answer

    async def _recreate(self, subject: str, user: User[Any]) -> None:
        """The user we knew is gone from the server: create it again, once."""
        self._links.pop(subject, None)
        if not user.user_name:
            raise _Stop(Outcome("rejected", "no-user-name"))
        answer = await self._call("POST", "/Users", _dump(user, Context.RESOURCE_CREATION_REQUEST))
        if answer.status not in (200, 201):
            raise _Stop(_refused(answer.status))
        self._link(subject, _found_in(answer))

    async def _deactivate(self, subject: str) -> None:
        found = await self._find(subject)
        if found is None:
            return  # never provisioned (or already gone): nothing to deactivate
        assert self._traits is not None
        if self._traits.patch:
            ops: list[tuple[str, object]] = [("active", False)]
            answer = await self._patch(subject, found, ops)
            if answer is None or answer.status == 404:
                self._links.pop(subject, None)
                return
            if answer.status in (200, 204):
                return
            if answer.status not in (400, 405, 501):
                raise _Stop(_refused(answer.status))
            self._traits = ServerTraits(patch=False, etag=self._traits.etag)
        current = await self._read(subject, found)
        if current is None:
            return
        found, user = current
        user.active = False
        body = _dump(user, Context.RESOURCE_REPLACEMENT_REQUEST)
        answer = await self._call("PUT", f"/Users/{_seg(found.id)}", body, found.version)
        if answer.status == 404:
            self._links.pop(subject, None)
        elif answer.status not in (200, 201, 204):
            raise _Stop(_refused(answer.status))
        return

    async def _erase(self, subject: str) -> None:
        found = await self._find(subject)
        if found is None:
            return
        answer = await self._call("DELETE", f"/Users/{_seg(found.id)}", None, found.version)
        if answer.status == 412:
            current = await self._read(subject, found)
            if current is not None:
                answer = await self._call(
                    "DELETE", f"/Users/{_seg(current[0].id)}", None, current[0].version
                )
        if answer.status not in (200, 204, 404, 412):
            raise _Stop(_refused(answer.status))
        self._links.pop(subject, None)

    # ------------------------------------------------------------------ finding users

    async def _find(self, subject: str) -> _Found | None:
        known = self._links.get(subject)
        if known is not None:
            self._links.move_to_end(subject)
            return known
        found = await self._find_by("externalId", subject)
        if found is not None:
            self._link(subject, found)
        return found

    async def _find_by(self, attribute: str, value: str) -> _Found | None:
        query = f"filter={quote(f'{attribute} eq {_filter_value(value)}')}&count=2"
        answer = await self._call("GET", f"/Users?{query}", None)
        if answer.status != 200 or answer.body is None:
            raise _Stop(_refused(answer.status) if answer.status != 200 else _bad_answer())
        try:
            page = ListResponse[User[Any]].model_validate(
                answer.body, scim_ctx=Context.SEARCH_RESPONSE
            )
        except ValidationError:
            raise _Stop(_bad_answer()) from None
        users = [u for u in page.resources or [] if u.id]
        if len(users) > 1 or (page.total_results or 0) > 1:
            raise _Stop(Outcome("rejected", "several-users"))
        if not users:
            return None
        user = users[0]
        return _Found(str(user.id), user.meta.version if user.meta else None)

    async def _read(self, subject: str, found: _Found) -> tuple[_Found, User[Any]] | None:
        """The user as the server has it now (None: gone)."""
        answer = await self._call("GET", f"/Users/{_seg(found.id)}", None)
        if answer.status == 404:
            self._links.pop(subject, None)
            return None
        if answer.status != 200 or answer.body is None:
            raise _Stop(_refused(answer.status) if answer.status != 200 else _bad_answer())
        try:
            user: User[Any] = User.model_validate(
                answer.body, scim_ctx=Context.RESOURCE_QUERY_RESPONSE
            )
        except ValidationError:
            raise _Stop(_bad_answer()) from None
        now = _Found(found.id, answer.version or (user.meta.version if user.meta else None))
        self._link(subject, now)
        return now, user

    def _link(self, subject: str, found: _Found) -> None:
        self._links[subject] = found
        self._links.move_to_end(subject)
        while len(self._links) > LINKS_KEPT:
            self._links.popitem(last=False)

    # ------------------------------------------------------------------ HTTP

    async def _discover(self) -> ServerTraits:
        answer = await self._call("GET", "/ServiceProviderConfig", None)
        if answer.status != 200 or answer.body is None:
            return ServerTraits()
        try:
            config = ServiceProviderConfig.model_validate(
                answer.body, scim_ctx=Context.RESOURCE_QUERY_RESPONSE
            )
        except ValidationError:
            return ServerTraits()
        return ServerTraits(
            patch=bool(config.patch and config.patch.supported),
            etag=bool(config.etag and config.etag.supported),
        )

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, version: str | None = None
    ) -> _Answer:
        """One request. Returns 2xx, 404, 409 and 412 answers (and 400/405/501 to a PATCH,
        which the caller can do without); raises `_Stop` for everything else."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = CONTENT_TYPE
            data = orjson.dumps(body)
        if version and self._traits is not None and self._traits.etag and method != "GET":
            headers["If-Match"] = version
        now = datetime.now(UTC)
        try:
            async with self._session.request(
                method,
                self._base + path,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                wait = retry_after(resp.headers.get("Retry-After"), now)
                etag = resp.headers.get("ETag")
                parsed: dict[str, Any] | None = None
                if 200 <= status < 300 and status != 204:
                    raw = await _read_capped(resp)
                    if raw:
                        try:
                            loaded = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            raise _Stop(_bad_answer()) from None
                        parsed = loaded if isinstance(loaded, dict) else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Stop(failed_outcome(exc)) from None
        if 200 <= status < 300 or status in (404, 409, 412):
            return _Answer(status, parsed, etag)
        if method == "PATCH" and status in (400, 405, 501):
            return _Answer(status, None, None)
        raise _Stop(answer_outcome(status, wait))


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The whole answer body, or `_Stop` once it passes `MAX_ANSWER_BYTES` (a `read(n)`
    returns what has arrived, which for a larger answer is only its first part)."""
    raw = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > MAX_ANSWER_BYTES:
            raise _Stop(Outcome("rejected", "answer-too-large"))
    return bytes(raw)


def _dump(user: User[Any], context: Context) -> dict[str, Any]:
    dumped: dict[str, Any] = user.model_dump(scim_ctx=context)
    return dumped


def _patch_ops(user: User[Any]) -> list[tuple[str, object]]:
    """(path, value) to replace, for the attributes Sluis manages that have a value now."""
    ops: list[tuple[str, object]] = [("externalId", user.external_id), ("active", user.active)]
    if user.user_name:
        ops.append(("userName", user.user_name))
        emails = [e.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST) for e in user.emails or []]
        ops.append(("emails", emails))
    if user.name is not None:
        if user.name.given_name:
            ops.append(("name.givenName", user.name.given_name))
        if user.name.family_name:
            ops.append(("name.familyName", user.name.family_name))
    if user.title:
        ops.append(("title", user.title))
    return ops


def _patch_body(ops: list[tuple[str, object]]) -> dict[str, Any]:
    """A PatchOp message of `replace` operations, validated by `scim2-models` as the
    server's own parser would (each path must name a User attribute)."""
    message = PatchOp[User[Any]].model_validate(
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": p, "value": v} for p, v in ops],
        },
        scim_ctx=Context.RESOURCE_PATCH_REQUEST,
    )
    dumped: dict[str, Any] = message.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    return dumped


def _merged(current: User[Any], ours: User[Any]) -> User[Any]:
    """The server's user with what Sluis may send now laid over it, `externalId` and
    `active` included; attributes Sluis does not manage are kept as the server has them."""
    merged = current.model_copy(deep=True)
    merged.external_id = ours.external_id
    merged.active = ours.active
    if ours.user_name:
        merged.user_name = ours.user_name
        merged.emails = ours.emails
    if ours.name is not None:
        name = merged.name.model_copy() if merged.name is not None else Name()
        if ours.name.given_name:
            name.given_name = ours.name.given_name
        if ours.name.family_name:
            name.family_name = ours.name.family_name
        merged.name = name
    if ours.title:
        merged.title = ours.title
    merged.meta = None
    return merged


def _found_in(answer: _Answer, known_id: str | None = None) -> _Found:
    body = answer.body or {}
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else None
    version = answer.version or (str(meta["version"]) if meta and meta.get("version") else None)
    found_id = body.get("id") or known_id
    if not isinstance(found_id, str) or not found_id:
        raise _Stop(_bad_answer())
    return _Found(found_id, version)


def _seg(resource_id: str) -> str:
    """A resource id as one path segment."""
    return quote(resource_id, safe="")


def _refused(status: int) -> Outcome:
    """An answer a step could not go on from, as the shared rule reads it (a success
    that is not the one the step needs is a bad answer, not a delivery)."""
    if 200 <= status < 300:
        return _bad_answer()
    return answer_outcome(status)


def _bad_answer() -> Outcome:
    return Outcome("rejected", "bad-answer")


def _worst(outcomes: list[Outcome]) -> Outcome:
    """One outcome for the batch: refused if any person's was, else another attempt
    (after the longest wait asked), else delivered."""
    for outcome in outcomes:
        if outcome.kind == "rejected":
            return outcome
    retries = [o for o in outcomes if o.kind == "retry"]
    if retries:
        waits = [o.retry_after for o in retries if o.retry_after is not None]
        return Outcome("retry", retries[0].reason, max(waits) if waits else None)
    return Outcome("delivered", "ok")


def scim_opener(
    token_of: Callable[[Destination], str], *, allow_private: bool, timeout: float = 30.0
) -> Callable[[Destination], AbstractAsyncContextManager[Sender]]:
    """The `SenderFactory` for SCIM destinations: the bearer token opened once per worker
    (`token_of`), one session per worker."""

    @asynccontextmanager
    async def opened(d: Destination) -> AsyncIterator[Sender]:
        async with public_session(allow_private=allow_private) as session:
            yield ScimSender(
                d.url, token_of(d), session=session, timeout=timeout, allow_private=allow_private
            )

    return opened
