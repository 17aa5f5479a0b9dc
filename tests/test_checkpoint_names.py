"""Checkpoint origins and key names as C2SP recommends, verifier keys (vkeys) as signed-note
specifies them, and logs begun under the old names that keep verifying and growing.

The vkey tests hold our encoder and parser against the spec's own example (a vkey and the
note it verifies) and recompute key ids from the spec's rule, SHA-256(name || 0x0A || 0x01
|| key)[:4], without our code.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.cli.main import main
from gateway.keys.signing import load_or_create_signing_key
from gateway.ledger.checkpoint import (
    LOG_NAME_PATTERN,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    open_checkpoint,
    open_note,
    parse_verifier_key,
    read_unverified,
    verifier_key,
)
from gateway.ledger.log import Ledger
from gateway.runtime.config import ConfigError, load_settings
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger_helpers import Clock, make_entry

# From c2sp.org/signed-note, "Verifier keys: Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3"
    "mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def spec_key_id(name: str, raw_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + raw_key).digest()[:4]


def test_the_spec_example_vkey_round_trips_and_verifies_the_spec_note() -> None:
    name, key = parse_verifier_key(SPEC_VKEY)
    assert name == "example.com/foo"
    assert verifier_key(name, key) == SPEC_VKEY
    assert spec_key_id(name, key.public_bytes_raw()).hex() == "530d903a"
    assert open_note(SPEC_NOTE, key, name=name) == "This is an example message.\n"
    with pytest.raises(CheckpointError):
        open_note(SPEC_NOTE.replace("example message", "exemplary message"), key)


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # id
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # name
        "example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",  # alg
        "example.com/foo+530d903a",
        "ex ample+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+zzzzzzzz+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        parse_verifier_key(vkey)


def test_a_new_log_is_named_by_a_schema_less_url_and_signed_under_it(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with SqliteLedgerStore(tmp_path / "sluis.db") as store:
        ledger = Ledger(store, "acme", CheckpointSigner(key), clock=Clock())
        ledger.append([make_entry(0)])
        note = ledger.checkpoint()
    origin = note.split("\n", 1)[0]
    assert re.fullmatch(r"sluis\.invalid/[0-9a-f]{16}/acme", origin)
    assert "://" not in origin and "+" not in origin and " " not in origin
    assert note.endswith("\n") and f"\n\u2014 {origin} " in note  # key name == origin
    raw = key.public_key().public_bytes_raw()
    blob = base64.b64decode(note.rsplit(" ", 1)[1])
    assert blob[:4] == spec_key_id(origin, raw)
    # The default name follows the key, not the host: the same key names the same logs.
    assert CheckpointSigner(key).origin_for("acme") == origin
    assert CheckpointSigner(Ed25519PrivateKey.generate()).origin_for("acme") != origin


def test_the_ledger_name_setting(tmp_path: Path) -> None:
    env = {"SLUIS_LEDGER_NAME": "gw.example.com/sluis"}
    settings = load_settings(None, env)
    signer = CheckpointSigner(Ed25519PrivateKey.generate(), settings.ledger_name)
    assert signer.origin_for("acme") == "gw.example.com/sluis/acme"
    for bad in ("https://gw.example.com/sluis", "gw example", "a+b/c", "gw.example.com/"):
        assert not re.fullmatch(LOG_NAME_PATTERN, bad)
        with pytest.raises(ConfigError, match="SLUIS_LEDGER_NAME"):
            load_settings(None, {"SLUIS_LEDGER_NAME": bad})


def _legacy_note(key: Ed25519PrivateKey, note: str) -> str:
    """The note the gateway wrote before origins were configurable, for this checkpoint."""
    body = read_unverified(note).body()
    assert body.startswith("sluis/")
    sig = key.sign(body.encode())
    kid = spec_key_id("sluis-ledger", key.public_key().public_bytes_raw())
    return f"{body}\n\u2014 sluis-ledger {base64.b64encode(kid + sig).decode()}\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_old_logs_keep_their_names_verify_and_grow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    key = load_or_create_signing_key(data)
    with SqliteLedgerStore(data / "sluis.db") as store:
        # A log as the gateway wrote it before: origin sluis/acme, key name sluis-ledger.
        old = Ledger(store, "acme", CheckpointSigner(key, "sluis"), clock=Clock())
        for i in range(3):
            old.append([make_entry(i)])
        notes = [c.note for c in store.iter_checkpoints("acme")]
        assert notes == [_legacy_note(key, n) for n in notes]  # Ed25519 is deterministic
        kept = tmp_path / "kept.checkpoint"
        kept.write_text(notes[-1])

        # The gateway now has a configured name: the old log keeps its own, a new one
        # gets the new kind.
        signer = CheckpointSigner(key, "gw.example.com/sluis")
        grown = Ledger(store, "acme", signer, clock=Clock())
        grown.append([make_entry(3)])
        assert read_unverified(grown.checkpoint()).origin == "sluis/acme"
        assert grown.checkpoint() == _legacy_note(key, grown.checkpoint())
        Ledger(store, "beta", signer, clock=Clock()).append([make_entry(0, "beta")])

    code, out, _ = run(
        capsys, "audit", "verify", "--data-dir", str(data), "--checkpoint", str(kept)
    )
    assert code == 0, out
    assert "acme: intact: 4 entries" in out
    code, out, _ = run(capsys, "audit", "verify", "--data-dir", str(data))
    assert code == 0 and "beta: intact" in out

    code, out, _ = run(capsys, "audit", "pubkey", "--data-dir", str(data), "--format", "vkey")
    assert code == 0
    vkeys = out.strip().splitlines()
    assert [v.split("+")[0] for v in vkeys] == ["sluis-ledger", "gw.example.com/sluis/beta"]
    raw = key.public_key().public_bytes_raw()
    with SqliteLedgerStore(data / "sluis.db", create=False, readonly=True) as store:
        for vkey, tenant in zip(vkeys, ("acme", "beta"), strict=True):
            name, hex_id, blob = vkey.split("+", 2)
            assert bytes.fromhex(hex_id) == spec_key_id(name, raw)
            assert base64.b64decode(blob) == b"\x01" + raw
            # What a Go verifier does: the vkey's name and id must match the signature line.
            latest = store.latest_checkpoint(tenant)
            assert latest is not None
            parsed_name, parsed_key = parse_verifier_key(vkey)
            assert open_checkpoint(latest.note, parsed_key, name=parsed_name).size == 1 + 3 * (
                tenant == "acme"
            )

    code, out, _ = run(
        capsys, "audit", "pubkey", "--data-dir", str(data), "--format", "vkey", "--tenant", "beta"
    )
    assert code == 0 and out == vkeys[1] + "\n"
    vkey_file = tmp_path / "beta.vkey"
    vkey_file.write_text(out)
    code, out, _ = run(
        capsys, "audit", "verify", "--data-dir", str(data), "--public-key", str(vkey_file)
    )
    assert code == 0 and "beta: intact" in out and "acme: intact" in out


def test_a_log_cannot_change_its_origin(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    with SqliteLedgerStore(tmp_path / "sluis.db") as store:
        Ledger(store, "acme", CheckpointSigner(key, "one.example/sluis"), clock=Clock()).append(
            [make_entry(0)]
        )
        other = Ledger(store, "acme", CheckpointSigner(key, "two.example/sluis"), clock=Clock())
        other.append([make_entry(1)])
        origins = {read_unverified(c.note).origin for c in store.iter_checkpoints("acme")}
        assert origins == {"one.example/sluis/acme"}
        # A checkpoint under another origin slipped into the log is caught.
        stray = CheckpointSigner(key, "two.example/sluis").sign(
            Checkpoint("two.example/sluis/acme", 2, other.root(), Clock()())
        )
        store.add_checkpoint("acme", 2, stray)
        report = other.verify(key.public_key())
    assert not report.ok and "belongs to another log" in (report.reason or "")
