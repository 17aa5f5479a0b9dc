"""CSV exports over SFTP: the newest file matching a pattern, read as a full sync.

Many Dutch HR systems offer no API but a scheduled export to an SFTP drop. The connector
logs in (a read-only account: a private key, or a password), lists the directory in the
base URL (`sftp://host[:port]/path/to/exports`), and takes the newest regular file whose
name matches `pattern` (by modification time; ties by name). A file still being written is
not read: its size and time must stay the same across two looks `settle_seconds` apart,
and files younger than `min_age_seconds` are passed over. The file is streamed through the
same CSV reader as `sluis map` (`connectors.exports`: `;` or `,`, UTF-8 with or without a
byte-order mark, Windows-1252), a page of `page_size` rows at a time, and is never written
anywhere: each row keeps only the columns the mapping reads the moment it is parsed, so the
export's other columns (BSN, IBAN, salary, ...) never reach the projector, a page, a log or
an error. Memory is the reader's buffer and one page, whatever the file's size; a file over
`max_file_bytes` is refused before it is read.

Every file is a full export, so every run is a full sync (the type is registered
`full_only`): people missing from the file are leavers, and the engine's mass-delete guard
holds a file that would remove too many. The run's watermark names the file it read:
`<mtime>|<size>|sha256:<digest>|<name>`. The next run is handed it (`PageRequest.since`);
when the newest file still has that name, time and size, nothing is read and the run ends
with the source marked unchanged (no leavers are looked for). A bad row is quarantined with
the file, its line and the reason (the reader's, or the field the door refused), never a
value.

The host's key must be pinned: `credentials["host_key"]` holds its SHA256 fingerprint as
`ssh-keygen -lf` prints it (several may be given, separated by spaces or commas, for a key
rotation). A server presenting any other key is refused before a credential is sent. The
address rules of HTTP sources apply: the host is judged as a URL is
(`connectors.netguard.check_url`), every address it resolves to must be public, and the
connected peer is checked again, unless the gateway allows private sources (then the engine
hands the connector a plain session, which is how the connector learns it).

Page cursors are `<rows consumed>|<mtime>|<size>|<name>`: a run resumed on another
replica opens the same file again (if its time and size still match) and skips the rows
already committed. A read failure mid-file is retried the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import io
import logging
import posixpath
import re
import socket
import stat
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, cast
from urllib.parse import unquote, urlsplit

import asyncssh

from connectors.base import (
    Connector,
    ConnectorError,
    MinimisedPage,
    PageRequest,
    RawPage,
)
from connectors.exports import ExportError, Malformed, ReadStats, read_csv
from connectors.netguard import PrivateAddress, PublicOnlyConnector, check_url, is_public

log = logging.getLogger(__name__)

DEFAULT_PATTERN: Final = "*.csv"
DEFAULT_PAGE_SIZE: Final = 1000
MAX_PAGE_SIZE: Final = 10_000
DEFAULT_MAX_FILE_BYTES: Final = 1 << 30
MAX_FILE_BYTES_LIMIT: Final = 64 << 30
DEFAULT_SETTLE_SECONDS: Final = 2.0
#: A line (a row) longer than this is quarantined, never buffered.
MAX_LINE_BYTES: Final = 1 << 20
_BLOCK: Final = 64 * 1024
_CONNECT_SECONDS: Final = 15.0
#: How long the reading thread waits for one block before it gives up.
_READ_SECONDS: Final = 120.0
MAX_REPORTED_NAME: Final = 64
UNNAMED_COLUMN: Final = "<unnamed field>"
_FINGERPRINT: Final = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@dataclass(frozen=True)
class ExportFile:
    """Which file a run reads: what it is known by between runs and across replicas."""

    name: str
    mtime: int
    size: int

    def cursor(self, consumed: int) -> str:
        return f"{consumed}|{self.mtime}|{self.size}|{self.name}"

    def watermark(self, digest: str) -> str:
        when = datetime.fromtimestamp(self.mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{when}|{self.size}|sha256:{digest}|{self.name}"

    def same_as_watermark(self, watermark: str | None) -> bool:
        if not watermark:
            return False
        parts = watermark.split("|", 3)
        if len(parts) != 4:
            return False
        when = datetime.fromtimestamp(self.mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return parts[0] == when and parts[1] == str(self.size) and parts[3] == self.name


class _Stopped(Exception):
    """The run let go of the file while the reading thread was still at it."""


class _TooLarge(Exception):
    pass


class _RemoteBytes(io.RawIOBase):
    """A remote file as a blocking byte stream for the reader's thread: each read is an
    SFTP read made on the event loop. Counts and hashes every byte as it passes."""

    def __init__(
        self, file: asyncssh.SFTPClientFile, loop: asyncio.AbstractEventLoop, cap: int
    ) -> None:
        super().__init__()
        self._file = file
        self._loop = loop
        self._cap = cap
        self.digest = hashlib.sha256()
        self.count = 0
        self.stopped = False
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.stopped:
            raise _Stopped
        if self.ended:
            return 0  # the end is final: a short file stays short (and is caught as such)
        want = len(buffer)
        future = asyncio.run_coroutine_threadsafe(self._file.read(want), self._loop)
        data = cast(bytes, future.result(timeout=_READ_SECONDS))  # opened in binary mode
        got = len(data)
        self.ended = got == 0
        self.count += got
        if self.count > self._cap:
            raise _TooLarge
        self.digest.update(data)
        buffer[:got] = data
        return got


@dataclass
class _FilePage(RawPage):
    """A raw page of rows with where they stood in the file, for quarantine reasons."""

    lines: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)
    file_name: str = ""
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class _Taken:
    """One page as the reading thread took it: minimised rows and their lines."""

    records: list[dict[str, str]]
    lines: list[int]
    malformed: list[tuple[int, str]]
    done: bool
    #: Columns cut off the rows, by name (names only: what the ledger records as dropped).
    dropped: Counter[str] = field(default_factory=Counter)


class _PinnedHost(asyncssh.SSHClient):
    """Trusts exactly the pinned host keys, and remembers the one it was shown."""

    def __init__(self, pins: frozenset[str]) -> None:
        self.pins = pins
        self.shown: str | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.shown = key.get_fingerprint("sha256")
        return self.shown in self.pins


class _Open:
    """The connection, the file and the reader of one run (closed at its end or failure)."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        sftp: asyncssh.SFTPClient,
        export: ExportFile,
    ) -> None:
        self.conn = conn
        self.sftp = sftp
        self.export = export
        self.file: asyncssh.SFTPClientFile | None = None
        self.raw: _RemoteBytes | None = None
        self.rows: Iterator[tuple[int, dict[str, str] | Malformed]] | None = None
        self.consumed = 0

    async def close(self) -> None:
        if self.raw is not None:
            self.raw.stopped = True
        if self.file is not None:
            with contextlib.suppress(Exception):
                await self.file.close()
        self.sftp.exit()
        self.conn.close()
        with contextlib.suppress(Exception):
            await self.conn.wait_closed()


class SftpConnector(Connector):
    """The newest CSV export in an SFTP directory (settings: see the module docstring)."""

    type: ClassVar[str] = "sftp"

    def configure(self, settings: Mapping[str, Any]) -> None:
        parts = urlsplit(self.config.base_url)
        if parts.scheme != "sftp" or not parts.hostname:
            raise ConnectorError(
                "config", "sftp: the base URL must be sftp://host[:port]/export/directory"
            )
        try:
            self.port = parts.port or 22
        except ValueError:
            raise ConnectorError("config", "sftp: the base URL's port is not a number") from None
        self.host = parts.hostname
        self.directory = posixpath.normpath(unquote(parts.path) or ".")
        pattern = settings.get("pattern", DEFAULT_PATTERN)
        if not isinstance(pattern, str) or not pattern or "/" in pattern or len(pattern) > 200:
            raise ConnectorError(
                "config", "sftp: setting pattern must be a file name pattern such as *.csv"
            )
        self.pattern = pattern
        self.page_size = _whole(settings, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        self.max_file_bytes = _whole(
            settings, "max_file_bytes", DEFAULT_MAX_FILE_BYTES, 1024, MAX_FILE_BYTES_LIMIT
        )
        self.settle_seconds = _seconds(settings, "settle_seconds", DEFAULT_SETTLE_SECONDS, 60.0)
        self.min_age_seconds = _seconds(settings, "min_age_seconds", 0.0, 7 * 24 * 3600.0)
        credentials = self.config.credentials
        self.pins = frozenset(_FINGERPRINT.findall(credentials.get("host_key") or ""))
        if not self.pins:
            raise ConnectorError(
                "config",
                "sftp: credentials need host_key, the server's SHA256 host key fingerprint "
                "(ssh-keyscan HOST | ssh-keygen -lf -); connecting unpinned is not offered",
            )
        self.username = credentials.get("username") or ""
        if not self.username:
            raise ConnectorError("auth", "sftp: no username configured (credentials: username)")
        self.password = credentials.get("password") or None
        key_text = credentials.get("private_key") or ""
        self.client_key: asyncssh.SSHKey | None = None
        if key_text:
            try:
                self.client_key = asyncssh.import_private_key(
                    key_text, credentials.get("passphrase") or None
                )
            except (asyncssh.KeyImportError, ValueError, TypeError):
                raise ConnectorError(
                    "auth",
                    "sftp: the private key cannot be read (OpenSSH or PEM format expected; "
                    "check the passphrase)",
                ) from None
        if self.client_key is None and self.password is None:
            raise ConnectorError("auth", "sftp: credentials need private_key or password")
        #: The engine's session tells whether private addresses are allowed (see above).
        self.public_only = isinstance(self.session.connector, PublicOnlyConnector)
        self._open: _Open | None = None

    def minimise(self, raw: RawPage) -> MinimisedPage:
        """The door's page, with what the file refused named by file and line."""
        lines, malformed, name, cut = [], [], "", Counter[str]()
        if isinstance(raw, _FilePage):
            lines, malformed, name, cut = raw.lines, raw.malformed, raw.file_name, raw.dropped
        page = self.projector.project_page(raw.records)
        fetched = len(raw.records) + len(malformed)
        raw.records.clear()
        rejected = [(lines[i], f"{name} line {lines[i]}: {why}") for i, why in page.rejected]
        rejected += [(line, f"{name} line {line}: {why}") for line, why in malformed]
        return MinimisedPage(
            subjects=page.subjects,
            rejected=rejected,
            dropped=Counter(page.dropped) + cut,
            fetched=fetched,
            next_cursor=raw.next_cursor,
            watermark=raw.watermark,
            unchanged=raw.unchanged,
        )

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        try:
            return await self._fetch(request)
        except BaseException as exc:
            await self._close()
            if isinstance(exc, ConnectorError | asyncio.CancelledError):
                raise
            if isinstance(exc, Exception):
                raise self._mapped(exc) from None
            raise

    async def _fetch(self, request: PageRequest) -> RawPage:
        if request.cursor is None or self._open is None:
            if request.cursor is None:
                await self._close()
            opened = await self._start(request)
            if opened is None:
                return _page([], None, request.since, unchanged=True)
        state = self._open
        assert state is not None
        assert state.rows is not None
        assert state.raw is not None
        taken = await asyncio.to_thread(_take, state.rows, self.page_size, self.wanted)
        state.consumed += len(taken.records) + len(taken.malformed)
        export = state.export
        if not taken.done:
            raw = _page(taken.records, export.cursor(state.consumed), None)
        else:
            await self._check_complete(state)
            digest = state.raw.digest.hexdigest()
            await self._close()
            log.info("sftp: read an export of %d bytes, %d rows", export.size, state.consumed)
            raw = _page(taken.records, None, export.watermark(digest))
        raw.lines, raw.malformed, raw.file_name = taken.lines, taken.malformed, export.name
        raw.dropped = taken.dropped
        return raw

    @property
    def wanted(self) -> frozenset[str]:
        return self.projector.source_fields

    async def _start(self, request: PageRequest) -> _Open | None:
        """Connect, choose the file, and open it at the cursor; None if it is the file the
        last run read (`since`)."""
        conn = await self._connect()
        try:
            sftp = await conn.start_sftp_client()
        except BaseException:
            conn.close()
            raise
        state = _Open(conn, sftp, ExportFile("", 0, 0))
        self._open = state
        if request.cursor is not None:
            skip, export = _parse_cursor(request.cursor)
            state.export = await self._same_file(sftp, export)
        else:
            skip = 0
            state.export = await self._newest(sftp)
            if state.export.same_as_watermark(request.since):
                await self._close()
                return None
        if state.export.size > self.max_file_bytes:
            raise self._file_too_large()
        path = posixpath.join(self.directory, state.export.name)
        state.file = await sftp.open(path, "rb", block_size=_BLOCK)
        state.raw = _RemoteBytes(state.file, asyncio.get_running_loop(), self.max_file_bytes)
        stream = io.BufferedReader(state.raw, buffer_size=_BLOCK)
        state.rows = read_csv(stream, ReadStats(), MAX_LINE_BYTES)
        if skip:
            await asyncio.to_thread(_skip, state.rows, skip)
            state.consumed = skip
        return state

    async def _connect(self) -> asyncssh.SSHClientConnection:
        sock = await self._socket()
        pinned: list[_PinnedHost] = []

        def client() -> _PinnedHost:
            pinned.append(_PinnedHost(self.pins))
            return pinned[-1]

        try:
            return await asyncio.wait_for(
                asyncssh.connect(
                    sock=sock,
                    host=self.host,
                    port=self.port,
                    username=self.username,
                    client_keys=[self.client_key] if self.client_key is not None else None,
                    password=self.password,
                    known_hosts=([], [], []),
                    client_factory=client,
                    agent_path=None,
                    config=[],
                    gss_auth=False,
                    gss_kex=False,
                    preferred_auth="publickey,password",
                ),
                _CONNECT_SECONDS,
            )
        except asyncssh.HostKeyNotVerifiable:
            sock.close()
            shown = pinned[-1].shown if pinned else None
            raise ConnectorError(
                "auth",
                f"sftp: the server's host key ({shown or 'unknown'}) does not match the pinned "
                "host_key; if the server's key was really replaced, pin the new fingerprint",
            ) from None
        except asyncssh.PermissionDenied:
            sock.close()
            raise ConnectorError(
                "auth", "sftp: the server refused the username and key or password"
            ) from None
        except BaseException:
            sock.close()
            raise

    async def _socket(self) -> socket.socket:
        """A connected socket to a public address (unless private sources are allowed)."""
        if self.public_only:
            try:
                check_url(self.config.base_url)
            except PrivateAddress as exc:
                raise ConnectorError(
                    "config", f"sftp: the source address is refused: {exc} (allow_private_sources)"
                ) from None
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(
                loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM), _CONNECT_SECONDS
            )
        except (OSError, TimeoutError):
            raise ConnectorError("unavailable", "sftp: the host name does not resolve") from None
        if self.public_only and any(not is_public(str(info[4][0])) for info in found):
            raise ConnectorError(
                "config",
                "sftp: the host resolves to an address that is not public (allow_private_sources)",
            )
        for family, kind, proto, _, address in found:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, address), _CONNECT_SECONDS)
            except (OSError, TimeoutError):
                sock.close()
                continue
            peer = sock.getpeername()
            if self.public_only and not is_public(str(peer[0])):
                sock.close()
                raise ConnectorError(
                    "config",
                    "sftp: the source's peer address is not public (allow_private_sources)",
                )
            return sock
        raise ConnectorError("unavailable", "sftp: cannot reach the server")

    async def _newest(self, sftp: asyncssh.SFTPClient) -> ExportFile:
        now = datetime.now(UTC).timestamp()
        found: list[ExportFile] = []
        for entry in await sftp.readdir(self.directory):
            name = str(entry.filename)
            attrs = entry.attrs
            if not name or not fnmatch.fnmatchcase(name, self.pattern):
                continue
            if attrs.permissions is not None and not stat.S_ISREG(attrs.permissions):
                continue
            if attrs.mtime is None or attrs.size is None:
                continue
            if self.min_age_seconds and now - attrs.mtime < self.min_age_seconds:
                continue
            found.append(ExportFile(name, int(attrs.mtime), attrs.size))
        if not found:
            raise ConnectorError(
                "config",
                f"sftp: no file in the export directory matches {self.pattern!r} "
                "(old enough to read); nothing was synced",
            )
        newest = max(found, key=lambda f: (f.mtime, f.name))
        if self.settle_seconds:
            await asyncio.sleep(self.settle_seconds)
            again = await self._stat(sftp, newest.name)
            if again != newest:
                raise ConnectorError(
                    "unavailable", "sftp: the newest export is still being written"
                )
        return newest

    async def _same_file(self, sftp: asyncssh.SFTPClient, export: ExportFile) -> ExportFile:
        now = await self._stat(sftp, export.name)
        if now != export:
            raise ConnectorError(
                "config",
                "sftp: the export this run was reading has changed or gone; "
                "start a full sync again",
            )
        return now

    async def _stat(self, sftp: asyncssh.SFTPClient, name: str) -> ExportFile:
        attrs = await sftp.stat(posixpath.join(self.directory, name))
        return ExportFile(name, int(attrs.mtime or 0), attrs.size or 0)

    async def _check_complete(self, state: _Open) -> None:
        assert state.raw is not None
        export = state.export
        if state.raw.count != export.size:
            raise ConnectorError(
                "malformed",
                f"sftp: the export was cut off ({state.raw.count} of {export.size} bytes read)",
            )
        if await self._stat(state.sftp, export.name) != export:
            raise ConnectorError("unavailable", "sftp: the export changed while it was read")

    async def aclose(self) -> None:
        await self._close()

    async def _close(self) -> None:
        state, self._open = self._open, None
        if state is not None:
            await state.close()

    def _file_too_large(self) -> ConnectorError:
        return ConnectorError(
            "too_large",
            f"sftp: the export is larger than {self.max_file_bytes} bytes (max_file_bytes); "
            "it was not read",
        )

    def _mapped(self, exc: Exception) -> ConnectorError:
        """A failure as a `ConnectorError`; never with a server's text, which may quote a
        file name or worse."""
        if isinstance(exc, _TooLarge):
            return self._file_too_large()
        if isinstance(exc, ExportError):
            return ConnectorError("config", f"sftp: the export's {exc}")
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            return ConnectorError("config", "sftp: the export directory or file does not exist")
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return ConnectorError(
                "auth", "sftp: the account may not read the export directory or file"
            )
        if isinstance(exc, asyncssh.SFTPError):
            return ConnectorError("unavailable", f"sftp: the server failed a request ({exc.code})")
        if isinstance(exc, asyncssh.DisconnectError):
            return ConnectorError("unavailable", f"sftp: disconnected ({type(exc).__name__})")
        if isinstance(exc, _Stopped | TimeoutError | OSError | asyncssh.Error):
            return ConnectorError(
                "unavailable", f"sftp: cannot reach the server ({type(exc).__name__})"
            )
        return ConnectorError(
            "malformed", f"sftp: the export could not be read ({type(exc).__name__})"
        )


def _page(
    records: list[Any], cursor: str | None, watermark: str | None, *, unchanged: bool = False
) -> _FilePage:
    return _FilePage(records=records, next_cursor=cursor, watermark=watermark, unchanged=unchanged)


def _take(
    rows: Iterator[tuple[int, dict[str, str] | Malformed]], count: int, wanted: frozenset[str]
) -> _Taken:
    """Up to `count` rows, each cut to the mapped columns the moment it is read."""
    taken = _Taken([], [], [], False)
    unwanted: list[str] | None = None
    for line, row in rows:
        if isinstance(row, Malformed):
            taken.malformed.append((line, row.reason))
        else:
            if unwanted is None:
                unwanted = [k for k in row if k not in wanted]
            taken.records.append({k: v for k, v in row.items() if k in wanted})
            taken.lines.append(line)
        if len(taken.records) + len(taken.malformed) >= count:
            break
    else:
        taken.done = True
    if unwanted:
        n = len(taken.records)
        taken.dropped.update({reportable_name(name): n for name in unwanted})
    return taken


def reportable_name(name: str) -> str:
    """A cut column's name as the ledger may show it: the door's rule for dropped names
    (`gateway.minimise.egress.is_reportable_field_name`, which a connector cannot import;
    a test holds the two together), since a header-less export makes values into names."""
    if (
        not name
        or len(name) > MAX_REPORTED_NAME
        or "@" in name
        or name.replace(" ", "").isdigit()
        or not name.isprintable()
    ):
        return UNNAMED_COLUMN
    return name


def _skip(rows: Iterator[Any], count: int) -> None:
    for _ in range(count):
        if next(rows, None) is None:
            return


def _parse_cursor(cursor: str) -> tuple[int, ExportFile]:
    parts = cursor.split("|", 3)
    try:
        if len(parts) == 4 and parts[3]:
            return int(parts[0]), ExportFile(parts[3], int(parts[1]), int(parts[2]))
    except ValueError:
        pass
    raise ConnectorError(
        "config", "sftp: the page cursor is not one this connector wrote; start the sync again"
    )


def _whole(settings: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConnectorError("config", f"sftp: setting {key} must be a whole number {low}-{high}")
    return value


def _seconds(settings: Mapping[str, Any], key: str, default: float, high: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise ConnectorError("config", f"sftp: setting {key} must be seconds from 0 to {high:g}")
    return float(value)
