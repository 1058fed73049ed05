"""A second instance on one data directory (issue 21, item 7) and file modes (item 13).

- A second `edge broker` on a data directory a broker already holds exits non-zero at
  once with one line naming the lock file and the holder's pid; the holder keeps serving
  every acknowledged record.
- A SIGKILLed broker leaves its lock file behind; the restart is not blocked by it.
- `edge up` SIGKILLed: every child (broker, API, drivers) is gone within a few seconds,
  so the next `edge up` does not meet an orphaned broker; a second `edge up` while one
  runs is refused naming the lock and the pid; the restart continues the offsets.
- What `edge up`, the broker and `edge export` create is not world-readable (umask 0027);
  the generated API token file is 0600.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil

from broker.client import Admin, Consumer, Producer
from broker.storage.dir_lock import BROKER_LOCK_FILE, SUPERVISOR_LOCK_FILE
from tests.integration.test_edge_up import children_of, sim_config, topic_ends, wait_for
from tests.support.broker_process import EDGE, BrokerProcess

RECORDS = 200


def produce_durably(endpoint: str, topic: str, count: int) -> None:
    with Admin(endpoint) as admin:
        admin.create_topic(topic, 1)
    with Producer(endpoint, acks="durable") as producer:
        futures = [producer.send(topic, f"record-{i}".encode()) for i in range(count)]
        for future in futures:
            future.result(20)


def read_all(endpoint: str, topic: str) -> list[bytes]:
    with Admin(endpoint) as admin:
        end = admin.list_offset(topic, 0, "latest")
    consumer = Consumer(endpoint, max_wait_ms=50)
    consumer.assign([(topic, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(values) < end and time.monotonic() < deadline:
        values.extend(bytes(r.value) for r in consumer.poll(0.5))
    consumer.close()
    return values


def run_second_broker(data_dir: Path, endpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([EDGE, "broker", "--data-dir", str(data_dir), "--endpoint", endpoint],
                          capture_output=True, text=True, timeout=20, check=False)


def test_second_broker_on_one_data_dir_is_refused(data_dir, broker):
    produce_durably(broker.endpoint, "lock.test", RECORDS)
    # another endpoint, so nothing but the lock can stop it
    second = run_second_broker(data_dir, f"ipc://{data_dir.parent}/second.sock")
    assert second.returncode != 0, second.stderr
    refusals = [line for line in second.stderr.splitlines() if "broker_refused" in line]
    assert len(refusals) == 1, second.stderr
    assert str(data_dir / BROKER_LOCK_FILE) in refusals[0] and f"pid {broker.proc.pid}" in refusals[0]
    assert "Traceback" not in second.stderr
    assert read_all(broker.endpoint, "lock.test") == [f"record-{i}".encode() for i in range(RECORDS)]


def test_restart_after_sigkill_is_not_blocked_by_the_stale_lock(data_dir):
    first = BrokerProcess(data_dir).start()
    produce_durably(first.endpoint, "lock.test", RECORDS)
    pid = first.proc.pid
    first.kill()
    lock = data_dir / BROKER_LOCK_FILE
    assert lock.read_text().strip() == str(pid)  # the file stays; only a living holder locks
    with BrokerProcess(data_dir) as again:
        assert read_all(again.endpoint, "lock.test") == [f"record-{i}".encode() for i in range(RECORDS)]
        assert lock.read_text().strip() == str(again.proc.pid)


def world_or_group_writable(root: Path) -> list[str]:
    """Files under root that others may read, or the group may write (sockets excepted)."""
    found = []
    for path in root.rglob("*"):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # a temp file renamed away by the running broker
            continue
        if stat.S_ISSOCK(mode) or stat.S_ISLNK(mode):
            continue
        if mode & (stat.S_IRWXO | stat.S_IWGRP):
            found.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_up(data_dir: Path, out: Path) -> subprocess.Popen:
    with open(out, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(sim_config(data_dir.parent)),
                                 "--data-dir", str(data_dir), "--no-status"], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def test_edge_up_sigkilled_takes_its_children_and_restarts(tmp_path):
    data_dir = tmp_path / "data"
    endpoint = f"ipc://{data_dir}/broker.sock"
    out = tmp_path / "edge-up.out"
    proc = start_up(data_dir, out)
    try:
        before = wait_for(lambda: (e := topic_ends(endpoint)) and e.get("camera.front", 0) > 5 and e, 60,
                          "camera.front records")
        kids = wait_for(lambda: len(k := children_of(proc)) >= 5 and k, 30, "broker, API and drivers")
        names = " ".join(" ".join(k.cmdline()) for k in kids)
        assert "broker" in names and " api " in names and "camera" in names, names

        second = subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(sim_config(tmp_path)),
                                   "--data-dir", str(data_dir), "--no-status"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = second.communicate(timeout=30)
        finally:
            for k in children_of(second):
                k.kill()
            second.kill()
        assert second.returncode != 0, err
        assert str(data_dir / SUPERVISOR_LOCK_FILE) in err and f"pid {proc.pid}" in err, err
        assert "Traceback" not in err

        # item 13: nothing the appliance wrote is readable by others; the token is 0600
        assert world_or_group_writable(data_dir) == []
        token_file = data_dir / ".api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        printed = wait_for(lambda: re.search(r"dashboard (http://.*?/#token=\S+)", out.read_text()),
                           10, "the dashboard line")
        assert printed.group(1).endswith(f"/#token={token}")

        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(10)
        while time.monotonic() < killed + 5 and any(alive(k) for k in kids):
            time.sleep(0.05)
        left = [" ".join(k.cmdline()) for k in kids if alive(k)]
        assert left == [], f"children outlived the SIGKILLed edge up: {left}"
        print(f"{len(kids)} children of the SIGKILLed edge up gone after {time.monotonic() - killed:.2f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
        for k in children_of(proc):
            k.kill()

    proc = start_up(data_dir, out)
    try:
        wait_for(lambda: topic_ends(endpoint)["camera.front"] > before["camera.front"] + 5, 60,
                 "camera.front to continue after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, out.read_text(errors="replace")[-3000:]


def test_edge_export_output_is_not_world_readable(data_dir, broker, tmp_path):
    from tests.api.support import publish_camera

    with Admin(broker.endpoint) as admin:
        admin.create_topic("camera.front", 1)
    with Producer(broker.endpoint, acks="durable") as producer:
        for future in [publish_camera(producer, "camera.front", "front", seq) for seq in range(5)]:
            future.result(20)
    target = tmp_path / "out"
    result = subprocess.run([EDGE, "export", "--endpoint", broker.endpoint, "--topics", "camera.front",
                             "--start", "earliest", "--out", str(target), "--format", "dir"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    files = [p for p in target.rglob("*") if p.is_file()]
    assert files, result.stdout
    assert world_or_group_writable(target) == [], "export output readable by others"
    assert stat.S_IMODE(target.stat().st_mode) & stat.S_IRWXO == 0


def test_a_lock_file_that_cannot_be_opened_is_a_clear_refusal(tmp_path):
    if os.geteuid() == 0:  # root opens any file: make the lock path a directory instead
        (tmp_path / BROKER_LOCK_FILE).mkdir()
    else:
        (tmp_path / BROKER_LOCK_FILE).touch(mode=0o400)
    result = run_second_broker(tmp_path, f"ipc://{tmp_path}/broker.sock")
    assert result.returncode == 2, result.stderr
    assert "broker_refused" in result.stderr and str(tmp_path / BROKER_LOCK_FILE) in result.stderr
    assert "Traceback" not in result.stderr
