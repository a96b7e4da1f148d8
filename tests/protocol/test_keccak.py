"""Keccak-256 is Ethereum's (the original padding, not SHA3-256's): published digests, and
the EIP-55 checksum it decides."""

import hashlib

import pytest

from protocol.keccak import keccak256
from protocol.wallets import to_checksum_address


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        # Across the block boundary: 135 bytes pad within one block, 136 need two.
        (bytes(135), "29e3704feeca7fb9ba229f0fa04d9b36449cf3ad6e1d85d9cfff3a10df9abc3e"),
        (bytes(136), "3a5912a7c5faa06ee4fe906253e339467a9ce87d533c65be3c15cb231cdb25f9"),
    ],
    ids=["empty", "abc", "135", "136"],
)
def test_keccak256_matches_the_reference_digests(data, digest):
    assert keccak256(data).hex() == digest


def test_it_is_not_sha3_256():
    # The same sponge with another padding: the mistake a library swap could make.
    assert keccak256(b"abc") != hashlib.sha3_256(b"abc").digest()


@pytest.mark.parametrize(
    "address",
    [
        # EIP-55's own examples.
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_the_eip55_checksum_comes_from_it(address):
    assert to_checksum_address(address.lower()) == address
