"""Every attempt to reach the network fails, and is recorded: a test that must run offline checks
that the list stays empty. Local (Unix) sockets are left alone."""

from __future__ import annotations

import socket

NETWORK = (socket.AF_INET, socket.AF_INET6)


def block_network(setattr_=setattr) -> list:
    """Refuse internet connections and name look-ups from now on; returns the list of attempts.
    `setattr_` is pytest's `monkeypatch.setattr` inside a test (undone after it)."""
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(what):
        attempts.append(what)
        raise OSError(f"the network is blocked in this test: {what}")

    def connect(self, address):
        return refuse(address) if self.family in NETWORK else real_connect(self, address)

    def connect_ex(self, address):
        return refuse(address) if self.family in NETWORK else real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        return refuse(("getaddrinfo", host))

    setattr_(socket.socket, "connect", connect)
    setattr_(socket.socket, "connect_ex", connect_ex)
    setattr_(socket, "getaddrinfo", getaddrinfo)
    return attempts
