"""RFC 9162 Merkle tree hashing, proofs and their verification.

The ledger's tamper evidence rests on this module, so it follows the RFC to the letter and is
tested against the transparency-dev vectors: a leaf is `SHA-256(0x00 || entry)` and an inner
node `SHA-256(0x01 || left || right)`, the two prefixes keeping a leaf from ever passing for a
node (second preimages). The tree over `n` leaves splits at the largest power of two below `n`.

Proof *generation* never reads leaves directly: it asks a `SubtreeHash` accessor for the hash
of a perfect subtree `(level, index)` — the `2**level` leaves from `index * 2**level` on. A
store can answer from nodes it saved at append time, so a proof on a million-entry log costs
O(log n) lookups; `MemoryTree` answers from a list of leaf hashes for small trees and tests.

Proof *verification* takes nothing on trust: sizes, indices, hash lengths and every path
element are checked before a root is accepted, because the party handing out the proof is
exactly the one a verifier must not rely on.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Final

HASH_SIZE: Final = 32
LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
#: MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

#: Hash of the perfect subtree at `(level, index)`: leaves `[index << level, (index+1) << level)`.
SubtreeHash = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof, root or size that does not check out. The message says which rule failed."""


def leaf_hash(entry: bytes) -> bytes:
    """Hash of one log entry as a leaf."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an inner node over its two children."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below `n` (n >= 2): where RFC 9162 splits a tree."""
    if n < 2:
        raise ValueError("a tree of fewer than two leaves has no split")
    return 1 << ((n - 1).bit_length() - 1)


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes by the RFC's recursive definition; slow, for tests and checks."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split_point(n)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree given its `2**k` bottom hashes (leaves or lower nodes)."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise ValueError("a perfect subtree needs a power-of-two number of hashes")
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def range_hash(begin: int, end: int, subtree: SubtreeHash) -> bytes:
    """MTH(D[begin:end]) for a range the RFC recursion can produce.

    Such a range starts at a multiple of a power of two at least as large as the range, so it
    is a run of perfect subtrees of decreasing size; the RFC root folds them from the right.
    """
    if not 0 <= begin < end:
        raise ValueError("empty or negative range")
    parts: list[bytes] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin & ((1 << level) - 1):
            raise ValueError("range is not aligned to its subtrees")
        parts.append(subtree(level, begin >> level))
        begin += 1 << level
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc


def root_at(size: int, subtree: SubtreeHash) -> bytes:
    """Root of the tree over the first `size` leaves."""
    if size < 0:
        raise ValueError("negative tree size")
    return EMPTY_ROOT if size == 0 else range_hash(0, size, subtree)


class MemoryTree:
    """All levels of a tree held in memory; a `SubtreeHash` for tests and small logs."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(leaves)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            self._levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def __call__(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root_at(self.size if size is None else size, self)


class Frontier:
    """The compact range [0, size): the roots of the perfect subtrees that make up the tree.

    Appending a leaf merges equal-sized subtrees like a binary counter, so a log keeps only
    O(log n) hashes to extend its tree and compute its root; verification streams leaves
    through one of these instead of holding the log in memory.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError("a frontier holds one hash per set bit of its size")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("frontier hashes must be 32 bytes")
        self.size = size
        self._hashes = list(hashes)

    @property
    def hashes(self) -> list[bytes]:
        """Subtree roots, largest (leftmost) first."""
        return list(self._hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self._hashes)

    def append(self, leaf: bytes, nodes: list[tuple[int, int, bytes]] | None = None) -> None:
        """Add one leaf hash; completed inner nodes at levels divisible by 4 go to `nodes`."""
        h = leaf
        idx = self.size
        level = 0
        stack = self._hashes
        while idx & 1:
            h = node_hash(stack.pop(), h)
            idx >>= 1
            level += 1
            if nodes is not None and not level & 3:
                nodes.append((level, idx, h))
        stack.append(h)
        self.size += 1

    def extend(
        self, leaves: Iterable[bytes], nodes: list[tuple[int, int, bytes]] | None = None
    ) -> None:
        append = self.append
        for leaf in leaves:
            append(leaf, nodes)

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf side first."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    path: list[bytes] = []
    begin, end = 0, size
    while end - begin > 1:
        k = split_point(end - begin)
        if index < begin + k:
            path.append(range_hash(begin + k, end, subtree))
            end = begin + k
        else:
            path.append(range_hash(begin, begin + k, subtree))
            begin += k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, subtree: SubtreeHash) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 §2.1.4.1, deepest node first."""
    if not 0 < size1 <= size2:
        raise ValueError("consistency needs 0 < size1 <= size2")
    proof: list[bytes] = []
    begin, end, m, whole = 0, size2, size1, True
    while True:
        n = end - begin
        if m == n:
            if not whole:
                proof.append(range_hash(begin, end, subtree))
            break
        k = split_point(n)
        if m <= k:
            proof.append(range_hash(begin + k, end, subtree))
            end = begin + k
        else:
            proof.append(range_hash(begin, begin + k, subtree))
            begin += k
            m -= k
            whole = False
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof implies (RFC 9162 §2.1.3.2, all but the final compare)."""
    if size <= 0 or not 0 <= index < size:
        raise ProofError("leaf index is not inside the tree")
    _check_hash(leaf, "leaf hash")
    fn, sn = index, size - 1
    r = leaf
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
        if sn == 0:
            raise ProofError("proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise `ProofError` unless `proof` shows leaf `index` is in the tree of `size` with `root`."""
    _check_hash(root, "root")
    if not _same(root_from_inclusion(leaf, index, size, proof), root):
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise `ProofError` unless `proof` shows tree `size1` is a prefix of tree `size2`.

    Policy on the edges, pinned by the vectors: size1 = 0 is refused (nothing to prove, and a
    caller asking is confused); equal sizes need an empty proof and equal roots, checked before
    any length rule.
    """
    if size2 < size1:
        raise ProofError("size2 is smaller than size1")
    if size1 <= 0:
        raise ProofError("size1 must be at least 1")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if not _same(root1, root2):
            raise ProofError("equal sizes but different roots")
        return
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    if not proof:
        raise ProofError("empty proof")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than needed")
    if not _same(fr, root1):
        raise ProofError("proof does not lead to root1")
    if not _same(sr, root2):
        raise ProofError("proof does not lead to root2")
