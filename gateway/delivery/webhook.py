"""The webhook sender: one batch, one signed POST (Standard Webhooks).

Headers are `webhook-id` (the batch's id: the same on every retry of it, so a receiver
drops a repeat), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 over id.timestamp.body>`, one per valid secret, space-separated:
two during a rotation's overlap). The signature is made by the `standardwebhooks` package,
the receivers' own reference implementation, so what we sign is by construction what
their verifier computes.

What an answer means: 2xx delivered; 408, 429 and 5xx, a timeout or a network error are
worth another attempt (`Retry-After` honoured on 429 and 503, in seconds or as an HTTP
date); anything else, a redirect included (never followed), is refused for good. Neither
the answer's body nor its headers beyond `Retry-After` are read: a receiver's words are
never logged or stored, only a short reason code (`status-503`, `timeout`).

Every connection goes through `connectors.netguard` unless `allow_private_sources`: the
URL judged before the first request, each peer address checked as it connects.
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Final

import aiohttp
from standardwebhooks.webhooks import Webhook

from connectors.netguard import PrivateAddress, PublicOnlyConnector, RefusedAddress, check_url
from gateway.delivery.destinations import open_secrets
from gateway.delivery.push import Batch, Outcome, Sender
from gateway.keys.master import SecretBox
from gateway.store.records import Destination

CONTENT_TYPE: Final = "application/json"
#: The longest `Retry-After` taken as given; a longer one waits this long, then tries.
MAX_RETRY_AFTER: Final = 3600.0


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), capped;
    None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER)


class Signer:
    """Signs with each valid secret, current first (`standardwebhooks.Webhook.sign`)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._hooks = [Webhook(s) for s in secrets]

    def signature(self, message_id: str, at: datetime, body: str) -> str:
        return " ".join(h.sign(message_id, at.astimezone(UTC), body) for h in self._hooks)


class WebhookSender:
    """The `Sender` of a webhook destination; one session for the worker's life."""

    def __init__(
        self,
        url: str,
        signer: Signer,
        *,
        session: aiohttp.ClientSession,
        timeout: float = 30.0,
        allow_private: bool = False,
    ) -> None:
        self._url = url
        self._signer = signer
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow_private = allow_private

    async def send(self, batch: Batch) -> Outcome:
        if not self._allow_private:
            try:
                check_url(self._url)
            except PrivateAddress:
                return Outcome("rejected", "refused-address")
        now = datetime.now(UTC)
        text = batch.body.decode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            "webhook-id": batch.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.signature(batch.message_id, now, text),
        }
        try:
            async with self._session.post(
                self._url,
                data=batch.body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                wait = retry_after(resp.headers.get("Retry-After"), now)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed_outcome(exc)
        return answer_outcome(status, wait)


def answer_outcome(status: int, wait: float | None = None) -> Outcome:
    """What a destination's answer means (the rule in this module's docstring, shared by
    every sender): `wait` is what its `Retry-After` asked, honoured on 429 and 503."""
    if 200 <= status < 300:
        return Outcome("delivered", f"status-{status}")
    if status in (429, 503):
        return Outcome("retry", f"status-{status}", wait)
    if status == 408 or status >= 500:
        return Outcome("retry", f"status-{status}")
    if 300 <= status < 400:
        return Outcome("rejected", f"redirect-{status}")
    return Outcome("rejected", f"status-{status}")


def failed_outcome(exc: aiohttp.ClientError | TimeoutError) -> Outcome:
    """What a request that got no answer means: a refused address is refused for good,
    a timeout or a network error is worth another attempt."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress):
        return Outcome("rejected", "refused-address")
    if isinstance(exc, TimeoutError):
        return Outcome("retry", "timeout")
    return Outcome("retry", "network")


def public_session(*, allow_private: bool) -> aiohttp.ClientSession:
    """A session reaching public addresses only, unless `allow_private`."""
    if allow_private:
        return aiohttp.ClientSession()
    return aiohttp.ClientSession(connector=PublicOnlyConnector())


def webhook_opener(
    box: SecretBox, *, allow_private: bool, timeout: float = 30.0
) -> Callable[[Destination], AbstractAsyncContextManager[Sender]]:
    """The `SenderFactory` for webhook destinations: the secrets opened once per worker,
    one session per worker."""

    @asynccontextmanager
    async def opened(d: Destination) -> AsyncIterator[Sender]:
        held = open_secrets(box, d)
        signer = Signer(held.valid(d.previous_until, datetime.now(UTC)))
        async with public_session(allow_private=allow_private) as session:
            yield WebhookSender(
                d.url, signer, session=session, timeout=timeout, allow_private=allow_private
            )

    return opened
