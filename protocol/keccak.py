"""Keccak-256 as Ethereum uses it (the original padding, not SHA3-256's), for the EIP-55
checksum of a wallet address: public data, a few dozen bytes, at most once per request.

The standard library has only SHA3; pycryptodome's Keccak cost every worker's agent about
3 MB of resident memory (it loads cffi and pycparser) for hashing one address at start-up.
This follows the Keccak reference (keccak.team, "Keccak specifications summary")."""

_MASK = 2**64 - 1
_RATE = 136  # bytes: 1600 - 2 × 256 bits of capacity
_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)  # fmt: skip
# The rotation of lane (x, y), at index x + 5y.
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip
# Where rho and pi move lane x + 5y: to (y, 2x + 3y).
_DESTINATIONS = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))


def _rotate(lane: int, by: int) -> int:
    return ((lane << by) | (lane >> (64 - by))) & _MASK


def _permute(state: list[int]) -> list[int]:
    for constant in _ROUND_CONSTANTS:
        columns = [
            state[x] ^ state[x + 5] ^ state[x + 10] ^ state[x + 15] ^ state[x + 20]
            for x in range(5)
        ]
        effects = [columns[(x - 1) % 5] ^ _rotate(columns[(x + 1) % 5], 1) for x in range(5)]
        moved = [0] * 25
        for index in range(25):
            lane = state[index] ^ effects[index % 5]
            moved[_DESTINATIONS[index]] = _rotate(lane, _ROTATIONS[index])
        state = [
            moved[i] ^ (~moved[i - i % 5 + (i + 1) % 5] & moved[i - i % 5 + (i + 2) % 5])
            for i in range(25)
        ]
        state[0] ^= constant
    return state


def keccak256(data: bytes) -> bytes:
    padded = bytearray(data) + b"\x01" + bytes(-(len(data) + 1) % _RATE)
    padded[-1] |= 0x80
    state = [0] * 25
    for start in range(0, len(padded), _RATE):
        block = padded[start : start + _RATE]
        for index in range(_RATE // 8):
            state[index] ^= int.from_bytes(block[8 * index : 8 * index + 8], "little")
        state = _permute(state)
    return b"".join(lane.to_bytes(8, "little") for lane in state[:4])
