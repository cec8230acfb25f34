"""Whether `biaslab serve` may run without authentication on the address it binds."""

from __future__ import annotations

import ipaddress
import socket

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """Return True when `host` is a loopback address or name; False for all others.

    Names other than localhost are not resolved, so they count as reachable from
    the network. "0.0.0.0" and "::" bind every interface, so they are not loopback.
    """
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_lab_error(host: str, auth: str) -> str | None:
    """Return why serving on `host` with authentication `auth` is not allowed, else None."""
    if auth == "required" or is_loopback(host):
        return None
    return (
        f"serving on {host} without authentication is not allowed, because anyone who can "
        "reach it could read, start and cancel every study. Create a user with "
        "`biaslab users create NAME --admin`, then start the lab with `biaslab serve --auth` "
        "(or BIASLAB_AUTH=required); or bind to 127.0.0.1 to keep an open one-person lab."
    )


def bind_address(host: str, port: int) -> str:
    """Return `host` as uvicorn binds it: an IPv6 address loses its brackets.

    Raises ValueError, with the reason, when the address does not resolve.
    """
    address = host.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise ValueError(
            f"--host {host!r} is not an address this machine can bind: {error}; "
            "use an IP address such as 127.0.0.1 or ::1, or a name that resolves"
        ) from error
    return address


def url_of(address: str, port: int) -> str:
    """Return the URL of the lab bound to `address`; IPv6 addresses go in brackets."""
    try:
        is_ipv6 = ipaddress.ip_address(address).version == 6
    except ValueError:
        is_ipv6 = False
    return f"http://[{address}]:{port}/" if is_ipv6 else f"http://{address}:{port}/"
