"""``edge doctor``: each check says PASS or FAIL for the right reason (edge/doctor.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

from edge.doctor import FAIL, PASS, WARN, check_camera, check_cloud, check_disk, check_lidar, check_permissions


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_lidar_passes_with_packets_and_fails_without():
    port = free_udp_port()
    assert check_lidar("top", f"udp://127.0.0.1:{port}", listen_s=0.5).status == FAIL
    stop = threading.Event()

    def send():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            while not stop.is_set():
                out.sendto(b"\xff\xee" + bytes(1204), ("127.0.0.1", port))
                time.sleep(0.01)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        check = check_lidar("top", f"udp://127.0.0.1:{port}", listen_s=0.5)
    finally:
        stop.set()
        sender.join()
    assert check.status == PASS and "packets on udp://127.0.0.1" in check.detail
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as driver:  # a running driver holds the port
        driver.bind(("127.0.0.1", port))
        assert check_lidar("top", f"udp://127.0.0.1:{port}", listen_s=0.5).status == PASS


def test_cloud_link_and_camera_device(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    up = listener.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = probe.getsockname()[1]  # bound, not listening: connections are refused
        check = check_cloud(f"127.0.0.1:{up},127.0.0.1:{down}", timeout_s=1)
    listener.close()
    assert check.status == FAIL and f"127.0.0.1:{down}" in check.detail and f"reached 127.0.0.1:{up}" in check.detail
    assert check_camera("front", str(tmp_path / "none.mp4")).status == FAIL
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    assert check_camera("front", str(video)).status == PASS
    assert check_camera("front", "rtsp://cam/stream").status == WARN


def test_disk_and_permissions(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    assert next(c.status for c in check_disk(data, 1)) == PASS
    assert check_disk(data, 1 << 62)[0].status == FAIL  # more than any disk has free
    token = data / ".api-token"
    token.write_text("t")
    token.chmod(0o600)
    assert check_permissions(data, [token]).status == PASS
    token.chmod(0o644)
    data.chmod(0o777)
    check = check_permissions(data, [token])
    assert check.status == FAIL and "open to other users" in check.detail and "chmod 600" in check.detail


def test_doctor_command_lines_and_exit_status(tmp_path):
    port = free_udp_port()
    config = tmp_path / "edge.toml"
    config.write_text(f'[broker]\ndata_dir = "data"\n\n[[lidars]]\nname = "top"\nsource = "udp://127.0.0.1:{port}"\n')
    env = {**os.environ, "EDGE_ENDPOINT": f"ipc://{tmp_path}/nobody.sock"}
    done = subprocess.run([sys.executable, "-m", "edge.cli", "doctor", "--config", str(config), "--listen", "0.3",
                           "--format", "json"], capture_output=True, text=True, env=env, timeout=60, check=False)
    checks = {c["check"]: c for c in json.loads(done.stdout)}
    assert done.returncode == 1 and checks["lidar top"]["status"] == FAIL  # no packets: not ready
    assert checks["broker"]["status"] == WARN and {"disk", "permissions", "clock"} <= set(checks)
    assert all(c["status"] in (PASS, WARN, FAIL) for c in checks.values())
