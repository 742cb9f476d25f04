"""The Merkle tree has RFC 6962's shape, the frontier agrees with it, and proofs catch tampering."""

from __future__ import annotations

from collections.abc import Sequence

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wayang_operator.auditlog import merkle
from wayang_operator.auditlog.merkle import leaf_hash, node_hash

MAX_SIZE = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
PROPERTIES = settings(max_examples=200, deadline=None)


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, literally, as the reference."""
    if not leaves:
        return blake3.blake3(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def flipped(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, new)), new


def test_hashes_are_domain_separated_blake3() -> None:
    assert leaf_hash(b"a") == blake3.blake3(b"\x00a").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == blake3.blake3(b"\x01" + left + right).digest()
    assert len(leaf_hash(b"")) == merkle.HASH_SIZE


def test_small_trees_have_the_rfc_6962_shape() -> None:
    a, b, c, d, e = (leaf_hash(x) for x in (b"a", b"b", b"c", b"d", b"e"))
    assert merkle.root([]) == blake3.blake3(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.root([a]) == a
    assert merkle.root([a, b]) == node_hash(a, b)
    assert merkle.root([a, b, c]) == node_hash(node_hash(a, b), c)
    assert merkle.root([a, b, c, d]) == node_hash(node_hash(a, b), node_hash(c, d))
    assert merkle.root([a, b, c, d, e]) == node_hash(node_hash(node_hash(a, b), node_hash(c, d)), e)


def test_the_frontier_agrees_with_the_tree_hash_at_every_size() -> None:
    frontier = merkle.Frontier()
    for n in range(201):
        assert frontier.size == n
        assert frontier.root() == merkle.root(LEAVES[:n]) == mth(LEAVES[:n])
        if n < 200:
            frontier.append(LEAVES[n])


@settings(max_examples=25, deadline=None)
@given(st.integers(201, 5000))
def test_the_frontier_agrees_with_the_tree_hash_for_larger_trees(n: int) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.root() == merkle.root(leaves) == mth(leaves)


def test_a_copied_frontier_is_independent() -> None:
    frontier = merkle.Frontier()
    for leaf in LEAVES[:5]:
        frontier.append(leaf)
    tentative = frontier.copy()
    tentative.append(LEAVES[5])
    assert (frontier.size, frontier.root()) == (5, merkle.root(LEAVES[:5]))
    assert (tentative.size, tentative.root()) == (6, merkle.root(LEAVES[:6]))


def test_the_root_of_100000_leaves() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert merkle.root(leaves) == frontier.root()


@PROPERTIES
@given(size_and_index())
def test_inclusion_proofs_verify_and_catch_tampering(case: tuple[int, int]) -> None:
    size, index = case
    leaves, leaf = LEAVES[:size], LEAVES[index]
    root = merkle.root(leaves)
    proof = merkle.inclusion_proof(leaves, index)
    assert merkle.verify_inclusion(leaf, index, size, proof, root)

    assert not merkle.verify_inclusion(flipped(leaf), index, size, proof, root)
    assert not merkle.verify_inclusion(leaf, index, size, proof, flipped(root))
    for other in {0, index - 1, index + 1, size - 1, size} - {index}:
        assert not merkle.verify_inclusion(leaf, other, size, proof, root)
    for i in range(len(proof)):
        changed = [*proof[:i], flipped(proof[i]), *proof[i + 1 :]]
        assert not merkle.verify_inclusion(leaf, index, size, changed, root)
        assert not merkle.verify_inclusion(leaf, index, size, proof[:i] + proof[i + 1 :], root)
    assert not merkle.verify_inclusion(leaf, index, size, [*proof, LEAVES[0]], root)


@PROPERTIES
@given(old_and_new())
def test_consistency_proofs_verify_and_catch_tampering(case: tuple[int, int]) -> None:
    old, new = case
    old_root, new_root = merkle.root(LEAVES[:old]), merkle.root(LEAVES[:new])
    proof = merkle.consistency_proof(LEAVES[:new], old)
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
    assert (proof == []) == (old == new)

    assert not merkle.verify_consistency(old, new, flipped(old_root), new_root, proof)
    assert not merkle.verify_consistency(old, new, old_root, flipped(new_root), proof)
    for i in range(len(proof)):
        changed = [*proof[:i], flipped(proof[i]), *proof[i + 1 :]]
        assert not merkle.verify_consistency(old, new, old_root, new_root, changed)
        dropped = proof[:i] + proof[i + 1 :]
        assert not merkle.verify_consistency(old, new, old_root, new_root, dropped)
    extended = [*proof, LEAVES[0]]
    assert not merkle.verify_consistency(old, new, old_root, new_root, extended)


def test_a_rewritten_history_is_not_consistent() -> None:
    rewritten = [*LEAVES[:3], leaf_hash(b"forged"), *LEAVES[4:10]]
    old_root = merkle.root(LEAVES[:6])
    proof = merkle.consistency_proof(rewritten, 6)
    assert not merkle.verify_consistency(6, 10, old_root, merkle.root(rewritten), proof)


def test_consistency_edge_cases() -> None:
    root5 = merkle.root(LEAVES[:5])
    assert merkle.verify_consistency(5, 5, root5, root5, [])
    assert not merkle.verify_consistency(5, 5, root5, flipped(root5), [])
    assert not merkle.verify_consistency(5, 5, root5, root5, [root5])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, root5, [])
    assert not merkle.verify_consistency(0, 5, root5, root5, [])
    assert not merkle.verify_consistency(6, 5, root5, root5, [])
    assert not merkle.verify_consistency(3, 5, merkle.root(LEAVES[:3]), root5, [])


def test_proofs_refuse_positions_outside_the_tree() -> None:
    with pytest.raises(ValueError, match="outside a tree of 3 leaves"):
        merkle.inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof(LEAVES[:3], -1)
    with pytest.raises(ValueError, match="between 1 and"):
        merkle.consistency_proof(LEAVES[:3], 0)
    with pytest.raises(ValueError, match="between 1 and"):
        merkle.consistency_proof(LEAVES[:3], 4)
    assert not merkle.verify_inclusion(LEAVES[0], 0, 0, [], merkle.EMPTY_ROOT)
