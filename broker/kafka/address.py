"""Kafka listener addresses: ``HOST:PORT`` parsing and the loopback test (no heavy imports:
the config loader uses it)."""

from __future__ import annotations


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9092`` for IPv6) -> (host, port); ValueError names the problem."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9092, got {text!r}")
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")

