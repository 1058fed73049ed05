"""A child that keeps failing: its state, its last error line and a growing backoff
(edge/supervisor.py), and the port holder named (edge/ports.py)."""

from __future__ import annotations

import itertools
import socket
import sys
import time

from edge.commands.up import format_children
from edge.ports import port_in_use
from edge.supervisor import LAYER_SERVICES, ChildSpec, Supervisor

FAILING = [sys.executable, "-c",
           "import sys; print('starting'); print('level=ERROR event=api_refused reason=\"port 8080 in use\"');"
           "print('shutting down'); sys.exit(3)"]


def test_failing_child_reports_last_error_and_backs_off(tmp_path):
    supervisor = Supervisor([ChildSpec("api", FAILING, LAYER_SERVICES)], tmp_path / "logs", grace_s=2)
    supervisor.start()
    starts: list[float] = []
    delays: list[float] = []  # restart_in_s seen when each backoff began
    seen_pid = None
    in_backoff = False
    deadline = time.monotonic() + 4.2
    while time.monotonic() < deadline and len(delays) < 3:  # the third backoff (2 s) begun: seen enough
        supervisor.poll()
        child = supervisor.describe()[0]
        if child["pid"] is not None and child["pid"] != seen_pid:
            starts.append(time.monotonic())
            seen_pid = child["pid"]
        if child["state"] == "backoff" and not in_backoff:
            delays.append(child["restart_in_s"])
        in_backoff = child["state"] == "backoff"
        time.sleep(0.02)
    supervisor.stop()
    # backoff 0.5, 1, 2 s (doubling): at most 4 starts in 4.2 s, where a tight loop makes hundreds
    # (a loop never shows three backoffs, so it runs the whole 4.2 s window)
    assert 2 <= len(starts) <= 4, starts
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(starts)), starts
    assert len(delays) >= 2 and all(abs(d - 0.5 * 2 ** i) < 0.1 for i, d in enumerate(delays)), delays
    child = supervisor.describe()[0]
    assert child["last_exit"] == 3 and 'api_refused reason="port 8080 in use"' in child["last_error"]


def test_backoff_state_shows_in_the_up_view(tmp_path):
    supervisor = Supervisor([ChildSpec("api", FAILING, LAYER_SERVICES)], tmp_path / "logs", grace_s=2)
    supervisor.start()
    deadline = time.monotonic() + 5
    while supervisor.describe()[0]["state"] != "backoff" and time.monotonic() < deadline:
        supervisor.poll()
        time.sleep(0.02)
    view = format_children(supervisor.describe())
    supervisor.stop()
    assert "processes: 0/1 up" in view
    line = view.splitlines()[1]
    assert "api" in line and "backoff" in line and "exit 3, restart in" in line and "port 8080 in use" in line


def test_port_in_use_names_the_holder():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        message = port_in_use("127.0.0.1", port)
    finally:
        holder.close()
    assert message is not None and message.startswith(f"port {port} in use by pid ")
    import os

    assert f"pid {os.getpid()} " in message
    assert port_in_use("127.0.0.1", port) is None  # released: free again
