"""Keccak-256 as Ethereum uses it (the original padding, not SHA3-256's): the hash of EIP-55
wallet checksums (protocol/wallets.py) and of EVM address recovery
(collector/identity/wallet_proofs.py). The algorithm is pycryptodome's; this module only fixes which
Keccak the protocol means.

The import is deferred to the first hash: pycryptodome loads cffi and pycparser (about
3 MB resident), and an agent whose wallet is written all lower-case never hashes at all."""


def keccak256(data: bytes) -> bytes:
    """The 32-byte Keccak-256 digest of ``data``."""
    from Crypto.Hash import keccak

    return keccak.new(digest_bits=256, data=data).digest()
