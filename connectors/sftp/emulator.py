"""A local SFTP drop like the one an HR system exports to, with synthetic people.

`make_app` returns an aiohttp app like every emulator's: it serves the control surface
(`/_emulator`: faults, request log, touch and retire people) and, while it runs, an SFTP
server (asyncssh) on 127.0.0.1 at `app[ENVIRONMENT].port`. The server's one user, `sluis-export`,
may only read: every write, rename, removal or attribute change is refused, as an export
account should be set up. It logs in with the client key in `EMULATOR_CREDENTIALS` (or
the password), and the server presents a host key made when this module is imported, whose
SHA256 fingerprint is `HOST_KEY_FINGERPRINT` (what a client pins).

The directory `/exports` holds the newest export files (`medewerkers_NNNNNN.csv`, each
written with a later modification time than the one before) and a `LEESMIJ.txt` that no
export pattern should match. Changing people (touch, retire, break_email) publishes a new
export, as a nightly run would; a retired person is absent from it (a file source's leaver
signal). The files live in a temporary directory that is removed when the app stops.

Faults (`app[CONTROL].inject(...)`) apply to SFTP read requests, one per request: "error"
fails the read (SSH_FX_FAILURE), "truncate" ends the file there (a short read, as a
connection cut mid-transfer looks), "slow" delays it. Every read request is logged with the
status 200, or the fault's status for an error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import asyncssh
from aiohttp import web

from connectors.emulator_kit import (
    CONTROL,
    EmulatorControl,
    LoggedRequest,
    add_control_routes,
    new_control,
)
from connectors.sftp.synthetic import Encoding, employees, export_bytes

EMULATOR_USER: Final = "sluis-export"
EMULATOR_PASSWORD: Final = "emulator-only-password"  # noqa: S105 - a local stand-in's
_CLIENT_KEY: Final = asyncssh.generate_private_key("ssh-ed25519")
_HOST_KEY: Final = asyncssh.generate_private_key("ssh-ed25519")
HOST_KEY_FINGERPRINT: Final = _HOST_KEY.get_fingerprint("sha256")
EMULATOR_CREDENTIALS: Final = {
    "username": EMULATOR_USER,
    "private_key": _CLIENT_KEY.export_private_key().decode("ascii"),
    "host_key": HOST_KEY_FINGERPRINT,
}
EXPORT_DIR: Final = "exports"
#: How many export files the directory keeps (older ones are removed, as drops rotate).
KEEP_FILES: Final = 3


class SftpExports:
    """The people behind the exports, and the directory the exports are written to."""

    def __init__(self, people: int, seed: int, encoding: Encoding) -> None:
        self.rows = employees(people, seed)
        self.encoding: Encoding = encoding
        self.root: Path | None = None
        #: The SFTP server's port while the app runs.
        self.port = 0
        self._serial = 0
        self._last_mtime = int(time.time()) - 3600
        self._changes = 0

    @property
    def directory(self) -> Path:
        if self.root is None:
            raise RuntimeError("the emulator is not running")
        return self.root / EXPORT_DIR

    def open(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sluis-sftp-"))
        self.directory.mkdir()
        (self.directory / "LEESMIJ.txt").write_text("Exports van de HR-administratie.\n")
        self.publish()

    def close(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def publish(self) -> Path:
        """Write the people as a new export, newer than every file before it."""
        if self.root is None:
            raise RuntimeError("the emulator is not running")
        self._serial += 1
        path = self.directory / f"medewerkers_{self._serial:06d}.csv"
        partial = path.with_suffix(".part")
        partial.write_bytes(export_bytes(self.rows, encoding=self.encoding))
        self._last_mtime = max(int(time.time()), self._last_mtime + 1)
        os.utime(partial, (self._last_mtime, self._last_mtime))
        partial.rename(path)
        for old in sorted(self.directory.glob("medewerkers_*.csv"))[:-KEEP_FILES]:
            old.unlink()
        return path

    def size(self) -> int:
        return len(self.rows)

    def touch(self, count: int) -> list[str]:
        changed = []
        for row in self.rows[:count]:
            self._changes += 1
            row["Functie"] = f"Functie {self._changes}"
            changed.append(row["Personeelsnummer"])
        self.publish()
        return changed

    def retire(self, count: int) -> list[str]:
        """The last `count` people leave: the next export no longer lists them."""
        gone = self.rows[len(self.rows) - count :] if count else []
        del self.rows[len(self.rows) - len(gone) :]
        self.publish()
        return [row["Personeelsnummer"] for row in gone]

    def break_email(self, count: int) -> None:
        for row in self.rows[-count:] if count else []:
            row["E-mail"] = ""
        self.publish()


ENVIRONMENT: Final = web.AppKey("sftp_exports", SftpExports)


class _Server(asyncssh.SSHServer):
    """Logs `sluis-export` in with the emulator's client key or password; no one else."""

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == EMULATOR_USER and key == _CLIENT_KEY.convert_to_public()

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == EMULATOR_USER and password == EMULATOR_PASSWORD


def _read_only() -> asyncssh.SFTPError:
    return asyncssh.SFTPPermissionDenied("read-only export account")


_WRITING: Final = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC


class _ReadOnlyExports(asyncssh.SFTPServer):
    """The export directory, read-only, with the control's faults on read requests."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], exports: SftpExports, control: Any):
        super().__init__(chan, chroot=str(exports.root).encode())
        self._control: EmulatorControl = control

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & _WRITING:
            raise _read_only()
        return super().open(path, pflags, attrs)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        control = self._control
        now = control.clock()
        fault = control._take_fault("/" + EXPORT_DIR)
        status = fault.status if fault is not None and fault.kind == "error" else 200
        control.log.append(LoggedRequest(now, "READ", "/" + EXPORT_DIR, f"offset={offset}", status))
        if fault is not None and fault.kind == "error":
            raise asyncssh.SFTPFailure("injected failure")
        if fault is not None and fault.kind == "truncate":
            return b""
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        data = super().read(file_obj, offset, size)
        return data if isinstance(data, bytes) else await data

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        raise _read_only()

    def remove(self, path: bytes) -> None:
        raise _read_only()

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        raise _read_only()

    def rmdir(self, path: bytes) -> None:
        raise _read_only()

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        raise _read_only()

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        raise _read_only()

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise _read_only()


def _too_many(seconds: float) -> web.Response:
    return web.json_response({"error": "not an HTTP API"}, status=429)


def make_app(
    people: int = 200,
    seed: int = 1,
    *,
    page_cap: int | None = None,
    encoding: Encoding = "utf-8-sig",
    sftp_port: int = 0,
) -> web.Application:
    """The control surface, and the SFTP server on 127.0.0.1:`sftp_port` (0: any free
    port, found in `app[ENVIRONMENT].port` once the app has started). `page_cap` is accepted for
    the emulators' common signature; a file has no pages."""
    del page_cap
    app = web.Application()
    control = new_control(_too_many)
    exports = SftpExports(people, seed, encoding)
    control.people = exports
    control.vendor = "sftp"
    app[CONTROL] = control
    app[ENVIRONMENT] = exports
    add_control_routes(app)

    async def sftp_server(app: web.Application) -> AsyncIterator[None]:
        exports.open()
        server = await asyncssh.listen(
            "127.0.0.1",
            sftp_port,
            server_host_keys=[_HOST_KEY],
            server_factory=_Server,
            sftp_factory=lambda chan: _ReadOnlyExports(chan, exports, control),
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
        )
        exports.port = server.sockets[0].getsockname()[1]
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()
            exports.close()

    app.cleanup_ctx.append(sftp_server)
    return app


def base_url(app: web.Application) -> str:
    """Where a connector finds this emulator's exports (once the app has started)."""
    return f"sftp://127.0.0.1:{app[ENVIRONMENT].port}/{EXPORT_DIR}"
