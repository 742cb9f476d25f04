"""The audit log's Merkle tree: RFC 6962 / RFC 9162 section 2.1, hashed with BLAKE3.

Using the Certificate Transparency tree shape (leaves and nodes domain-separated by a 0x00 / 0x01
prefix, split at the largest power of two below n) means the proofs are the standard ones: an
inclusion proof shows one entry is in a signed root, a consistency proof shows a later root only
appended to an earlier one, so a rewritten history cannot hide behind a fresh signature. Only the
hash function differs from the RFCs (BLAKE3, the hash the rest of the log uses).

The writer keeps a `Frontier` (the roots of the perfect subtrees the log decomposes into), so each
append and each checkpoint root costs O(log n), without the leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3

HASH_SIZE = 32
"""Bytes in a leaf, node or root hash."""
EMPTY_ROOT = blake3.blake3(b"").digest()
"""The root of the tree with no leaves: the hash of the empty string, as in RFC 6962."""


def leaf_hash(data: bytes) -> bytes:
    return blake3.blake3(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2): where RFC 6962 splits n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The compact range [0, size): one subtree root per set bit of `size`, largest first.

    Appending merges equal-sized subtrees like a binary counter carries; the root folds the
    subtrees from the right, which is exactly RFC 6962's tree hash for `size` leaves.
    """

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._nodes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        node, carry = leaf_hash, self._size
        while carry & 1:
            node = node_hash(self._nodes.pop(), node)
            carry >>= 1
        self._nodes.append(node)
        self._size += 1

    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        result = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            result = node_hash(node, result)
        return result

    def copy(self) -> Frontier:
        """An independent frontier: appending to it leaves this one as it was."""
        other = Frontier()
        other._nodes = self._nodes.copy()
        other._size = self._size
        return other


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 6962's MTH, level by level: pairing neighbours and promoting a lone last node gives
    the same tree as splitting at the largest power of two, with each node hashed once."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 PATH(index, D[n]): the sibling subtree roots from the leaf up to the root."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf index {index} is outside a tree of {len(leaf_hashes)} leaves")
    proof: list[bytes] = []
    leaves = leaf_hashes
    while len(leaves) > 1:
        k = _split(len(leaves))
        if index < k:
            proof.append(root(leaves[k:]))
            leaves = leaves[:k]
        else:
            proof.append(root(leaves[:k]))
            leaves, index = leaves[k:], index - k
    proof.reverse()
    return proof


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: whether `proof` shows `leaf_hash` at `index` under `root`."""
    if not 0 <= index < size:
        return False
    fn, sn, result = index, size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and result == root


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[n]): what proves the first `old_size` leaves are a prefix."""
    if not 0 < old_size <= len(leaf_hashes):
        raise ValueError(
            f"old size {old_size} must be between 1 and the tree's {len(leaf_hashes)} leaves"
        )
    proof: list[bytes] = []
    leaves, m, whole = leaf_hashes, old_size, True
    while m != len(leaves):
        k = _split(len(leaves))
        if m <= k:
            proof.append(root(leaves[k:]))
            leaves = leaves[:k]
        else:
            proof.append(root(leaves[:k]))
            leaves, m, whole = leaves[k:], m - k, False
    if not whole:
        # The old tree's last subtree is a node of the new tree; the verifier needs its hash.
        proof.append(root(leaves))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: whether `proof` shows the `old_size` tree with `old_root` is a
    prefix of the `new_size` tree with `new_root`. Every tree extends the empty one."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for sibling in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first = node_hash(sibling, first)
            second = node_hash(sibling, second)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            second = node_hash(second, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and first == old_root and second == new_root
