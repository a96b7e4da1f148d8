"""Keccak-256 (Ethereum's, not SHA3-256) against digests from an independent implementation
(pycryptodome), across the block boundary: 135 bytes pad within one block, 136 need two."""

import pytest

from protocol.keccak import keccak256


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (bytes(135), "29e3704feeca7fb9ba229f0fa04d9b36449cf3ad6e1d85d9cfff3a10df9abc3e"),
        (bytes(136), "3a5912a7c5faa06ee4fe906253e339467a9ce87d533c65be3c15cb231cdb25f9"),
        (bytes(range(256)) * 2, "f55ba327291604f0e5be6651752398b7be2331aad65f5763ce067df95cc13be1"),
    ],
    ids=["empty", "abc", "135", "136", "512"],
)
def test_keccak256_matches_the_reference_digests(data, digest):
    assert keccak256(data).hex() == digest
