"""The shape of every value that reaches a worker's install script, each written once.

The collector checks these values in Python, and ``packaging/setup.sh`` checks them again in
bash, where the owner can also pass them as options; both use these strings, so the two can
never disagree (the collector renders them into the script it serves, and a test keeps the
repository's copy equal). That is why each is written in the subset that Python's ``re`` and
POSIX extended regular expressions (bash's ``[[ =~ ]]``) read alike: no ``\\d``, ``(?:``
or lazy quantifiers, no backslash inside brackets (POSIX takes it literally), and a ``]``
in a bracket only first. Each pattern matches a whole value: Python uses ``fullmatch``, the
script wraps it in ``^(...)$``.

Only the shape is here; what a shape cannot say (an EIP-55 or Stellar checksum, whether a
token is still usable) stays in Python, in protocol/wallets.py and collector/uptime/workers.py.
"""

EVM_WALLET = "0x[0-9a-fA-F]{40}"
STELLAR_WALLET = "G[A-Z2-7]{55}"

ENROLLMENT_TOKEN_PREFIX = "tsk_"  # noqa: S105 - a prefix, not a secret
# The prefix and ``secrets.token_urlsafe(32)``: 43 characters of the URL-safe base64 alphabet.
ENROLLMENT_TOKEN = ENROLLMENT_TOKEN_PREFIX + "[A-Za-z0-9_-]{43}"

_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A DNS name (which covers a dotted IPv4 address) or a bracketed IPv6 literal.
HOST = rf"({_LABEL}(\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
# 1 to 65535, without leading zeros.
PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# host[:port], as in a Host header.
AUTHORITY = f"{HOST}(:{PORT})?"
# Where workers reach the collector: no user, query or fragment, and a path of plain
# characters only, as it is written into a shell script and a YAML file.
COLLECTOR_URL = f"https?://{AUTHORITY}(/[A-Za-z0-9._~/-]*)?"
# Which repositories the deployer may build: a host, an owner there, or one repository.
REPOSITORY_SCOPE = rf"{_LABEL}(\.{_LABEL})*(/[A-Za-z0-9_.-]+){{0,2}}"

# What the script hands to pip instead of the collector's wheel: a requirement or a URL, with
# nothing a shell or YAML would read specially (no space, quote, ``$``, ``;`` or ``#``).
PIP_REQUIREMENT = "[][A-Za-z0-9._~:/@=<>!,+%-]+"
