"""`sluis demo` runs, and nothing sensitive from either source ends up anywhere.

The demo is the whole product on one machine: two emulators, a gateway, the admin flow,
syncs, the feed and the ledger. So it is also the widest leak scan there is: its report,
every log record (at DEBUG), the metrics, the ledger export and the raw bytes of the data
directory (database, WAL, keys) are searched for the sources' BSNs, IBANs, private emails,
phone numbers, addresses and the like.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from connectors.afas.emulator import ENVIRONMENT
from connectors.afas.emulator import make_app as afas_app
from connectors.afas.synthetic import SENSITIVE_FIELDS
from connectors.entra.emulator import DIRECTORY
from connectors.entra.emulator import make_app as entra_app
from connectors.entra.synthetic import SENSITIVE_PROPERTIES as ENTRA_SENSITIVE
from connectors.hubspot.emulator import STATE
from connectors.hubspot.emulator import make_app as hubspot_app
from connectors.hubspot.synthetic import SENSITIVE_PROPERTIES
from connectors.loket.emulator import ACCOUNT as LOKET_ACCOUNT
from connectors.loket.emulator import make_app as loket_app
from connectors.nmbrs.emulator import ACCOUNT as NMBRS
from connectors.nmbrs.emulator import make_app as nmbrs_app
from connectors.personio.emulator import ACCOUNT
from connectors.personio.emulator import make_app as personio_app
from connectors.personio.synthetic import SENSITIVE_ATTRIBUTES as PERSONIO_SENSITIVE
from connectors.registry import pull_types
from gateway.cli import demo
from gateway.cli.main import main as sluis
from gateway.ledger.export import write_export
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.contract.harness_loket import sensitive_values as loket_sensitive

REPO = Path(__file__).resolve().parents[1]
PEOPLE = 80


def _sensitive_values() -> set[str]:
    """What the demo's emulators hold and must never pass (same people, same seed)."""
    values: set[str] = set()
    for person in afas_app(people=PEOPLE, seed=2026)[ENVIRONMENT].people:
        values |= {str(person[k]) for k in SENSITIVE_FIELDS if person.get(k)}
        # The emergency contact's phone; their name is drawn from the same lists as the
        # employees' names, so it can rightly appear as someone else's name.
        values.add(str((person.get("Noodcontact") or {}).get("telefoon") or ""))
    for contact in hubspot_app(people=PEOPLE, seed=2026)[STATE].contacts:
        props = contact["properties"]
        values |= {str(props[k]) for k in SENSITIVE_PROPERTIES if props.get(k)}
    # Short values ("M", "NL", "griep") could match by accident; the scan is for data.
    return {v for v in values if len(v) >= 6}


def _leavers(people: int) -> dict[str, int]:
    """Who has left in the demo's sources, counted from the emulators' own data."""
    today = date.today().isoformat()
    afas = afas_app(people=people, seed=2026)[ENVIRONMENT].people
    hubspot = hubspot_app(people=people, seed=2026)[STATE].contacts
    return {
        "afas": sum(1 for p in afas if str(p.get("Datum_uit_dienst") or "9999")[:10] < today),
        "hubspot": sum(1 for c in hubspot if c.get("archived")),
    }


async def test_demo_explains_missing_events_and_shows_the_audit_root(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    runner = demo.run_demo(employees=PEOPLE, data_dir=data_dir)
    result = await anext(runner)
    try:
        report = demo.format_report(result)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert sluis(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    finally:
        await runner.aclose()
    expected = _leavers(PEOPLE)
    for name, info in result.connectors.items():
        counts = info["counts"]
        assert 0 < info["leavers"] == expected[name]
        assert counts["upserted"] == counts["passed"] - expected[name]
        assert (
            f"{counts['upserted']} events for {counts['passed']} people: the other"
            f" {expected[name]} are leavers"
        ) in report
    audit_root = re.search(r"root (\S+)$", out.getvalue().strip())
    assert audit_root is not None
    assert f"root {audit_root.group(1)} " in report
    assert result.ledger_root == audit_root.group(1)


async def test_demo_leaks_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "demo"
    runner = demo.run_demo(employees=PEOPLE, data_dir=data_dir)
    result = await anext(runner)
    try:
        report = demo.format_report(result)
        assert result.verified, result.verify_reason
        assert set(result.connectors) == {"afas", "hubspot"}
        for info in result.connectors.values():
            assert info["counts"]["fetched"] == PEOPLE
            assert info["dropped"]
        assert "BSN" in result.connectors["afas"]["dropped"]
        assert result.events and all(
            set(e["data"]) == {"first_name", "last_name", "email", "job_title"}
            for e in result.events
        )
        export = tmp_path / "ledger.jsonl"
        with (
            SqliteLedgerStore(data_dir / "sluis.db", create=False, readonly=True) as store,
            store.snapshot() as reader,
            export.open("wb") as out,
        ):
            write_export(reader, reader.tenants(), out)
    finally:
        await runner.aclose()
    sensitive = _sensitive_values()
    assert len(sensitive) > 200
    texts = {
        "report": report,
        "logs": caplog.text,
        "ledger export": export.read_text(),
    }
    _assert_nowhere(sensitive, texts, data_dir)


def test_demo_command_runs() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--employees", "40"],
        capture_output=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    out = run.stdout.decode()
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert "verification: intact" in out
    assert "dropped at the door" in out and "BSN" in out
    assert "/feed/v1/tenants/demo/events" in out
    assert "Traceback" not in run.stderr.decode()


async def test_demo_with_personio_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--sources personio`: the Personio emulator through the whole gateway, and none of
    its employees' salaries, BSNs, IBANs, birthdays or private details anywhere after."""
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "demo"
    runner = demo.run_demo(employees=PEOPLE, data_dir=data_dir, sources=("personio",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
        assert result.verified, result.verify_reason
        assert set(result.connectors) == {"personio"}
        info = result.connectors["personio"]
        assert info["counts"]["fetched"] == PEOPLE
        expected = sum(
            1 for p in personio_app(people=PEOPLE, seed=2026)[ACCOUNT].people
            if p.values["status"] == "inactive"
        )  # fmt: skip
        assert info["leavers"] == expected
        # Asked only for the mapped attributes: nothing else was even dropped.
        assert not any("salary" in name or "dynamic_" in name for name in info["dropped"])
    finally:
        await runner.aclose()
    sensitive = {
        str(v)
        for p in personio_app(people=PEOPLE, seed=2026)[ACCOUNT].people
        for k in PERSONIO_SENSITIVE
        if isinstance(v := p.values.get(k), str | float) and len(str(v)) >= 6
    }
    assert len(sensitive) > 200
    _assert_nowhere(sensitive, {"report": report, "logs": caplog.text}, data_dir)


async def test_demo_with_loket_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--sources loket`: the Loket emulator (refresh tokens rotating) through the whole
    gateway, and none of its employees' BSNs, IBANs, salaries, birth dates, addresses,
    passports or private contact details anywhere after."""
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "demo"
    runner = demo.run_demo(employees=PEOPLE, data_dir=data_dir, sources=("loket",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
        assert result.verified, result.verify_reason
        info = result.connectors["loket"]
        assert info["counts"]["fetched"] == PEOPLE
        app = loket_app(people=PEOPLE, seed=2026)
        expected = sum(
            1 for p in app[LOKET_ACCOUNT].people if p.current().end is not None
        )  # fmt: skip
        assert info["leavers"] == expected
        assert "contactInformation.emailAddress" in info["dropped"]
    finally:
        await runner.aclose()
    sensitive = {v for v in loket_sensitive(app) if len(v) >= 6}
    assert len(sensitive) > 200
    _assert_nowhere(sensitive, {"report": report, "logs": caplog.text}, data_dir)


async def test_demo_with_nmbrs_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`--sources nmbrs`: the Nmbrs REST API (a refresh token the identity server rotates)
    through the whole gateway; no BSN, birth date or private detail anywhere after."""
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "demo"
    runner = demo.run_demo(employees=PEOPLE, data_dir=data_dir, sources=("nmbrs",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
        assert result.verified, result.verify_reason
        info = result.connectors["nmbrs"]
        assert info["counts"]["fetched"] == PEOPLE
        people = nmbrs_app(people=PEOPLE, seed=2026)[NMBRS].people
        assert info["leavers"] == sum(1 for p in people if p.employments[-1].end is not None)
    finally:
        await runner.aclose()
    sensitive = {v for p in people for v in p.sensitive_values() if len(v) >= 6}
    assert len(sensitive) > 200
    _assert_nowhere(sensitive, {"report": report, "logs": caplog.text}, data_dir)


def test_demo_refuses_an_unknown_source() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--sources", "personio,workday"],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2 and "workday" in run.stderr.decode()


async def test_demo_with_salesforce_drops_its_sensitive_fields(tmp_path: Path) -> None:
    runner = demo.run_demo(employees=PEOPLE, data_dir=tmp_path / "demo", sources=("salesforce",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
    finally:
        await runner.aclose()
    assert result.verified, result.verify_reason
    assert set(result.connectors) == {"salesforce"}
    info = result.connectors["salesforce"]
    assert info["counts"]["fetched"] == info["counts"]["upserted"] == PEOPLE
    # Minimised at the source: the SOQL never asked for them, so none arrived to drop.
    assert info["dropped"] == {"attributes", "SystemModstamp"}
    assert "salesforce" in report and "BSN__c" not in report


async def test_demo_with_dynamics_asks_for_no_sensitive_column(tmp_path: Path) -> None:
    """`--sources dynamics`: the Dataverse emulator and its Entra ID token endpoint (the
    connector's `authority`, set by the demo) through the whole gateway."""
    runner = demo.run_demo(employees=PEOPLE, data_dir=tmp_path / "demo", sources=("dynamics",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
    finally:
        await runner.aclose()
    assert result.verified, result.verify_reason
    assert set(result.connectors) == {"dynamics"}
    info = result.connectors["dynamics"]
    assert info["counts"]["fetched"] == PEOPLE
    # Minimised at the source: $select never asked for them, so only the etag is dropped.
    assert info["dropped"] == {"<unnamed field>"}
    assert "dynamics" in report and "governmentid" not in report


async def test_demo_with_entra_asks_graph_only_for_the_mapped_properties(tmp_path: Path) -> None:
    """`--sources entra`: Graph's delta query through the whole gateway; the disabled
    accounts are leavers and none of the directory's phones, addresses, employee ids or
    extension attributes (BSN, IBAN) is anywhere after."""
    data_dir = tmp_path / "demo"
    runner = demo.run_demo(employees=PEOPLE, data_dir=data_dir, sources=("entra",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
    finally:
        await runner.aclose()
    assert result.verified, result.verify_reason
    info = result.connectors["entra"]
    users = [u.values for u in entra_app(people=PEOPLE, seed=2026)[DIRECTORY].users.values()]
    assert info["counts"]["fetched"] == PEOPLE
    assert info["leavers"] == sum(1 for u in users if not u["accountEnabled"])
    # Minimised at the source: $select asked for nothing else, so nothing was dropped.
    assert not info["dropped"]
    sensitive = {
        str(leaf)
        for u in users
        for name in ENTRA_SENSITIVE
        for leaf in _leaves(u.get(name))
        if isinstance(leaf, str) and len(leaf) >= 6
    }
    assert len(sensitive) > 200
    _assert_nowhere(sensitive, {"report": report}, data_dir)


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_demo_sources_are_checked() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        sluis(["demo", "--sources", "salesforce,workday"])
    assert exited.value.code == 2 and "workday" in err.getvalue()
    assert ", ".join(pull_types()) in err.getvalue()


def _assert_nowhere(sensitive: set[str], texts: dict[str, str], data_dir: Path) -> None:
    """None of the source's sensitive values in these texts or any file of `data_dir`."""
    for name, text in texts.items():
        leaks = sorted(v for v in sensitive if v in text)
        assert leaks == [], f"{name} holds source values: {leaks[:3]}"
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            blob = path.read_bytes()
            leaks = sorted(v for v in sensitive if v.encode() in blob)
            assert leaks == [], f"{path.name} holds source values: {leaks[:3]}"
