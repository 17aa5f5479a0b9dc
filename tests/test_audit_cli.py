"""`sluis audit …` end to end, in-process, on real SQLite files.

The auditor's path is the one that matters: export on our side, then verify the export on
theirs with only the public key and a checkpoint they kept, no database in sight.
"""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli.main import main
from gateway.keys.signing import load_or_create_signing_key, load_public_key
from gateway.ledger import merkle
from gateway.ledger.checkpoint import Checkpoint, CheckpointSigner, open_checkpoint
from gateway.ledger.log import Ledger, check_inclusion_proof
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger_helpers import Clock, make_entry


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir with two tenants: acme (12 entries in 4 batches) and beta (3 entries)."""
    d = tmp_path / "data"
    signer = CheckpointSigner(load_or_create_signing_key(d))
    with SqliteLedgerStore(d / "sluis.db") as store:
        acme = Ledger(store, "acme", signer, clock=Clock())
        for start in range(0, 12, 3):
            acme.append([make_entry(i) for i in range(start, start + 3)])
        Ledger(store, "beta", signer, clock=Clock()).append(
            [make_entry(i, "beta") for i in range(3)]
        )
    return d


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tamper(data_dir: Path, statement: str) -> None:
    conn = sqlite3.connect(data_dir / "sluis.db")
    with conn:
        conn.execute(statement)
    conn.close()


@pytest.fixture
def pubkey_file(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, _ = run(capsys, "audit", "pubkey", "--data-dir", str(data_dir))
    assert code == 0
    assert out.startswith("-----BEGIN PUBLIC KEY-----")
    path = tmp_path / "auditor" / "sluis.pub"
    path.parent.mkdir()
    path.write_text(out)
    return path


def test_verify_intact_ledger(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit", "verify", "--data-dir", str(data_dir))
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("acme: intact: 12 entries, 4 checkpoints, root ")
    assert lines[1].startswith("beta: intact: 3 entries, 1 checkpoints, root ")
    assert "--public-key" in err


def test_verify_uses_sluis_data_dir(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUIS_DATA_DIR", str(data_dir))
    code, out, _ = run(capsys, "audit", "verify", "--tenant", "beta")
    assert code == 0
    assert out.startswith("beta: intact")


def test_verify_tampered_ledger_names_the_entry(
    data_dir: Path, pubkey_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper(data_dir, "DELETE FROM ledger_entries WHERE tenant = 'acme' AND idx = 7")
    code, out, _ = run(
        capsys, "audit", "verify", "--data-dir", str(data_dir), "--public-key", str(pubkey_file)
    )
    assert code == 1
    assert "acme: FAILED at entry 7: entry 7 is missing" in out
    assert "beta: intact" in out


def test_export_then_verify_offline(
    data_dir: Path, pubkey_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "auditor" / "acme.jsonl"
    code, out, _ = run(
        capsys,
        "audit",
        "export",
        "--data-dir",
        str(data_dir),
        "--tenant",
        "acme",
        "--output",
        str(export),
    )
    assert code == 0, out
    lines = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    kinds = [x["type"] for x in lines]
    lists = kinds.count("subjects")
    assert kinds == ["log"] + ["checkpoint"] * 4 + ["subjects"] * lists + ["entry"] * 12
    assert lists >= 1
    assert {x["tenant"] for x in lines} == {"acme"}
    entry = lines[5 + lists]
    assert base64.b64decode(entry["leaf_hash"]) == merkle.leaf_hash(entry["entry"].encode())

    nowhere = tmp_path / "no-data-dir"
    argv = ["audit", "verify", "--data-dir", str(nowhere), "--public-key", str(pubkey_file)]
    code, out, err = run(capsys, *argv, "--export", str(export))
    assert code == 0, out + err
    assert out.startswith("acme: intact: 12 entries, 4 checkpoints")

    # The auditor notices a doctored export.
    doctored = export.read_bytes().replace(b"run-4", b"run-5", 1)
    export.write_bytes(doctored)
    code, out, _ = run(capsys, *argv, "--export", str(export))
    assert code == 1
    assert "acme: FAILED at entry 4" in out


def test_export_to_stdout_holds_every_tenant(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "export", "--data-dir", str(data_dir))
    assert code == 0
    logs = [orjson.loads(x) for x in out.splitlines() if '"type":"log"' in x]
    assert [(x["tenant"], x["size"]) for x in logs] == [("acme", 12), ("beta", 3)]


def test_prove_output_verifies_with_merkle(
    data_dir: Path, pubkey_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = load_public_key(pubkey_file)
    code, out, _ = run(
        capsys, "audit", "prove", "5", "--tenant", "acme", "--data-dir", str(data_dir)
    )
    assert code == 0
    proof = orjson.loads(out)
    assert (proof["leaf_index"], proof["tree_size"]) == (5, 12)
    leaf = merkle.leaf_hash(proof["entry"].encode())
    assert base64.b64encode(leaf).decode() == proof["leaf_hash"]
    path = [base64.b64decode(p) for p in proof["audit_path"]]
    root = base64.b64decode(proof["root"])
    merkle.verify_inclusion(leaf, 5, 12, path, root)
    cp = open_checkpoint(proof["checkpoint"], key)
    assert (cp.origin, cp.size, cp.root) == (signer_of(data_dir).origin_for("acme"), 12, root)

    # At a size with no checkpoint of its own, the proof links to the latest one.
    argv = ["audit", "prove", "1", "--tenant", "acme", "--size", "5"]
    code, out, _ = run(capsys, *argv, "--data-dir", str(data_dir))
    assert code == 0
    proof = orjson.loads(out)
    assert proof["consistency_path"]
    assert check_inclusion_proof(proof, key).size == 12
    proof["entry"] = proof["entry"].replace("run-1", "run-2")
    with pytest.raises(merkle.ProofError):
        check_inclusion_proof(proof, key)


def test_kept_checkpoint_catches_a_truncated_log(
    data_dir: Path, pubkey_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SqliteLedgerStore(data_dir / "sluis.db") as store:
        kept = Ledger(store, "acme").checkpoint()
    kept_file = tmp_path / "auditor" / "acme.checkpoint"
    kept_file.write_text(kept)
    for statement in (
        "DELETE FROM ledger_entries WHERE tenant = 'acme' AND idx >= 9",
        "DELETE FROM ledger_checkpoints WHERE tenant = 'acme' AND size > 9",
        "DELETE FROM ledger_heads WHERE tenant = 'acme'",
    ):
        tamper(data_dir, statement)
    base = ["audit", "verify", "--data-dir", str(data_dir), "--public-key", str(pubkey_file)]
    code, out, _ = run(capsys, *base, "--tenant", "acme")
    assert code == 0, out  # on its own the shortened log looks complete
    code, out, _ = run(capsys, *base, "--checkpoint", str(kept_file))
    assert code == 1
    assert "acme: FAILED at entry 9" in out
    assert "truncated" in out
    assert "beta" not in out


def test_kept_checkpoint_catches_a_vanished_tenant(
    data_dir: Path, pubkey_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SqliteLedgerStore(data_dir / "sluis.db") as store:
        kept = Ledger(store, "beta").checkpoint()
    kept_file = tmp_path / "beta.checkpoint"
    kept_file.write_text(kept)
    for table in ("ledger_entries", "ledger_checkpoints", "ledger_heads", "ledger_nodes"):
        tamper(data_dir, f"DELETE FROM {table} WHERE tenant = 'beta'")
    code, out, _ = run(
        capsys,
        "audit",
        "verify",
        "--data-dir",
        str(data_dir),
        "--public-key",
        str(pubkey_file),
        "--checkpoint",
        str(kept_file),
    )
    assert code == 1
    assert "beta: FAILED at entry 0" in out


def signer_of(data_dir: Path) -> CheckpointSigner:
    return CheckpointSigner(load_or_create_signing_key(data_dir))


def test_pubkey_formats(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "pubkey", "--data-dir", str(data_dir), "--format", "vkey")
    assert code == 0
    signer = signer_of(data_dir)
    lines = out.strip().splitlines()
    assert [line.split("+")[0] for line in lines] == [
        signer.origin_for("acme"),
        signer.origin_for("beta"),
    ]
    _, key_id, blob = lines[0].split("+", 2)
    assert len(key_id) == 8
    assert base64.b64decode(blob)[0] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "verify"], "no ledger database at"),
        (["audit", "export"], "no ledger database at"),
        (["audit", "prove", "0", "--tenant", "acme"], "no ledger database at"),
        (["audit", "pubkey"], "no signing key at"),
    ],
)
def test_missing_database_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, "--data-dir", str(tmp_path / "missing"))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "verify", "--tenant", "nobody"], "unknown tenant 'nobody'"),
        (["audit", "export", "--tenant", "nobody"], "unknown tenant 'nobody'"),
        (["audit", "prove", "0", "--tenant", "nobody"], "unknown tenant 'nobody'"),
        (["audit", "prove", "12", "--tenant", "acme"], "entry index 12 is outside"),
        (["audit", "prove", "0", "--tenant", "acme", "--size", "99"], "tree size 99"),
        (["audit", "verify", "--public-key", "/nonexistent.pem"], "cannot read the public key"),
        (["audit", "verify", "--checkpoint", "/nonexistent.cp"], "cannot read the checkpoint"),
        (["audit", "verify", "--export", "/nonexistent.jsonl"], "cannot read the export"),
    ],
)
def test_bad_requests_are_one_line_errors(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv, "--data-dir", str(data_dir))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_checkpoint_from_another_key_is_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = CheckpointSigner(Ed25519PrivateKey.generate())
    forged = other.sign(Checkpoint("sluis/acme", 12, b"\x01" * 32, datetime.now(UTC)))
    path = tmp_path / "forged.checkpoint"
    path.write_text(forged)
    code, _, err = run(
        capsys, "audit", "verify", "--data-dir", str(data_dir), "--checkpoint", str(path)
    )
    assert code == 2
    assert "not signed by the trusted key" in err


def test_verify_resumes_from_the_auditors_own_record(
    data_dir: Path, pubkey_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export, state = tmp_path / "acme.jsonl", tmp_path / "auditor" / "state.json"
    base = ["--public-key", str(pubkey_file)]
    assert run(capsys, "audit", "export", "--data-dir", str(data_dir), "-o", str(export))[0] == 0
    code, out, _ = run(capsys, "audit", "verify", "--export", str(export), *base,
                       "--resume", str(state))  # fmt: skip
    assert code == 0 and "acme: intact: 12 entries," in out
    kept = orjson.loads(state.read_bytes())
    assert kept["format"] == "sluis-verify-state/1"
    assert {t: v["size"] for t, v in kept["logs"].items()} == {"acme": 12, "beta": 3}
    # The gateway goes on; the next export is verified from where the last check ended.
    signer = CheckpointSigner(load_or_create_signing_key(data_dir))
    with SqliteLedgerStore(data_dir / "sluis.db") as store:
        Ledger(store, "acme", signer).append([make_entry(i) for i in range(12, 15)])
    assert run(capsys, "audit", "export", "--data-dir", str(data_dir), "-o", str(export))[0] == 0
    code, out, _ = run(capsys, "audit", "verify", "--export", str(export), *base,
                       "--resume", str(state))  # fmt: skip
    assert code == 0, out
    assert "acme: intact: 15 entries (entries 12 on read; the rest as verified before)" in out
    assert orjson.loads(state.read_bytes())["logs"]["acme"]["size"] == 15
    # The same record works against the database, read from the data dir.
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", str(data_dir), *base,
                       "--resume", str(state))  # fmt: skip
    assert code == 0 and "acme: intact: 15 entries (entries 15 on read" in out
    # A record the auditor did not write (or that broke) is refused, not trusted.
    state.write_text('{"format": "sluis-verify-state/1", "logs": {"acme": {"size": "x"}}}')
    code, _, err = run(capsys, "audit", "verify", "--export", str(export), *base,
                       "--resume", str(state))  # fmt: skip
    assert code == 2 and "state.json: the entry for 'acme' is malformed" in err
