"""A real SCIM 2.0 server for the tests: `scim2-server` (the python-scim project's server,
in memory) in its own process on 127.0.0.1, as a platform's SCIM endpoint would be."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tests.support import free_port

TOKEN = "scim-test-token"


@dataclass(frozen=True)
class ScimServer:
    base_url: str
    token: str


@contextmanager
def scim_server(*, token: str = TOKEN, extra: Sequence[str] = ()) -> Iterator[ScimServer]:
    """Start `scim2-server` (with `extra` arguments) and wait until it accepts connections."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scim2_server.testserver.cli", "--port", str(port),
         "--bearer-token", token, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("scim2-server did not start") from None
                time.sleep(0.05)
        yield ScimServer(f"http://127.0.0.1:{port}/v2", token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
