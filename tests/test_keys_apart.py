"""Keys apart from the data: where the master and signing keys go, how an older installation
with keys in the data directory is still found (with a warning), a master key that does not
open the stored secrets stops `sluis serve` with exit 2, and the database files are 0600."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.keys.location import MASTER_KEY_FILE, default_key_dir, find_signing_key
from gateway.keys.master import SecretError
from gateway.keys.signing import SIGNING_KEY_FILE
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.tenancy import create_tenant
from tests.principals import system
from tests.serve_helpers import REPO, serve_env
from tests.support import free_port

TOKEN = "p" * 32


def _tenant(services: Services, tenant: str = "acme") -> None:
    create_tenant(
        services.store, services.box, tenant, "Acme", services.clock(), by=system(services, tenant)
    )


def test_new_keys_go_to_a_directory_beside_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    services = Services.open(Settings(data_dir=data, admin_token=TOKEN))
    services.close()
    keys = tmp_path / "data-keys"
    assert default_key_dir(data) == keys.absolute()
    assert (keys / MASTER_KEY_FILE).is_file() and (keys / SIGNING_KEY_FILE).is_file()
    assert not (data / MASTER_KEY_FILE).exists() and not (data / SIGNING_KEY_FILE).exists()
    assert keys.stat().st_mode & 0o777 == 0o700
    assert find_signing_key(data) == keys.absolute() / SIGNING_KEY_FILE


def test_a_configured_key_dir_and_an_environment_master_key(tmp_path: Path) -> None:
    master = base64.b64encode(bytes(range(32))).decode()
    settings = Settings(
        data_dir=tmp_path / "d", key_dir=tmp_path / "k", master_key=master, admin_token=TOKEN
    )
    services = Services.open(settings)
    _tenant(services)
    services.close()
    assert not (tmp_path / "k" / MASTER_KEY_FILE).exists()  # no file for an env key
    assert (tmp_path / "k" / SIGNING_KEY_FILE).is_file()
    Services.open(settings).close()  # the same key opens what it sealed


def test_keys_of_an_older_installation_are_found_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "old"
    services = Services.open(Settings(data_dir=data, key_dir=data, admin_token=TOKEN))
    _tenant(services)
    services.close()
    caplog.set_level(logging.WARNING, "sluis.keys")
    services = Services.open(Settings(data_dir=data, admin_token=TOKEN))  # default key_dir
    services.close()
    assert not default_key_dir(data).joinpath(MASTER_KEY_FILE).exists()
    warnings = [r.getMessage() for r in caplog.records]
    assert any(MASTER_KEY_FILE in w and "beside the database" in w for w in warnings)
    assert any(SIGNING_KEY_FILE in w for w in warnings)
    assert find_signing_key(data) == data / SIGNING_KEY_FILE


def test_a_master_key_that_does_not_open_the_secrets_is_refused(tmp_path: Path) -> None:
    first = base64.b64encode(bytes(range(32))).decode()
    other = base64.b64encode(bytes(32)).decode()
    services = Services.open(Settings(data_dir=tmp_path / "d", master_key=first, admin_token=TOKEN))
    _tenant(services)
    services.close()
    with pytest.raises(SecretError, match="does not open the stored secrets"):
        Services.open(Settings(data_dir=tmp_path / "d", master_key=other, admin_token=TOKEN))
    port = free_port()
    env = serve_env(tmp_path / "d", port, master_key=other)
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    err = run.stderr.decode()
    assert "does not open the stored secrets" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_database_files_are_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        services = Services.open(Settings(data_dir=tmp_path / "d", admin_token=TOKEN))
        _tenant(services)
        db = tmp_path / "d" / "sluis.db"
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{db}{suffix}")
            if path.exists():
                assert path.stat().st_mode & 0o777 == 0o600, suffix
        services.close()
        os.chmod(db, 0o644)  # an older installation's file
        Services.open(Settings(data_dir=tmp_path / "d", admin_token=TOKEN)).close()
        assert db.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)


def test_sluis_audit_finds_the_signing_key_in_the_key_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Services.open(Settings(data_dir=data, admin_token=TOKEN)).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")}
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "audit", "pubkey", "--data-dir", str(data)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert b"BEGIN PUBLIC KEY" in run.stdout
    moved = tmp_path / "elsewhere"
    (tmp_path / "data-keys").rename(moved)
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "audit", "pubkey", "--data-dir", str(data)],
        cwd=REPO,
        env={**env, "SLUIS_KEY_DIR": str(moved)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
