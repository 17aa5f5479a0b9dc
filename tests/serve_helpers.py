"""A real `sluis serve` subprocess for tests: settings from the environment, stderr kept in a
file (a pipe nobody reads would block a gateway that logs a lot)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
ADMIN = "serve-test-admin-token-0123456789"


def http_call(
    url: str, *, body: bytes | None = None, token: str | None = None, method: str | None = None
) -> tuple[int, bytes]:
    """One plain HTTP call (stdlib only): the status and body, errors included."""
    request = urllib.request.Request(url, data=body, method=method or ("POST" if body else "GET"))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def call(
        self,
        path: str,
        *,
        body: bytes | None = None,
        token: str | None = None,
        method: str | None = None,
    ) -> tuple[int, bytes]:
        return http_call(self.base + path, body=body, token=token, method=method)


def serve_env(data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")}
    env.update(
        SLUIS_DATA_DIR=str(data_dir), SLUIS_PORT=str(port), SLUIS_ADMIN_TOKEN=ADMIN,
        SLUIS_SCHEDULER="false",
    )  # fmt: skip
    env.update({f"SLUIS_{k.upper()}": v for k, v in settings.items()})
    return env


@contextmanager
def running_gateway(tmp_path: Path, **settings: str) -> Iterator[Gateway]:
    """`sluis serve` on a free port until the block ends (then SIGINT, exit 0 expected)."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "serve"],
            cwd=REPO, env=serve_env(tmp_path / "data", port, **settings),
            stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    gateway = Gateway(proc, port, log_path)
    try:
        for _ in range(150):
            if proc.poll() is not None:
                raise AssertionError(f"sluis serve exited: {gateway.log()[-2000:]}")
            try:
                if gateway.call("/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("sluis serve did not come up")
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


@dataclass(frozen=True)
class Tokens:
    """API tokens of people provisioned in a data directory before `sluis serve` starts."""

    operator: str
    admin: str


def provision(data_dir: Path, tenant: str = "acme", **settings: object) -> Tokens:
    """Tenant `tenant` with an admin, and an operator, each with an API token (the admin's
    stepped up for the next five minutes), written into `data_dir` as `sluis serve` will
    open it. (A served gateway signs people in through its console; tests of other things
    start from enrolled accounts.)"""
    from gateway.runtime.config import Settings
    from gateway.runtime.services import Services
    from gateway.tenancy import create_tenant
    from tests.principals import People, system

    services = Services.open(Settings(data_dir=data_dir, admin_token=ADMIN, **settings))  # type: ignore[arg-type]
    try:
        create_tenant(
            services.store, services.box, tenant, tenant.title(), services.clock(),
            by=system(services, tenant),
        )  # fmt: skip
        people = People(services)
        return Tokens(people.operator(), people.token(tenant, "admin"))
    finally:
        services.close()
