"""systemd notify protocol (``Type=notify`` units): READY, STATUS, STOPPING and watchdog pings.

Sends datagrams to the unix socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without that variable every call is a no-op, so processes call it
unconditionally. ``Watchdog`` pings at half of ``$WATCHDOG_USEC`` from a daemon thread only
while the process's own liveness check passes, so a wedged event loop gets restarted.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable


def notify(message: str) -> bool:
    """Send one notify message (e.g. "READY=1"); False when not run under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def ready(status: str | None = None) -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval_s() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None


class Watchdog:
    """Pings ``WATCHDOG=1`` every half watchdog period while ``alive()`` returns True."""

    def __init__(self, alive: Callable[[], bool] = lambda: True):
        self.alive = alive
        self.interval = watchdog_interval_s()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        if self.interval:
            self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.alive():
                notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stop.set()
