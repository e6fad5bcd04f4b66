"""free_port: ports handed to children are free when handed out and never handed out twice."""

from __future__ import annotations

import socket

from scatter.runtime import free_port


def test_a_block_of_ports_is_free_and_handed_out_once() -> None:
    first = free_port(count=4)
    for port in range(first, first + 4):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free: raises otherwise
    later = {free_port() for _ in range(300)}
    assert later.isdisjoint(range(first, first + 4))


def test_single_ports_are_never_repeated() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
