"""`sluis serve` as an operator starts it: settings from the environment, a real port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.serve_helpers import ADMIN, REPO, http_call, provision
from tests.support import free_port


def test_serve_starts_answers_and_stops(tmp_path: Path) -> None:
    port = free_port()
    tokens = provision(tmp_path / "data")
    env = {
        **os.environ,
        "SLUIS_DATA_DIR": str(tmp_path / "data"),
        "SLUIS_PORT": str(port),
        "SLUIS_ADMIN_TOKEN": ADMIN,
        "SLUIS_SCHEDULER": "true",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # generous: a loaded CI machine starts slowly
        while True:
            try:
                if http_call(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("sluis serve did not come up") from None
                time.sleep(0.1)
        assert http_call(f"{base}/readyz")[0] == 200
        # Its source worker started with it (before the site listened), not at first use.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children]
        assert sum(b"gateway.sync.source_worker" in c for c in commands) == 1
        status, _ = http_call(f"{base}/admin/v1/tenants", body=b'{"id": "globex", "name": "G"}')
        assert status == 401
        status, _ = http_call(
            f"{base}/admin/v1/tenants", body=b'{"id": "globex", "name": "G"}', token=ADMIN
        )
        assert status == 401  # an operator has enrolled: the bootstrap token is closed
        status, _ = http_call(
            f"{base}/admin/v1/tenants", body=b'{"id": "globex", "name": "G"}', token=tokens.operator
        )
        assert status == 201
        status, _ = http_call(
            f"{base}/admin/v1/tenants/acme?revoked_by=jan@example.nl", token=tokens.admin
        )
        assert status in (200, 422)
        assert http_call(f"{base}/metrics")[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: jan@example.nl\x00\r\n\r\n")
            assert b" 400 " in raw.recv(64)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert "jan@example.nl" not in err.decode()  # access logs carry no query strings
    assert (tmp_path / "data" / "sluis.db").exists()


def test_serve_reports_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "sluis.toml"
    config.write_text('port = "not a port"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config)],
        cwd=REPO, capture_output=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")},
    )  # fmt: skip
    assert run.returncode == 2
    assert f"{config}: port:".encode() in run.stderr
    assert b"Traceback" not in run.stderr


def test_a_new_data_directory_is_private(tmp_path: Path) -> None:
    from gateway.runtime.config import Settings
    from gateway.runtime.services import Services

    services = Services.open(Settings(data_dir=tmp_path / "fresh", admin_token="p" * 32))
    services.close()
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700


def test_without_a_configured_token_one_is_kept_with_the_keys(tmp_path: Path) -> None:
    from gateway.runtime.config import Settings
    from gateway.runtime.services import ADMIN_TOKEN_FILE, Services

    first = Services.open(Settings(data_dir=tmp_path))
    first.close()
    again = Services.open(Settings(data_dir=tmp_path))
    again.close()
    assert first.admin_token == again.admin_token
    # With the keys, not beside the database.
    token_file = Settings(data_dir=tmp_path).keys / ADMIN_TOKEN_FILE
    assert not (tmp_path / ADMIN_TOKEN_FILE).exists()
    assert token_file.read_text().strip() == first.admin_token
    assert token_file.stat().st_mode & 0o777 == 0o600
