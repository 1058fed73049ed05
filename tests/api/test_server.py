"""``edge api`` as a process: systemd readiness, serving, and a clean exit on SIGTERM with a
live WebSocket client connected."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.broker_process import BrokerProcess, free_tcp_port

EDGE = str(Path(sys.executable).parent / "edge")


def test_edge_api_serves_notifies_and_stops_on_sigterm(tmp_path):
    from websockets.sync.client import connect

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "edge.toml"
    config.write_text(f'[broker]\ndata_dir = "{data_dir}"\n')
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(20)
    port = free_tcp_port()
    with BrokerProcess(data_dir) as broker:
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        env.pop("EDGE_API_TOKEN", None)
        proc = subprocess.Popen([EDGE, "api", "--config", str(config), "--port", str(port),
                                 "--endpoint", broker.endpoint], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            message = notify.recv(4096).decode()
            assert message.startswith("READY=1"), message
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 10
            while requests.get(url + "/readyz", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, "never ready"
                time.sleep(0.1)
            assert requests.get(url + "/api/status", timeout=5).json()["ok"] is True
            # no token configured: the API made one (0600) for writes; reads stay open on loopback
            token_file = data_dir / ".api-token"
            assert token_file.stat().st_mode & 0o777 == 0o600
            token = token_file.read_text().strip()
            assert requests.post(url + "/api/jobs/nope/cancel", timeout=5).status_code == 401
            assert requests.post(url + "/api/jobs/nope/cancel", timeout=5,
                                 headers={"Authorization": f"Bearer {token}"}).status_code == 404
            printed = subprocess.run([EDGE, "api", "--config", str(config), "--port", str(port), "--print-url"],
                                     env=env, capture_output=True, text=True, timeout=30, check=False)
            assert printed.stdout.strip() == f"http://127.0.0.1:{port}/#token={token}", printed.stderr
            # a token in a WebSocket URL (not needed for reads on this loopback bind) is not logged
            with connect(f"ws://127.0.0.1:{port}/api/live?token=very-secret-value-42", open_timeout=5) as ws:
                assert '"hello"' in ws.recv(timeout=5)
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(15) == 0
                assert time.monotonic() - started < 10
            output = proc.stdout.read()
            assert "event=api_ready" in output and "event=api_stopped" in output
            assert "Traceback" not in output
            assert "very-secret-value-42" not in output and "WebSocket /api/live?token=***" in output
            stopping = notify.recv(4096).decode()
            assert "STOPPING=1" in stopping
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()
            notify.close()
