"""Which Ed25519 public keys and signatures the collector accepts.

OpenSSL (through ``cryptography``) takes any 32 bytes as a public key, and a small-order key
(the identity point ``01 00 … 00``, for one) has signatures that verify for every message
without anyone holding a private key. libsodium, which verifies heartbeats now, refuses
those keys by itself, but the collector's own rule does not hang on a library's choice: such
keys are refused at enrollment, and non-canonical encodings with them: an honest key is always
``a·B`` for a secret scalar ``a``, a canonically encoded point of the prime-order subgroup.
The arithmetic follows RFC 8032 section 5.1.3 (decoding) in extended coordinates; it runs
once per enrollment, never per heartbeat.
"""

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the prime order of the base point
_D = -121665 * pow(121666, -1, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)

# The point of order 8 from which every small-order point follows (libsodium's blocklist).
_ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


class InvalidKey(ValueError):
    """Why a public key or signature is refused; the message is safe to show a caller."""


def _decode(raw: bytes) -> tuple[int, int, int, int]:
    """Decode a point (RFC 8032 5.1.3) into extended coordinates, refusing what is not one."""
    if len(raw) != 32:
        raise InvalidKey("an Ed25519 point is 32 bytes")
    encoded = int.from_bytes(raw, "little")
    sign, y = encoded >> 255, encoded & ((1 << 255) - 1)
    if y >= P:
        raise InvalidKey("publicKey is not canonically encoded (y is not reduced)")
    u, v = (y * y - 1) % P, (_D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        x = x * _SQRT_M1 % P
    if (v * x * x - u) % P != 0:
        raise InvalidKey("publicKey is not a point on the Ed25519 curve")
    if x == 0 and sign:
        raise InvalidKey("publicKey is not canonically encoded (negative zero x)")
    if x & 1 != sign:
        x = P - x
    return x, y, 1, x * y % P


def _add(a: tuple, b: tuple) -> tuple:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa, pb = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    c, dd = t1 * 2 * _D * t2 % P, z1 * 2 * z2 % P
    e, f, g, h = pb - pa, dd - c, dd + c, pb + pa
    return e * f % P, g * h % P, f * g % P, e * h % P


def _multiply(scalar: int, point: tuple) -> tuple:
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _is_identity(point: tuple) -> bool:
    x, y, z, _ = point
    return x % P == 0 and (y - z) % P == 0


def _encode(point: tuple) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def check_public_key(raw: bytes) -> None:
    """Raise InvalidKey unless ``raw`` is a canonical point of the prime-order subgroup."""
    point = _decode(raw)
    if _is_identity(_multiply(8, point)):
        raise InvalidKey("publicKey is a small-order point: anyone could sign for it")
    if not _is_identity(_multiply(L, point)):
        raise InvalidKey("publicKey is not in the prime-order subgroup")


def _small_order_encodings() -> frozenset[bytes]:
    points = [_multiply(k, _decode(_ORDER_8)) for k in range(8)]
    found = set()
    for point in points:
        canonical = _encode(point)
        found.add(canonical)
        y = int.from_bytes(canonical, "little") & ((1 << 255) - 1)
        sign = canonical[31] >> 7
        # The same points spelled non-canonically: y + p where it still fits, and "-0" for x.
        for spelled_y in (y, y + P):
            for spelled_sign in (sign, 1):
                if spelled_y < 2**255:
                    found.add((spelled_y | spelled_sign << 255).to_bytes(32, "little"))
    return frozenset(found)


# Looked up on every verification (cheap), in case a key enrolled before the check existed.
SMALL_ORDER_ENCODINGS = _small_order_encodings()


def check_signature(raw: bytes) -> None:
    """Raise InvalidKey for a signature whose S is not reduced below L (RFC 8032 5.1.7):
    accepting S + L would let anyone alter a signature without invalidating it."""
    if len(raw) != 64:
        raise InvalidKey("an Ed25519 signature is 64 bytes")
    if int.from_bytes(raw[32:], "little") >= L:
        raise InvalidKey("signature is not canonical (S is not reduced)")
