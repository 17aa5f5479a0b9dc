"""`SLUIS_<KEY>_FILE`: secrets arrive as files (Docker and Kubernetes secrets), read once at
start; a file that cannot be used is blamed by the variable and the file, never by a value."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.runtime.config import ConfigError, load_settings

MASTER = base64.b64encode(bytes(range(32))).decode()
TOKEN = "admin-token-from-a-file-0123456789"


def test_secrets_come_from_the_files_the_variables_name(tmp_path: Path) -> None:
    (tmp_path / "master").write_text(MASTER + "\n")
    (tmp_path / "admin").write_text(TOKEN + "\r\n")
    (tmp_path / "metrics").write_text("metrics-token-without-newline")
    (tmp_path / "port").write_text("9090\n")
    settings = load_settings(
        env={
            "SLUIS_MASTER_KEY_FILE": str(tmp_path / "master"),
            "SLUIS_ADMIN_TOKEN_FILE": str(tmp_path / "admin"),
            "SLUIS_METRICS_TOKEN_FILE": str(tmp_path / "metrics"),
            "SLUIS_PORT_FILE": str(tmp_path / "port"),
        }
    )
    assert settings.master_key == MASTER
    assert settings.admin_token == TOKEN
    assert settings.metrics_token == "metrics-token-without-newline"
    assert settings.port == 9090  # any setting, not only secrets


def test_a_file_wins_over_the_configuration_file(tmp_path: Path) -> None:
    config = tmp_path / "sluis.toml"
    config.write_text('admin_token = "from-the-toml-file-0123456789"\n')
    (tmp_path / "admin").write_text(TOKEN)
    settings = load_settings(config, env={"SLUIS_ADMIN_TOKEN_FILE": str(tmp_path / "admin")})
    assert settings.admin_token == TOKEN


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "admin").write_text(TOKEN + "\n\n")
    settings = load_settings(env={"SLUIS_ADMIN_TOKEN_FILE": str(tmp_path / "admin")})
    assert settings.admin_token == TOKEN + "\n"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read"), ("", "is empty"), ("\n", "is empty"), (b"\xff\xfe", "not UTF-8")],
)
def test_an_unusable_file_names_the_variable_and_the_file(
    tmp_path: Path, content: str | bytes | None, reason: str
) -> None:
    path = tmp_path / "master"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SLUIS_MASTER_KEY_FILE": str(path)})
    message = str(caught.value)
    assert message.startswith("SLUIS_MASTER_KEY_FILE: ")
    assert str(path) in message and reason in message


def test_a_bad_value_in_a_file_is_blamed_on_the_file_without_quoting_it(tmp_path: Path) -> None:
    secret = "short-secret"  # under the 16 characters a token needs
    (tmp_path / "metrics").write_text(secret + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SLUIS_METRICS_TOKEN_FILE": str(tmp_path / "metrics")})
    message = str(caught.value)
    assert message.startswith(f"SLUIS_METRICS_TOKEN_FILE ({tmp_path / 'metrics'}): ")
    assert secret not in message


def test_a_value_and_a_file_for_one_setting_are_refused(tmp_path: Path) -> None:
    (tmp_path / "admin").write_text(TOKEN)
    with pytest.raises(ConfigError, match="SLUIS_ADMIN_TOKEN and SLUIS_ADMIN_TOKEN_FILE"):
        load_settings(
            env={"SLUIS_ADMIN_TOKEN": TOKEN, "SLUIS_ADMIN_TOKEN_FILE": str(tmp_path / "admin")}
        )
    # An empty variable is no value: the file is used.
    settings = load_settings(
        env={"SLUIS_ADMIN_TOKEN": "", "SLUIS_ADMIN_TOKEN_FILE": str(tmp_path / "admin")}
    )
    assert settings.admin_token == TOKEN
