"""RFC 9162 proof verification against the transparency-dev vectors.

The vectors live outside the repository (../shared/vectors/rfc9162, Apache-2.0, with their
LICENSE); they are read in place, never copied. Every file says whether a correct verifier
must reject it (`wantErr`), which pins the policy edges as well as the happy paths.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger import merkle

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "rfc9162"
EXPECTED_INCLUSION = 98
EXPECTED_CONSISTENCY = 98


def _files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []


def _id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


needs_vectors = pytest.mark.skipif(
    not VECTORS.is_dir(), reason=f"RFC 9162 vectors not found at {VECTORS}"
)


@needs_vectors
def test_all_vectors_present() -> None:
    assert len(_files("inclusion")) == EXPECTED_INCLUSION
    assert len(_files("consistency")) == EXPECTED_CONSISTENCY


@needs_vectors
@pytest.mark.parametrize("path", _files("inclusion"), ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    proof = [_b64(p) for p in case["proof"] or []]

    def check() -> None:
        merkle.verify_inclusion(
            _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"])
        )

    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


@needs_vectors
@pytest.mark.parametrize("path", _files("consistency"), ids=_id)
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    proof = [_b64(p) for p in case["proof"] or []]

    def check() -> None:
        merkle.verify_consistency(
            case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"])
        )

    if case["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()
