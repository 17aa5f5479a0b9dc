"""What an operator sees from a real `sluis serve`: a "listening on" line, JSON logs and a
level, one line for a failed sync (ids and the kind of failure, nothing else), and a bad
environment variable blamed by its own name."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.serve_helpers import REPO, provision, running_gateway, serve_env
from tests.support import free_port

CREDENTIAL = "credential-never-in-logs-0123"


def test_json_logs_say_where_it_listens_and_which_sync_failed(tmp_path: Path) -> None:
    tokens = provision(tmp_path / "data")
    with running_gateway(tmp_path, log_format="json", allow_private_sources="true") as gw:
        admin = tokens.admin
        base = "/admin/v1/tenants/acme/connectors"
        connector = {
            "id": "hr", "type": "afas", "mapping": "afas",
            # The gateway itself, where no AFAS lives: the first page fails at once.
            "base_url": f"{gw.base}/not-afas", "credentials": {"token": CREDENTIAL},
        }  # fmt: skip
        assert gw.call(base, body=orjson.dumps(connector), token=admin)[0] == 201
        grant = {"purpose": "accounts"}
        assert gw.call(f"{base}/hr/instructions", body=orjson.dumps(grant), token=admin)[0] == 201
        status, body = gw.call(f"{base}/hr/syncs", body=b"{}", token=admin)
        assert status == 202
        run = orjson.loads(body)
        for _ in range(100):
            if run["status"] != "running":
                break
            time.sleep(0.1)
            run = orjson.loads(gw.call(f"{base}/hr/syncs/{run['id']}", token=admin)[1])
        assert run["status"] == "failed"
    lines = [json.loads(line) for line in gw.log().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line["message"] == f"listening on http://127.0.0.1:{gw.port}" for line in lines)
    (failed,) = [line for line in lines if line.get("run_id") == run["id"]]
    assert failed["level"] == "WARNING"
    assert failed["tenant"] == "acme" and failed["connector"] == "hr"
    assert failed["error_kind"] and failed["error_kind"] != "unknown"
    text = gw.log()
    assert CREDENTIAL not in text and "dpo@acme.example" not in text
    assert "Traceback" not in text


def test_log_level_warning_keeps_info_out(tmp_path: Path) -> None:
    with running_gateway(tmp_path, log_level="warning") as gw:
        assert gw.call("/healthz")[0] == 200
    assert "INFO" not in gw.log()


def _serve_once(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "serve", *args],
        cwd=REPO, env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_bad_environment_variable_is_named_not_the_file(tmp_path: Path) -> None:
    config = tmp_path / "sluis.toml"
    config.write_text("port = 8080\n")
    env = serve_env(tmp_path / "d", free_port())
    for name, value in (("SLUIS_PORT", "eighty"), ("SLUIS_LOG_FORMAT", "xml"),
                        ("SLUIS_HEADER_TIMEOUT", "-1")):  # fmt: skip
        run = _serve_once({**env, name: value}, "--config", str(config))
        assert run.returncode == 2
        err = run.stderr.decode()
        assert err.startswith(f"sluis serve: {name}: "), err
        assert str(config) not in err
    (tmp_path / "bad.toml").write_text('log_level = "loud"\n')
    run = _serve_once(env, "--config", str(tmp_path / "bad.toml"))
    assert run.returncode == 2
    assert f"{tmp_path / 'bad.toml'}: log_level:" in run.stderr.decode()
