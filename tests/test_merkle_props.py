"""Property tests for the Merkle tree: generated proofs verify, and nothing else does.

Roots are compared with the RFC's recursive definition written out naively here, so the
fast paths (frontier, range hashes, stored-subtree accessors) cannot agree with themselves
on a wrong answer.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger import merkle


def naive_root(entries: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1, over raw entries."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(entries[:k]) + naive_root(entries[k:])).digest()


def entries_of(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


def flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=300))
    return n, draw(st.integers(min_value=0, max_value=n - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=300))
    return draw(st.integers(min_value=1, max_value=n)), n


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=260))
def test_roots_match_naive_reference(n: int) -> None:
    entries = entries_of(n)
    leaves = [merkle.leaf_hash(e) for e in entries]
    want = naive_root(entries)
    frontier = merkle.Frontier()
    frontier.extend(leaves)
    assert frontier.root() == want
    assert merkle.reference_root(leaves) == want
    assert (merkle.MemoryTree(leaves).root() if n else merkle.EMPTY_ROOT) == want


@settings(max_examples=150, deadline=None)
@given(tree_and_index(), st.integers(min_value=0, max_value=10_000))
def test_inclusion_proofs_verify_and_bit_flips_fail(case: tuple[int, int], bit: int) -> None:
    n, index = case
    entries = entries_of(n)
    tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in entries)
    root = naive_root(entries)
    leaf = merkle.leaf_hash(entries[index])
    proof = merkle.inclusion_proof(index, n, tree)
    merkle.verify_inclusion(leaf, index, n, proof, root)

    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(flip(leaf, bit), index, n, proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaf, index, n, proof, flip(root, bit))
    if proof:
        at = bit % len(proof)
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf, index, n, bad, root)


@settings(max_examples=150, deadline=None)
@given(two_sizes(), st.integers(min_value=0, max_value=10_000))
def test_consistency_proofs_verify_and_bit_flips_fail(sizes: tuple[int, int], bit: int) -> None:
    m, n = sizes
    entries = entries_of(n)
    tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in entries)
    root1, root2 = naive_root(entries[:m]), naive_root(entries)
    proof = merkle.consistency_proof(m, n, tree)
    merkle.verify_consistency(m, n, proof, root1, root2)

    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, proof, flip(root1, bit), root2)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, proof, root1, flip(root2, bit))
    if proof:
        at = bit % len(proof)
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, bad, root1, root2)


@settings(max_examples=100, deadline=None)
@given(two_sizes())
def test_consistency_fails_for_a_forked_log(sizes: tuple[int, int]) -> None:
    m, n = sizes
    entries = entries_of(n)
    forked = [*entries[: m - 1], b"rewritten", *entries[m:]]
    tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in forked)
    proof = merkle.consistency_proof(m, n, tree) if m < n else []
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, proof, naive_root(entries[:m]), naive_root(forked))


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_frontier_reports_every_stored_node(n: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(e) for e in entries_of(n)]
    tree = merkle.MemoryTree(leaves)
    split = data.draw(st.integers(min_value=0, max_value=n))
    frontier = merkle.Frontier()
    nodes: list[tuple[int, int, bytes]] = []
    frontier.extend(leaves[:split], nodes)
    resumed = merkle.Frontier(frontier.size, frontier.hashes)
    resumed.extend(leaves[split:], nodes)
    assert resumed.root() == tree.root()
    want = {(level, i) for level in range(4, n.bit_length() + 1, 4) for i in range(n >> level)}
    assert {(level, i) for level, i, _ in nodes} == want
    assert all(h == tree(level, i) for level, i, h in nodes)


def test_second_preimage_is_refused() -> None:
    """Two child hashes glued into one entry must not pass for their parent node.

    Without the 0x00/0x01 prefixes, the entry `l0 || l1` would hash to the node over leaves
    0 and 1, and a size-2 "tree" of inner nodes would have the same root as the real one.
    """
    tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in entries_of(4))
    glued = tree(0, 0) + tree(0, 1)
    assert merkle.leaf_hash(glued) != tree(1, 0)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(glued), 0, 2, [tree(1, 1)], tree.root())


def test_generation_refuses_bad_arguments() -> None:
    tree = merkle.MemoryTree(merkle.leaf_hash(e) for e in entries_of(3))
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof(3, 3, tree)
    with pytest.raises(ValueError, match="size1"):
        merkle.consistency_proof(0, 3, tree)
    with pytest.raises(ValueError, match="size1"):
        merkle.consistency_proof(3, 2, tree)
