"""systemd units verify, and processes speak the notify protocol (READY, WATCHDOG)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
EDGE = Path(sys.executable).parent / "edge"


def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is needed for this test (Debian package systemd)")
    names = []
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/edge/.venv/bin/edge", str(EDGE))
        (tmp_path / unit.name).write_text(text)
        if "@" in unit.name:
            instance = unit.name.replace("@.", "@front.")
            (tmp_path / instance).write_text(text)
            names.append(instance)
        else:
            names.append(unit.name)
    result = subprocess.run(["systemd-analyze", "verify", *sorted(names)], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_every_service_is_hardened_and_supervised():
    for unit in UNITS.glob("*.service"):
        text = unit.read_text()
        for directive in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=edge",
                          "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes", "MemoryMax="):
            assert directive in text, f"{unit.name} lacks {directive}"
        if unit.name != "edge-broker.service":
            assert "After=edge-broker.service" in text, unit.name


def receive(sock: socket.socket, until: float) -> list[str]:
    messages = []
    while time.monotonic() < until:
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
        if any("WATCHDOG=1" in m for m in messages) and any("READY=1" in m for m in messages):
            break
    return messages


def notify_socket(tmp_path: Path) -> tuple[socket.socket, dict[str, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    return sock, env


def test_broker_process_sends_ready_and_watchdog(tmp_path):
    sock, env = notify_socket(tmp_path)
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([str(EDGE), "broker", "--data-dir", str(tmp_path / "data")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        messages = receive(sock, time.monotonic() + 15)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        sock.close()
    assert any(m.startswith("READY=1") for m in messages), (messages, err[-2000:])
    assert any("WATCHDOG=1" in m for m in messages), messages
    assert proc.returncode == 0
