"""A Merkle tree over a period's receipts, as RFC 6962 (section 2.1) defines one.

A payout carries, per worker, the root of the tree over that period's receipts
(``protocol.receipts.leaves``), so that an owner can show a receipt is in it with an audit
path, and an auditor can recompute the root. RFC 6962 is followed to the letter, so that any
Certificate Transparency library checks the same roots and paths:

* a leaf's hash is ``SHA-256(0x00 || leaf)``, a node's ``SHA-256(0x01 || left || right)``:
  the prefixes keep a leaf from passing for a node (a second-preimage forgery);
* a tree of n > 1 leaves splits at k, the largest power of two smaller than n: the left
  subtree holds the first k leaves, the right one the rest. No leaf is ever duplicated to
  fill a level (the trick that lets two different lists share a root, CVE-2012-2459);
* the empty tree's root is ``SHA-256()`` of nothing.

Only hashlib: the agent and any checker can import it.
"""

import hashlib
import hmac
from collections.abc import Sequence

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels_up(level: list[bytes]) -> list[bytes]:
    """The level above: adjacent pairs hashed, an odd last node carried up as it is. Level by
    level this builds the very tree of RFC 6962's split (every left subtree is complete), in
    one hash per node and without recursion."""
    above = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        above.append(level[-1])
    return above


def root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaves`` (raw leaf bytes, in the tree's order)."""
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        level = _levels_up(level)
    return level[0]


def proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of the leaf at ``index`` (RFC 6962 2.1.1): the sibling hashes from the
    leaf up to the root, nearest first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"no leaf {index} in a tree of {len(leaves)}")
    path, level = [], [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        sibling = index ^ 1
        # A node carried up alone has no sibling at this level, and adds nothing to the path.
        if sibling < len(level):
            path.append(level[sibling])
        level, index = _levels_up(level), index // 2
    return path


def verify(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows ``leaf`` (raw bytes) at ``index`` in the tree of ``size``
    leaves whose root is ``root``: RFC 9162 section 2.1.3.2, which checks the path's length
    too, so that no path of the wrong shape passes."""
    if not 0 <= index < size or any(len(p) != HASH_BYTES for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False  # a path longer than this tree is deep
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Up past the levels where this node was carried alone (a right edge).
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, root)
