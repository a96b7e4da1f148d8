"""protocol/merkle.py: RFC 6962's Merkle tree, checked against the RFC's reference vectors
(as Certificate Transparency publishes them) and against a naive transcription of the RFC."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import merkle
from protocol.receipts import Receipt, leaves, sign

# Certificate Transparency's reference inputs (merkle_tree_test.cc) and the roots of their
# first n leaves, for n = 0 to 8.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (index from 0, tree size, audit path): the reference inclusion proofs.
CT_PATHS = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


# --- RFC 6962 section 2.1, word for word, recursive and slow --------------------------------


def naive_root(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = split(n)
    return hashlib.sha256(b"\x01" + naive_root(d[:k]) + naive_root(d[k:])).digest()


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return naive_path(m, d[:k]) + [naive_root(d[k:])]
    return naive_path(m - k, d[k:]) + [naive_root(d[:k])]


def split(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def data(n: int) -> list[bytes]:
    return [bytes([i, i * 7 % 256]) * (i % 3) for i in range(n)]


# --- the reference vectors --------------------------------------------------------------------


def test_the_empty_trees_root_is_sha256_of_nothing():
    assert merkle.root([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.root([]).hex() == CT_ROOTS[0]


@pytest.mark.parametrize("size", range(1, 9))
def test_the_roots_are_rfc_6962s(size):
    assert merkle.root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), CT_PATHS)
def test_the_audit_paths_are_rfc_6962s(index, size, path):
    assert [p.hex() for p in merkle.proof(CT_LEAVES[:size], index)] == path
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify(CT_LEAVES[index], index, size, [bytes.fromhex(p) for p in path], root)


@pytest.mark.parametrize("size", range(0, 70))
def test_roots_and_paths_match_the_rfcs_definition_at_every_size(size):
    # Odd sizes and sizes just past a power of two are where a level-by-level build would
    # differ from the RFC's split, if it did.
    leaves_ = data(size)
    assert merkle.root(leaves_) == naive_root(leaves_)
    for index in range(size):
        assert merkle.proof(leaves_, index) == naive_path(index, leaves_)


# --- proofs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 18))
def test_every_leafs_proof_verifies_and_nothing_else_does(size):
    leaves_ = data(size)
    root = merkle.root(leaves_)
    other_root = merkle.root(data(size + 1))
    for index, leaf in enumerate(leaves_):
        path = merkle.proof(leaves_, index)
        assert merkle.verify(leaf, index, size, path, root)
        assert not merkle.verify(leaf + b"!", index, size, path, root), "changed leaf"
        assert not merkle.verify(leaf, index, size, path, other_root), "wrong root"
        for wrong in {index - 1, index + 1, index ^ 1, size} - {index}:
            # A leaf equal to its neighbour would rightly verify there too: data() has none.
            assert not merkle.verify(leaf, wrong, size, path, root), f"index {wrong}"
        # A size the path's shape does not fit. (One it fits, as 9 and 16 for leaf 0, says
        # nothing wrong: in RFC 6962 the root, not the path, is what commits to the size.)
        assert not merkle.verify(leaf, index, index, path, root), "size not past the index"
        if path:
            assert not merkle.verify(leaf, index, size, path[:-1], root), "short path"
            flipped = bytes([path[0][0] ^ 1]) + path[0][1:]
            assert not merkle.verify(leaf, index, size, [flipped, *path[1:]], root)
        assert not merkle.verify(leaf, index, size, [*path, root], root), "long path"


def test_a_leaf_cannot_pass_for_the_node_above_it():
    # Without the 0x00 and 0x01 prefixes, the two children's hashes, joined, would be a
    # "leaf" whose proof is the rest of the path: the second-preimage forgery.
    leaves_ = data(4)
    root = merkle.root(leaves_)
    inner = merkle.leaf_hash(leaves_[0]) + merkle.leaf_hash(leaves_[1])
    assert not merkle.verify(inner, 0, 2, [merkle.proof(leaves_, 0)[-1]], root)


def test_a_duplicated_last_leaf_changes_the_root():
    # The duplication trick (CVE-2012-2459) gives [a, b, c] and [a, b, c, c] one root; here not.
    leaves_ = data(3)
    assert merkle.root(leaves_) != merkle.root([*leaves_, leaves_[-1]])


@pytest.mark.parametrize("index", [-1, 3, 4])
def test_a_proof_for_a_leaf_outside_the_tree_is_refused(index):
    with pytest.raises(IndexError, match=f"no leaf {index} in a tree of 3"):
        merkle.proof(data(3), index)


@pytest.mark.parametrize(
    ("index", "size", "path"),
    [(0, 0, []), (-1, 1, []), (0, 1, [b"\x00" * 31]), (0, 2, [b"\x00" * 33])],
)
def test_verify_says_no_to_what_is_not_a_proof(index, size, path):
    assert not merkle.verify(b"", index, size, path, merkle.root([b""]))


def test_a_single_leafs_proof_is_empty():
    assert merkle.proof([b"x"], 0) == []
    assert merkle.verify(b"x", 0, 1, [], merkle.root([b"x"]))


# --- over receipts ----------------------------------------------------------------------------


def test_an_owner_shows_a_receipt_is_in_a_payouts_root():
    key = Ed25519PrivateKey.generate()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    receipts = [
        sign(
            Receipt(
                key_id="k1",
                wallet="0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
                heartbeat_time=start + timedelta(minutes=i),
                heartbeat_sha256=hashlib.sha256(bytes([i])).hexdigest(),
                window_start=start,
                window_end=start + timedelta(minutes=i),
                counted_millis=60_000 if i else 0,
                credits_millis=1_000 if i else 0,
                collector_time=start + timedelta(minutes=i, milliseconds=40),
            ),
            key,
        )
        for i in range(11)
    ]
    # The collector's order and the owner's need not agree: leaves() fixes one.
    ordered = leaves(reversed(receipts))
    root = merkle.root(ordered)
    assert root == naive_root([r.leaf() for r in receipts])
    mine = receipts[6]
    index = ordered.index(mine.leaf())
    assert index == 6
    assert merkle.verify(mine.leaf(), index, len(ordered), merkle.proof(ordered, index), root)
