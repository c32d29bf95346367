"""HOST:PORT parsing and the loopback test shared by server and client."""

from __future__ import annotations

import ipaddress

from ._errors import InvalidArgument


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("10.0.0.1")
    (True, True, False)
    """
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    """Parse HOST:PORT (``[::1]:50051`` for IPv6).

    >>> split_listen("127.0.0.1:0")
    ('127.0.0.1', 0)
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgument(f"address must be HOST:PORT, got {listen!r}")
    return host, int(port)
