"""The alert rules load, and behave as meant on made-up series (`promtool test rules`:
which alert fires when, with which labels and words); the dashboard's queries parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.test_metric_names import dashboard_exprs

PROMETHEUS = Path(__file__).resolve().parents[2] / "docker" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing (Debian: apt-get install prometheus; .ci/run installs it)",
)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    assert PROMTOOL is not None
    run = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_the_rules_load() -> None:
    out = promtool("check", "rules", "alerts.yaml")
    assert "SUCCESS" in out


def test_the_rules_do_what_their_unit_tests_say() -> None:
    out = promtool("test", "rules", "alerts.test.yaml")
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())["groups"]
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yaml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == firing


def test_the_prometheus_config_loads_the_rules() -> None:
    out = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert "SUCCESS" in out


def test_the_dashboard_queries_parse(tmp_path: Path) -> None:
    # Grafana fills in $__rate_interval; promtool parses the rest as recording rules would.
    rules = [
        {"record": f"sluis:dashboard_panel_{n}", "expr": e.replace("$__rate_interval", "5m")}
        for n, e in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool("check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out
