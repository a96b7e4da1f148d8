"""Whether an address stays on this machine: the one rule for "loopback", wherever the
collector lets something weaker through because nothing leaves the machine."""

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, an IPv6 one with or without its brackets,
    no port) is this machine: ``localhost``, 127.0.0.0/8 or ::1. Any other name may resolve
    anywhere, so it is not."""
    host = host.lower()
    if host == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # ::ffff:127.0.0.1 is 127.0.0.1 (Python before 3.13 does not say so).
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback
