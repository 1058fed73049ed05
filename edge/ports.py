"""Is a TCP port free, and if not, who holds it: the reason a server will not start, named.

``port_in_use(host, port)`` binds a throw-away socket the way uvicorn does (SO_REUSEADDR) and
returns None when the port is free, else one line: ``port 8080 in use by pid 4242 (nginx)``.
The holder comes from /proc/net/tcp{,6} (listening sockets on that port) and /proc/PID/fd
(which process has that socket inode); it is left out when not knowable (another user's
process without root, not Linux), never guessed.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

TCP_LISTEN = "0A"


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """``pid N (name)`` of a process listening on ``port``, or None when not knowable."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in targets:
                    name = (pid_dir / "comm").read_text().strip()
                    return f"pid {pid_dir.name} ({name})"
        except OSError:  # gone, or another user's process
            continue
    return None


def port_in_use(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now, else one line naming the port and its holder."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holder = port_holder(port)
            return f"port {port} in use" + (f" by {holder}" if holder else "") + f" (binding {host}:{port})"
        if exc.errno == errno.EACCES:
            return f"port {port} needs privileges to bind (binding {host}:{port}): use a port above 1023"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"address {host} is not an address of this host (binding {host}:{port})"
        return None  # let the server report what it finds
    finally:
        probe.close()
