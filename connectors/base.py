"""The connector protocol: pages of raw vendor records in, minimised Subjects out.

A connector knows one vendor API: how to authenticate, how to ask for a page (offset,
cursor or search), how to ask only for the fields the mapping reads, and how the vendor
signals errors and rate limits. `Connector.fetch_page` wraps the vendor-specific
`fetch_raw` with the parts every source shares:

* retries with exponential backoff and jitter (tenacity) on 5xx, timeouts, connection
  errors and unreadable bodies; a 429 waits exactly as long as `Retry-After` says;
* a `before_attempt` hook awaited before every attempt, first and retries alike: the
  sync engine re-checks the customer's authorisation there, so a revocation during a
  wait stops the next request (the hook raises, and the error is never retried);
* bodies read as they stream in, never beyond `max_response_bytes` (a connector setting,
  default 32 MiB): an oversized or endless page fails at once ("too_large", not retried)
  instead of filling the gateway's memory;
* the projector, applied *at the door*: the raw records of a page are turned into Subject
  dicts before `fetch_page` returns, so raw payloads never reach the sync engine, the store,
  a log line or an exception.

Errors are `ConnectorError`s whose messages hold an HTTP status, a vendor error code or log
reference at most: never a response body, which may carry personal data.

Push sources (SCIM) do not fetch; they hand records to the same projector through the sync
engine, so they implement only what they need of this module (`ConnectorError`, the
projector contract).
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal, Protocol

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)
from yarl import URL

from connectors.netguard import PrivateAddress, PublicOnlyConnector, RefusedAddress, check_url

ErrorKind = Literal[
    "auth", "config", "unavailable", "malformed", "rate_limited", "refused", "too_large"
]  # fmt: skip
DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30)
MAX_RETRY_AFTER_SECONDS: Final = 300.0
#: The largest response body read from a source unless the connector's `max_response_bytes`
#: setting says otherwise: far above any sane page, far below what hurts the gateway.
DEFAULT_MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024
MAX_RESPONSE_BYTES_LIMIT: Final = 1024 * 1024 * 1024
_READ_CHUNK: Final = 64 * 1024


class SyncMode(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


class ConnectorError(Exception):
    """A source failed; `kind` says how, the message says what a user can act on.

    Never put a response body in the message: it is shown in the admin API and logs.
    Retried kinds: "unavailable", "malformed", "rate_limited". A body over the size cap
    ("too_large") is not retried: the same page would be as large the next time.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in ("unavailable", "malformed", "rate_limited")


@dataclass(frozen=True)
class ConnectorConfig:
    """What an admin configured: where the source is and how to get in.

    `credentials` are secrets (stored encrypted, never returned or logged); `settings` are
    vendor options such as an AFAS GetConnector id or a page size.
    """

    type: str
    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PageRequest:
    """Which page to fetch.

    `cursor` is the connector's own position within a run (None for the first page), and is
    what the sync engine checkpoints after each committed page. `since` is the watermark of
    the previous successful sync, for incremental mode.
    """

    mode: SyncMode
    cursor: str | None = None
    since: str | None = None


@dataclass
class RawPage:
    """One vendor page. Lives only until it is minimised (`Connector.minimise`), in the
    process that fetched it: `fetch_page`, or a source worker's read-ahead of the page
    after the one it minimises; never stored or passed on."""

    records: list[Any]
    next_cursor: str | None
    #: The highest modification time seen, as the vendor spells it; None if unknown.
    watermark: str | None = None
    #: The source has nothing new since the watermark it was handed (a file source whose
    #: newest export is the one read last time): the run reads nothing and, being no
    #: evidence of who left, looks for no leavers.
    unchanged: bool = False


@dataclass
class MinimisedPage:
    """One page after the door: Subject dicts and counts, nothing raw."""

    subjects: list[dict[str, Any]]
    rejected: list[tuple[int, str]]
    dropped: Counter[str]
    fetched: int
    next_cursor: str | None
    watermark: str | None
    unchanged: bool = False

    @property
    def last(self) -> bool:
        return self.next_cursor is None


@dataclass
class RetryPolicy:
    """How hard to try before a page fetch counts as failed."""

    attempts: int = 5
    max_seconds: float = 300.0
    initial_wait: float = 0.5
    max_wait: float = 30.0


@dataclass
class ConnectorStats:
    """Per-run counts for metrics and the sync report."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, ConnectorError) and exc.retryable


class ProjectedPage(Protocol):
    """What a `Minimiser` makes of one page: Subject dicts, rejections, dropped names."""

    @property
    def subjects(self) -> list[dict[str, Any]]: ...
    @property
    def rejected(self) -> list[tuple[int, str]]: ...
    @property
    def dropped(self) -> Counter[str]: ...


class Minimiser(Protocol):
    """The door a connector hands raw records through (the gateway's compiled mapping).

    Connectors know it only through this protocol, so `connectors/` never imports the
    gateway: a connector is a leaf that the core calls, not a part of the core.
    """

    @property
    def source_fields(self) -> frozenset[str]:
        """Every source field the mapping reads (so a connector can ask for just those)."""
        ...

    def project_page(self, records: Iterable[Any]) -> ProjectedPage: ...


@dataclass(frozen=True)
class Reply:
    """One answer as `Connector.send` read it: lives only inside a connector's call."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes = field(repr=False)


#: Where a connector hands credentials the source replaced (a rotated OAuth refresh token):
#: the gateway seals and stores them before the connector uses what it was given with them.
KeepCredentials = Callable[[Mapping[str, str]], Awaitable[None]]


class Connector(ABC):
    """Base class for pull connectors. Subclasses implement `fetch_raw` (and usually
    `auth_headers`); the sync engine calls only `fetch_page`.
    """

    #: The connector type name used in configs, metrics labels and the registry.
    type: ClassVar[str]

    def __init__(
        self,
        config: ConnectorConfig,
        projector: Minimiser,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
        keep_credentials: KeepCredentials | None = None,
    ) -> None:
        self.config = config
        self.before_attempt = before_attempt
        #: None where nobody can keep replaced credentials (a bench's bare connector):
        #: a connector that is handed a rotated refresh token then holds it for its life.
        self.keep_credentials = keep_credentials
        self.projector = projector
        self.session = session
        self.retry = retry or RetryPolicy()
        self.stats = ConnectorStats()
        self._sleep = sleep
        self.base_url = config.base_url.rstrip("/")
        self.max_response_bytes = max_response_bytes(config.settings)
        self.configure(config.settings)

    @abstractmethod
    def configure(self, settings: Mapping[str, Any]) -> None:
        """Read vendor settings (called once by `__init__`); raise ConnectorError("config")
        for a setting that cannot work, so a bad connector fails before its first request.
        """

    @abstractmethod
    async def fetch_raw(self, request: PageRequest) -> RawPage:
        """Fetch one vendor page. Raise `ConnectorError` for anything that went wrong."""

    async def aclose(self) -> None:
        """Let go of what a run holds between pages (an SFTP connection and its open
        file); the engine and the preview call it when they are done, finished or not.
        HTTP connectors hold nothing: the session is the caller's."""
        return

    async def fetch_page(self, request: PageRequest) -> MinimisedPage:
        """Fetch one page with retries and minimise it before returning."""
        return self.minimise(await self.read_page(request))

    async def read_page(self, request: PageRequest) -> RawPage:
        """One vendor page, raw: `fetch_raw` with the retry policy, and `before_attempt`
        asked before every attempt. For a caller that minimises it at once (`minimise`):
        `fetch_page`, and a source worker that reads the next page while it minimises
        this one."""
        policy = self.retry
        retrying = AsyncRetrying(
            retry=retry_if_exception(_should_retry),
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_seconds),
            wait=self._wait,
            sleep=self._counted_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self.before_attempt is not None:
                    await self.before_attempt()
                return await self.fetch_raw(request)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    def minimise(self, raw: RawPage) -> MinimisedPage:
        """A raw page through the door (the projector), its raw records let go of."""
        page = self.projector.project_page(raw.records)
        fetched = len(raw.records)
        raw.records.clear()
        return MinimisedPage(
            subjects=page.subjects,
            rejected=page.rejected,
            dropped=page.dropped,
            fetched=fetched,
            next_cursor=raw.next_cursor,
            watermark=raw.watermark,
            unchanged=raw.unchanged,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ConnectorError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_SECONDS)
        n = state.attempt_number
        backoff: float = min(self.retry.max_wait, self.retry.initial_wait * 2.0 ** (n - 1))
        return backoff / 2 + random.uniform(0, backoff / 2)

    async def _counted_sleep(self, seconds: float) -> None:
        self.stats.retries += 1
        self.stats.waited_seconds += seconds
        await self._sleep(seconds)

    # ------------------------------------------------------------------ HTTP helpers

    def number_setting(
        self, settings: Mapping[str, Any], name: str, default: float, low: float, high: float
    ) -> float:
        """A numeric setting within [low, high] (2 and 2.0 both do), else a "config" error
        naming it, so a connector with a setting that cannot work fails when configured."""
        value = settings.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ConnectorError(
                "config", f"{self.type}: setting {name} must be from {low} to {high}"
            )
        return float(value)

    def reachable_origin(self, text: object, what: str) -> URL:
        """`text` (a setting, or an address a vendor's answer names) as an http(s) origin
        this connector may reach, judged before anything is sent to it: no credentials,
        path, query or fragment; https when the base URL is; a public address unless the
        gateway allows private sources. Else a "config" error naming `what`."""
        try:
            url = URL(text.strip()) if isinstance(text, str) else None
        except (ValueError, TypeError):
            url = None
        if (
            url is None
            or url.scheme not in ("http", "https")
            or not url.host
            or url.user is not None
            or url.password is not None
            or url.path not in ("", "/")
            or url.query_string
            or url.fragment
            or (self.base_url.startswith("https:") and url.scheme != "https")
        ):
            raise ConnectorError(
                "config",
                f"{self.type}: the {what} must be a plain http(s) origin without a path "
                "(https when the base URL is)",
            )
        if isinstance(self.session.connector, PublicOnlyConnector):
            try:
                check_url(str(url.origin()))
            except PrivateAddress as exc:
                raise ConnectorError(
                    "config", f"{self.type}: the {what} is refused: {exc} (allow_private_sources)"
                ) from None
        return url.origin()

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request; vendors override this."""
        return {}

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """One HTTP call to `base_url + path`, mapped to `ConnectorError` on every failure
        mode: an error status through `http_error`, a body that is not JSON as "malformed"."""
        headers = {"Accept": "application/json", **self.auth_headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        reply = await self.send(
            method, f"{self.base_url}{path}", headers=headers, params=params, data=data
        )
        if reply.status >= 400:
            if reply.status == 429:
                self.stats.rate_limited += 1
            raise self.http_error(
                reply.status, reply.body, parse_retry_after(reply.headers.get("Retry-After"))
            )
        return self.json_of(reply.body)

    def json_of(self, payload: bytes) -> Any:
        """A body parsed as JSON; anything else is "malformed" (and its text never quoted)."""
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ConnectorError(
                "malformed", f"{self.type}: the source sent a body that is not valid JSON"
            ) from None

    async def send(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        data: bytes | Mapping[str, str] | None = None,
    ) -> Reply:
        """One request to any URL through the connector's (public-only) session, its body
        read within `max_response_bytes`. Transport failures and redirects become
        `ConnectorError`s; every status is returned, for the caller to judge: a token
        endpoint's 400 means something else than an API's.

        Redirects are not followed: a source that redirects could point the gateway,
        credentials and all, at an address nobody configured. A `yarl.URL` built with
        `encoded=True` is sent byte for byte (a vendor's opaque next-page link).
        """
        self.stats.requests += 1
        try:
            async with self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=DEFAULT_TIMEOUT,
                allow_redirects=False,
            ) as response:
                payload = await self._read_capped(response)
                status = response.status
                if 300 <= status < 400:
                    raise ConnectorError(
                        "config",
                        f"{self.type}: the source redirected (HTTP {status}); "
                        "set the base URL to the address it redirects to",
                        status=status,
                    )
                return Reply(status, response.headers, payload)
        except TimeoutError:
            raise ConnectorError("unavailable", f"{self.type}: the source timed out") from None
        except aiohttp.ClientPayloadError:
            raise ConnectorError("malformed", f"{self.type}: the response was cut off") from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                raise ConnectorError(
                    "config", f"{self.type}: {exc.os_error.strerror} (allow_private_sources)"
                ) from None
            raise ConnectorError(
                "unavailable", f"{self.type}: cannot reach the source ({type(exc).__name__})"
            ) from None
        except aiohttp.ClientError as exc:
            raise ConnectorError(
                "unavailable", f"{self.type}: cannot reach the source ({type(exc).__name__})"
            ) from None

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, read as it streams in and never beyond `max_response_bytes` (after
        decompression): an oversized or endless body fails the page at once, without
        buffering it, and the connection is dropped rather than drained."""
        limit = self.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            response.close()
            raise self._too_large(limit)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            if len(body) + len(chunk) > limit:
                response.close()
                raise self._too_large(limit)
            body += chunk
        return bytes(body)

    def _too_large(self, limit: int) -> ConnectorError:
        return ConnectorError(
            "too_large",
            f"{self.type}: the source sent a response larger than {limit} bytes "
            "(max_response_bytes); the page was not read",
        )

    def http_error(self, status: int, payload: bytes, retry_after: float | None) -> ConnectorError:
        """Map an HTTP error status to a `ConnectorError`. Vendors refine the message by
        reading *safe* parts of their error body (codes, log references), never the text.
        """
        if status == 429:
            return ConnectorError(
                "rate_limited",
                f"{self.type}: rate limited (HTTP 429)",
                status=status,
                retry_after=retry_after,
            )
        if status in (401, 403):
            return ConnectorError(
                "auth",
                f"{self.type}: the source refused the credentials (HTTP {status})",
                status=status,
            )
        if status in (404, 400, 405, 422):
            return ConnectorError(
                "config",
                f"{self.type}: the source rejected the request (HTTP {status}); "
                "check the base URL and connector settings",
                status=status,
            )
        return ConnectorError(
            "unavailable",
            f"{self.type}: the source failed (HTTP {status})",
            status=status,
            retry_after=retry_after,
        )


def max_response_bytes(settings: Mapping[str, Any]) -> int:
    """The `max_response_bytes` setting (default 32 MiB), checked so that a connector with
    a nonsensical cap fails when it is configured, not mid-run."""
    value = settings.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1024 <= value <= MAX_RESPONSE_BYTES_LIMIT
    ):
        raise ConnectorError(
            "config",
            f"max_response_bytes must be a whole number from 1024 to {MAX_RESPONSE_BYTES_LIMIT}",
        )
    return value


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))
