"""Audit entries (who authorised, who changed what) in the auditor's hands: an export of a
log mixing them with transfers verifies offline with only the public key, a doctored audit
entry is caught, the ledger refuses personal data in them, and their bytes round-trip."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.cli.main import main
from gateway.keys.signing import public_key_pem
from gateway.ledger import merkle
from gateway.ledger.audit import (
    Actor,
    AuditAction,
    AuditCounts,
    AuditEntry,
    ChangedProperty,
    audit,
    purpose_problem,
)
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.export import verify_export, write_export
from gateway.ledger.kinds import entry_bytes, parse_entry
from gateway.ledger.log import Ledger, check_inclusion_proof
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger_helpers import ALL_FIELDS, T0, Clock, make_entry

ADMIN = Actor("acc_00112233445566ff", "admin", step_up_at=T0 - timedelta(seconds=30))
DIGEST = "sha256:" + "cd" * 32


def every_action(i: int, action: AuditAction) -> AuditEntry:
    """A realistic entry of `action`, with what that action records."""
    time = T0 + timedelta(minutes=i)
    extra: dict[str, Any] = {}
    if action in ("authorisation.granted", "authorisation.revoked"):
        extra = {
            "target": "ins_0001",
            "mapping_digest": DIGEST,
            "fields": ALL_FIELDS,
            "purpose": "LMS accounts for staff",
            "valid_until": time + timedelta(days=90),
        }
    elif action == "preview.made":
        extra = {
            "counts": AuditCounts(records=20, quarantined=1, dropped_fields=3),
            "dropped": {"BSN": 20, "IBAN": 20, "Geboortedatum": 20},
            "mapping_digest": DIGEST,
            "fields": ALL_FIELDS,
        }
    elif action == "connector.changed":
        extra = {"changed": ["mapping", "credentials"], "mapping_digest": DIGEST}
    elif action == "signin.throttled":
        extra = {"counts": AuditCounts(records=12)}
    elif action == "retention.changed":
        extra = {"changed": ["feed_compaction_days", "leaver_grace_days"]}
    elif action == "retention.applied":
        extra = {"target": "feed-compaction", "counts": AuditCounts(records=120)}
    elif action.startswith(("account.", "token.", "consumer.")):
        extra = {"target": f"obj_{i:04d}"}
    connector = "afas" if action.startswith(("connector.", "authorisation.", "preview.",
                                             "credentials.")) else None  # fmt: skip
    return audit(action, time=time, tenant="acme", actor=ADMIN, connector=connector, **extra)


ACTIONS: tuple[AuditAction, ...] = get_args(AuditAction)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Ed25519PrivateKey]:
    """A database holding acme's log: every audit action, each followed by a transfer,
    in batches of three; and the export and the public key an auditor receives."""
    key = Ed25519PrivateKey.generate()
    db = tmp_path / "gateway" / "sluis.db"
    entries: list[Any] = []
    for i, action in enumerate(ACTIONS):
        entries += [every_action(i, action), make_entry(i)]
    with SqliteLedgerStore(db) as store:
        ledger = Ledger(store, "acme", CheckpointSigner(key), clock=Clock())
        for start in range(0, len(entries), 3):
            ledger.append(entries[start : start + 3])
        export = tmp_path / "auditor" / "acme.jsonl"
        export.parent.mkdir()
        with store.snapshot() as reader, export.open("wb") as out:
            assert write_export(reader, ["acme"], out) == len(entries)
    pub = tmp_path / "auditor" / "sluis.pub"
    pub.write_text(public_key_pem(key.public_key()))
    return db, export, key


def _verify_cli(capsys: pytest.CaptureFixture[str], export: Path, pub: Path) -> tuple[int, str]:
    code = main(["audit", "verify", "--data-dir", str(export.parent / "none"),
                 "--public-key", str(pub), "--export", str(export)])  # fmt: skip
    return code, capsys.readouterr().out


def test_every_action_verifies_offline_from_the_export(
    signed: tuple[Path, Path, Ed25519PrivateKey], capsys: pytest.CaptureFixture[str]
) -> None:
    _, export, key = signed
    report = verify_export(export, "acme", key.public_key())
    assert report.ok, report.reason
    assert report.entries == 2 * len(ACTIONS)
    code, out = _verify_cli(capsys, export, export.parent / "sluis.pub")
    assert code == 0 and out.startswith(f"acme: intact: {2 * len(ACTIONS)} entries")
    lines = [orjson.loads(x) for x in export.read_bytes().splitlines()]
    bodies = [x["entry"] for x in lines if x["type"] == "entry"]
    actions = [parse_entry(b.encode()) for b in bodies[::2]]
    assert [a.action for a in actions] == list(ACTIONS)  # type: ignore[union-attr]
    granted = next(a for a in actions if a.action == "authorisation.granted")  # type: ignore[union-attr]
    assert granted.actor == ADMIN.id and granted.step_up_at == ADMIN.step_up_at


def test_an_audit_entry_proves_its_inclusion(
    signed: tuple[Path, Path, Ed25519PrivateKey],
) -> None:
    db, _, key = signed
    with SqliteLedgerStore(db, create=False, readonly=True) as store:
        proof = Ledger(store, "acme").prove_inclusion(2)
    assert '"action":"authorisation.granted"' in proof.body.decode()
    check_inclusion_proof(proof.to_json(), key.public_key())


def _doctor(export: Path, index: int, change: dict[str, Any], *, rehash: bool) -> None:
    out = []
    for raw in export.read_bytes().splitlines():
        line = orjson.loads(raw)
        if line["type"] == "entry" and line["index"] == index:
            entry = orjson.loads(line["entry"])
            entry.update(change)
            body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
            line["entry"] = body.decode()
            if rehash:
                line["leaf_hash"] = base64.b64encode(merkle.leaf_hash(body)).decode()
        out.append(orjson.dumps(line))
    export.write_bytes(b"\n".join(out) + b"\n")


GRANT_INDEX = 2 * ACTIONS.index("authorisation.granted")


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "acc_ffffffffffffffff"},
        {"role": "operator"},
        {"purpose": "Marketing to all staff"},
        {"fields": {"email": "user.contact.email"}},
        {"step_up_at": None},
        {"valid_until": "2099-01-01T00:00:00.000000Z"},
    ],
    ids=["actor", "role", "purpose", "fields", "step-up", "validity"],
)
@pytest.mark.parametrize("rehash", [False, True], ids=["leaf-kept", "leaf-rehashed"])
def test_a_doctored_audit_entry_is_caught(
    signed: tuple[Path, Path, Ed25519PrivateKey],
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    rehash: bool,
) -> None:
    _, export, key = signed
    _doctor(export, GRANT_INDEX, change, rehash=rehash)
    report = verify_export(export, "acme", key.public_key())
    assert not report.ok
    # Batches of three: the checkpoint covering the grant vouches from its batch's start.
    assert report.first_bad_index is not None
    assert GRANT_INDEX - 2 <= report.first_bad_index <= GRANT_INDEX
    code, out = _verify_cli(capsys, export, export.parent / "sluis.pub")
    assert code == 1 and "acme: FAILED at entry" in out


def test_personal_data_smuggled_into_an_export_is_not_a_valid_entry(
    signed: tuple[Path, Path, Ed25519PrivateKey],
) -> None:
    _, export, key = signed
    _doctor(export, GRANT_INDEX, {"purpose": "for jan.jansen@acme.nl"}, rehash=True)
    report = verify_export(export, "acme", key.public_key())
    assert not report.ok and report.reason is not None
    assert "not a valid entry" in report.reason or "does not match" in report.reason
    assert "jan.jansen" not in report.reason


@pytest.mark.parametrize(
    "purpose",
    ["HR sync for jan.jansen@acme.nl", "employee 123456782", "IBAN NL91 ABNA 0417 1643 00",
     "call 06-12345678", "   ", "x" * 201, "two\nlines"],
)  # fmt: skip
def test_the_ledger_refuses_a_purpose_that_looks_like_personal_data(purpose: str) -> None:
    assert purpose_problem(purpose) is not None
    with pytest.raises(ValidationError) as caught:
        audit("authorisation.granted", time=T0, tenant="acme", actor=ADMIN, purpose=purpose)
    assert purpose.strip() == "" or purpose[:20] not in str(caught.value)


def test_an_actor_is_an_opaque_id_never_a_name_or_email() -> None:
    for who in ("jan.jansen@acme.nl", "Jan Jansen", "acc_123"):
        with pytest.raises(ValidationError):
            audit("connector.created", time=T0, tenant="acme", actor=Actor(who, "admin"))


# --------------------------------------------------------------------------- round trip

_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,20}\Z")
_PURPOSES = st.text(min_size=1, max_size=200).filter(lambda t: purpose_problem(t) is None)
_ACTORS = st.builds(
    Actor,
    st.one_of(st.from_regex(r"\Aacc_[0-9a-f]{16}\Z"), st.sampled_from(["bootstrap", "system"])),
    st.sampled_from(["operator", "admin", "auditor", "viewer", "system"]),
    st.none() | _TIMES,
)
_FIELDS = st.dictionaries(st.sampled_from(sorted(ALL_FIELDS)), st.just("user.name"), max_size=4)


@st.composite
def audit_entries(draw: st.DrawFn) -> AuditEntry:
    return audit(
        draw(st.sampled_from(ACTIONS)),
        time=draw(_TIMES),
        tenant=draw(_IDS),
        actor=draw(_ACTORS),
        connector=draw(st.none() | _IDS),
        target=draw(st.none() | _IDS),
        mapping_digest=draw(st.none() | st.from_regex(r"\Asha256:[0-9a-f]{64}\Z")),
        fields=draw(_FIELDS),
        purpose=draw(st.none() | _PURPOSES),
        valid_until=draw(st.none() | _TIMES),
        counts=draw(st.none() | st.builds(AuditCounts, records=st.integers(0, 10**9),
                    quarantined=st.integers(0, 10**6), dropped_fields=st.integers(0, 99))),
        dropped=draw(st.dictionaries(st.sampled_from(["BSN", "IBAN", "Geboortedatum", "Adres"]),
                                     st.integers(1, 100))),
        changed=draw(st.lists(st.sampled_from(get_args(ChangedProperty)), max_size=6)),
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(audit_entries())
def test_audit_entry_bytes_round_trip(entry: AuditEntry) -> None:
    body = entry_bytes(entry)
    again = parse_entry(body)
    assert isinstance(again, AuditEntry)
    assert again == entry
    assert entry_bytes(again) == body
    assert body.startswith(b'{"action":')


def test_the_cli_exports_and_proves_a_mixed_log(
    signed: tuple[Path, Path, Ed25519PrivateKey],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db, export, key = signed
    data_dir = str(db.parent)
    again = tmp_path / "cli-export.jsonl"
    code = main(["audit", "export", "--data-dir", data_dir, "--output", str(again)])
    capsys.readouterr()
    assert code == 0 and again.read_bytes() == export.read_bytes()
    kinds = {orjson.loads(x)["entry"][:10] for x in again.read_bytes().splitlines()
             if b'"type":"entry"' in x}  # fmt: skip
    assert kinds == {'{"action":', '{"connecto'}
    code = main(["audit", "prove", str(GRANT_INDEX), "--tenant", "acme", "--data-dir", data_dir])
    proof = orjson.loads(capsys.readouterr().out)
    assert code == 0 and '"action":"authorisation.granted"' in proof["entry"]
    check_inclusion_proof(proof, key.public_key())
