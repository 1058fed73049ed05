"""``edge up`` on configs/sim.toml: topics grow, a killed driver is restarted, SIGTERM stops
everything cleanly (exit 0, no process left), and a second run continues the offsets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from broker.client import Admin
from broker.errors import BrokerError

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "configs" / "sim.toml"
SENSOR_TOPICS = {"camera.front", "camera.rear", "lidar.top"}


def sim_config(tmp: Path) -> Path:
    """configs/sim.toml as shipped, except the API and the Kafka listener bind any free port
    (8080 and 9092 may be taken)."""
    text = SIM.read_text()
    if "port = 8080" not in text:
        raise AssertionError("configs/sim.toml no longer sets the API port the README promises")
    if 'kafka_listen = "127.0.0.1:9092"' not in text:
        raise AssertionError("configs/sim.toml no longer sets the Kafka listener the README promises")
    path = tmp / "sim.toml"
    path.write_text(text.replace("port = 8080", "port = 0").replace('kafka_listen = "127.0.0.1:9092"',
                                                                     'kafka_listen = "127.0.0.1:0"'))
    return path


def start_up(data_dir: Path) -> subprocess.Popen:
    config = sim_config(data_dir.parent)
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(config),
                             "--data-dir", str(data_dir), "--status-interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def topic_ends(endpoint: str) -> dict[str, int]:
    with Admin(endpoint, timeout_s=2) as admin:
        return {name: sum(p["next_offset"] for p in t["partitions"]) for name, t in admin.list_topics().items()}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except BrokerError as exc:
            last_error = exc
        time.sleep(0.1)  # 0.25 s wasted 0.125 s on average per wait, in every edge up test
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def children_of(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.slow
def test_edge_up_runs_restarts_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "data"
    endpoint = f"ipc://{data_dir}/broker.sock"
    proc = start_up(data_dir)
    try:
        first = wait_for(lambda: (e := topic_ends(endpoint)) and set(e) >= SENSOR_TOPICS and e, 30, "sensor topics")
        grown = wait_for(lambda: (e := topic_ends(endpoint)) and all(e[t] > first[t] for t in SENSOR_TOPICS) and e,
                         20, "every sensor topic to grow")
        assert grown["_drives"] >= 1

        # kill a driver child: the supervisor restarts it and the topic keeps growing
        drivers = [c for c in children_of(proc) if "camera" in " ".join(c.cmdline()) and "front" in c.cmdline()]
        assert drivers, [c.cmdline() for c in children_of(proc)]
        drivers[0].kill()
        before = topic_ends(endpoint)["camera.front"]
        wait_for(lambda: any(c.pid != drivers[0].pid and "front" in c.cmdline() for c in children_of(proc)),
                 20, "the camera driver to be restarted")
        wait_for(lambda: topic_ends(endpoint)["camera.front"] > before + 5, 20, "camera.front to grow again")
        kids = children_of(proc)
    finally:
        code, out = stop(proc)
    assert code == 0, out[-3000:]
    assert "stopped cleanly" in out
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "no child left behind"

    # a second run on the same data dir continues the offsets
    ends = {}
    with subprocess.Popen([sys.executable, "-m", "edge.cli", "broker", "--data-dir", str(data_dir)],
                          stderr=subprocess.DEVNULL) as broker:
        ends = wait_for(lambda: topic_ends(endpoint), 15, "the broker")
        broker.send_signal(signal.SIGTERM)
        broker.wait(20)
    proc = start_up(data_dir)
    try:
        wait_for(lambda: topic_ends(endpoint)["camera.front"] > ends["camera.front"], 30, "offsets to continue")
        with Admin(endpoint) as admin:
            assert admin.list_offset("camera.front", 0, "earliest") == 0
    finally:
        code, out = stop(proc)
    assert code == 0, out[-3000:]


@pytest.mark.slow
def test_api_port_in_use_is_named_and_backed_off(tmp_path):
    """The API's port is taken: `edge up` keeps running, says which port and who holds it,
    and restarts the API with a growing backoff, not in a loop."""
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    data_dir = tmp_path / "data"
    config = sim_config(tmp_path)
    config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(config), "--data-dir",
                             str(data_dir), "--status-interval", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(line.decode(errors="replace") for line in proc.stdout),
                              daemon=True)
    reader.start()
    try:
        # until the API has failed twice and shows as backing off (8 s of fixed waiting before);
        # a restart loop without backoff would show hundreds of exits by then
        wait_for(lambda: "".join(seen).count("event=child_exited child=api") >= 2
                 and "api                  backoff" in "".join(seen), 30, "the API to back off twice")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        reader.join(10)
        out = "".join(seen)
    finally:
        holder.close()
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
    assert f"port {port} in use by pid {os.getpid()}" in out, out[-3000:]
    assert "api                  backoff" in out, out[-3000:]
    restarts = out.count("event=child_exited child=api")
    assert 2 <= restarts <= 5, out[-3000:]  # 0.5, 1, 2, 4 s apart: a loop would be hundreds
