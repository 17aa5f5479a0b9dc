"""`sluis audit verify --checkpoints DIR`: the checkpoints an auditor kept catch a history
rewritten later, even by someone holding the signing key (who can sign a whole new log, but
cannot make it match the roots the auditor already holds)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cli.main import main
from gateway.keys.signing import load_or_create_signing_key, public_key_pem
from gateway.ledger import merkle
from gateway.ledger.checkpoint import Checkpoint, CheckpointSigner, open_checkpoint, read_unverified
from gateway.ledger.entry import canonical_bytes
from gateway.ledger.log import Ledger
from gateway.ledger.verify import verify_log
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger_helpers import T0, Clock, make_entry

KEY_DIR = "keys"


def _build(data_dir: Path, key: Ed25519PrivateKey, entries: list[Any], batch: int = 3) -> None:
    with SqliteLedgerStore(data_dir / "sluis.db") as store:
        ledger = Ledger(store, "acme", CheckpointSigner(key), clock=Clock())
        for start in range(0, len(entries), batch):
            ledger.append(entries[start : start + batch])


def _notes(data_dir: Path) -> list[tuple[int, int, str]]:
    with SqliteLedgerStore(data_dir / "sluis.db", create=False, readonly=True) as store:
        return [(c.seq, c.size, c.note) for c in store.iter_checkpoints("acme")]


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return load_or_create_signing_key(tmp_path / KEY_DIR)


@pytest.fixture
def honest(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    d = tmp_path / "gateway"
    _build(d, key, [make_entry(i) for i in range(9)])
    return d


@pytest.fixture
def kept(tmp_path: Path, honest: Path) -> Path:
    """What the auditor kept: the first two checkpoints as notes (one with its final
    newline lost by an editor), the third as the JSON the checkpoints route returns."""
    folder = tmp_path / "auditor" / "kept"
    folder.mkdir(parents=True)
    (seq1, _, n1), (seq2, _, n2), (seq3, size3, n3) = _notes(honest)
    (folder / f"acme-{seq1}.txt").write_text(n1)
    (folder / f"acme-{seq2}.txt").write_text(n2.rstrip("\n"))
    page = {"tenant": "acme", "origin": read_unverified(n3).origin, "next_after": seq3,
            "checkpoints": [{"seq": seq3, "size": size3, "time": "x", "note": n3}]}  # fmt: skip
    (folder / "page.json").write_bytes(orjson.dumps(page))
    (folder / ".DS_Store").write_bytes(b"\x00\x01junk")
    return folder


@pytest.fixture
def pub(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "auditor" / "sluis.pub"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(public_key_pem(key.public_key()))
    return path


def _export(data_dir: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code = main(["audit", "export", "--data-dir", str(data_dir), "--output", str(out)])
    capsys.readouterr()
    assert code == 0
    return out


def _verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", "verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_kept_checkpoints_agree_with_the_honest_log(
    honest: Path, kept: Path, pub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--public-key", str(pub), "--checkpoints", str(kept)]
    code, out, err = _verify(capsys, "--data-dir", str(honest), *argv)
    assert code == 0, out + err
    assert "acme: intact: 9 entries" in out
    assert "acme: 3 kept checkpoints agree with the log" in out
    export = _export(honest, tmp_path / "acme.jsonl", capsys)
    code, out, _ = _verify(capsys, "--export", str(export), *argv)
    assert code == 0 and "3 kept checkpoints agree" in out


def test_a_log_rebuilt_with_the_signing_key_is_caught(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    kept: Path,
    pub: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Someone with the database and the signing key rewrites entry 4 and re-signs it all.
    forged = tmp_path / "forged"
    entries = [make_entry(i) for i in range(12)]
    entries[4] = make_entry(4, run_id="run-quietly-changed")
    _build(forged, key, entries)
    export = _export(forged, tmp_path / "forged.jsonl", capsys)
    # On its own the forgery is flawless: every checkpoint it holds verifies.
    code, out, _ = _verify(capsys, "--public-key", str(pub), "--export", str(export))
    assert code == 0 and "acme: intact: 12 entries" in out
    # The auditor's kept checkpoints are not in it, and the first one that covers entry 4
    # (size 6, the second file) names the rewrite.
    code, out, _ = _verify(
        capsys, "--public-key", str(pub), "--export", str(export), "--checkpoints", str(kept)
    )
    assert code == 1
    assert "acme: FAILED at entry 0: kept checkpoint" in out
    assert "acme-2.txt (size 6) disagrees with the log" in out and "(a fork)" in out


def test_a_shortened_log_is_caught_naming_the_file(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    kept: Path,
    pub: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    short = tmp_path / "short"
    _build(short, key, [make_entry(i) for i in range(7)])
    code, out, _ = _verify(capsys, "--data-dir", str(short), "--public-key", str(pub),
                           "--checkpoints", str(kept))  # fmt: skip
    assert code == 1
    assert "page.json vouches for 9 entries but the log has 7" in out and "truncated" in out


def test_kept_checkpoints_of_a_vanished_log_are_a_finding(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    kept: Path,
    pub: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path / "other"
    with SqliteLedgerStore(other / "sluis.db") as store:
        Ledger(store, "beta", CheckpointSigner(key), clock=Clock()).append([make_entry(0, "beta")])
    code, out, _ = _verify(capsys, "--data-dir", str(other), "--public-key", str(pub),
                           "--checkpoints", str(kept))  # fmt: skip
    assert code == 1
    assert "beta: intact: 1 entries" in out
    assert "acme: FAILED at entry 0: kept checkpoint" in out and "log has 0" in out


def test_a_kept_file_that_does_not_verify_is_named(
    honest: Path, kept: Path, pub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(honest), "--public-key", str(pub), "--checkpoints", str(kept)]
    stranger = CheckpointSigner(Ed25519PrivateKey.generate())
    cp = read_unverified(_notes(honest)[0][2])
    (kept / "from-elsewhere.txt").write_text(stranger.sign(cp))
    code, _, err = _verify(capsys, *argv)
    assert code == 2 and "from-elsewhere.txt: not signed by the trusted key" in err
    (kept / "from-elsewhere.txt").unlink()
    note = (kept / "acme-1.txt").read_text()
    (kept / "acme-1.txt").write_text(note.replace("\n9\n", "\n8\n").replace("\n3\n", "\n4\n"))
    code, _, err = _verify(capsys, *argv)
    assert code == 2 and "acme-1.txt: signature by the trusted key does not verify" in err
    (kept / "acme-1.txt").write_text("{not json")
    code, _, err = _verify(capsys, *argv)
    assert code == 2 and "acme-1.txt: neither a checkpoint note nor valid JSON" in err
    (kept / "acme-1.txt").write_text('{"checkpoints": [{"seq": 1}]}')
    code, _, err = _verify(capsys, *argv)
    assert code == 2 and "acme-1.txt: item 0 holds no checkpoint note" in err
    shutil.rmtree(kept)
    kept.mkdir()
    code, _, err = _verify(capsys, *argv)
    assert code == 2 and "holds no checkpoints" in err
    code, _, err = _verify(capsys, "--data-dir", str(honest), "--public-key", str(pub),
                           "--checkpoints", str(kept / "missing"))  # fmt: skip
    assert code == 2 and "not a folder of kept checkpoints" in err


# --------------------------------------------------------------------------- the property

_SIGNER = CheckpointSigner(Ed25519PrivateKey.generate())


def _log(bodies: list[bytes], sizes: list[int]) -> tuple[list[Any], list[Any]]:
    """Entry rows, and checkpoint rows signed at `sizes` (ascending) with `_SIGNER`."""
    frontier = merkle.Frontier()
    rows, cps = [], []
    wanted = sorted(set(sizes))
    if 0 in wanted:
        cps.append((1, 0, _SIGNER.sign(Checkpoint(_ORIGIN, 0, frontier.root(), T0))))
    for i, body in enumerate(bodies):
        leaf = merkle.leaf_hash(body)
        frontier.append(leaf)
        rows.append((i, body, leaf))
        if i + 1 in wanted:
            note = _SIGNER.sign(Checkpoint(_ORIGIN, i + 1, frontier.root(), T0))
            cps.append((len(cps) + 1, i + 1, note))
    return rows, cps


_ORIGIN = _SIGNER.origin_for("acme")


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 40),
    data=st.data(),
)
def test_kept_checkpoints_catch_exactly_the_rewrites_they_cover(size: int, data: Any) -> None:
    bodies = [canonical_bytes(make_entry(i)) for i in range(size)]
    kept_sizes = data.draw(st.lists(st.integers(0, size), min_size=1, max_size=5))
    _, honest_cps = _log(bodies, kept_sizes)
    kept = [(f"kept-{seq}", open_checkpoint(note, _SIGNER.public_key))
            for seq, _, note in honest_cps]  # fmt: skip
    # The forger rewrites one entry, keeps or cuts the tail, and signs the result anew.
    changed = data.draw(st.integers(0, size - 1))
    length = data.draw(st.integers(0, size))
    forged = list(bodies[:length])
    if changed < length:
        forged[changed] = canonical_bytes(make_entry(changed, run_id="run-forged"))
    rows, cps = _log(forged, [length])
    report = verify_log("acme", rows, cps, _SIGNER.public_key, kept=kept)
    rewritten = changed < length and any(s > changed for s in kept_sizes if s <= length)
    truncated = any(s > length for s in kept_sizes)
    assert report.ok == (not rewritten and not truncated), report.reason
    if not report.ok:
        assert report.reason is not None and "kept checkpoint kept-" in report.reason
