"""`edge replay` against a real broker process: counts, order, headers and timing at 2x,
control over a pipe, drive names, refusals, and bounded memory with 6 MB frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest
from mcap.reader import make_reader

from broker.client import Admin, Consumer, Producer
from edge.drives import record_event

EDGE = [sys.executable, "-m", "edge.cli"]
T0 = 1_795_000_000_000_000_000
MS = 1_000_000


def record_mixed(endpoint: str, seconds: float, *, t0: int = T0, camera_bytes: int = 20_000) -> dict[str, int]:
    """Two cameras at 30 Hz and a LiDAR at 10 Hz on 2 partitions, as their drivers write."""
    counts = {}
    with Admin(endpoint) as admin:
        admin.create_topic("lidar.top", 2)
    with Producer(endpoint, linger_ms=5) as producer:
        for topic, hz, phase, partitions in (("camera.front", 30, 0, 1), ("camera.rear", 30, 11 * MS, 1),
                                             ("lidar.top", 10, 3 * MS, 2)):
            n = int(seconds * hz)
            futures = [
                producer.send(topic, bytes([i % 251]) * camera_bytes, key=b"k%d" % i,
                              headers={"seq": str(i), "encoding": "jpeg"}, partition=i % partitions,
                              timestamp_ns=t0 + phase + i * 10**9 // hz)
                for i in range(n)]
            counts[topic] = n
            producer.flush(30)
            for future in futures:
                future.result(10)  # raises what went wrong
    return counts


def read_all(endpoint: str, topic: str, partitions: int = 1):
    consumer = Consumer(endpoint, max_wait_ms=100)
    consumer.assign([(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    out = []
    with Admin(endpoint) as admin:
        end = sum(admin.list_offset(topic, p, "latest") for p in range(partitions))
    deadline = time.monotonic() + 30
    while len(out) < end and time.monotonic() < deadline:
        out.extend(consumer.poll(0.5))
    consumer.close()
    return out


def edge(*args, endpoint, timeout=120, **kwargs):
    return subprocess.run([*EDGE, *args, "--endpoint", endpoint], capture_output=True, text=True,
                          timeout=timeout, **kwargs, check=False)


def test_replay_at_2x_keeps_records_order_headers_and_timing(broker):
    counts = record_mixed(broker.endpoint, 4.0)
    started = time.monotonic()
    done = edge("replay", "--topics", "camera.*,lidar.top", "--start", str(T0), "--end", str(T0 + 4 * 10**9),
                "--speed", "2", "--no-control", endpoint=broker.endpoint)
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["state"] == "finished" and summary["records"] == sum(counts.values())
    assert summary["destinations"] == {t: "replay." + t for t in counts}
    assert "replay " in done.stderr and "100.0%" in done.stderr  # the progress line
    assert 1.9 < wall < 12, wall  # 4 s of recording at 2x, plus start-up
    assert summary["lateness"]["p99_ms"] < 25, summary["lateness"]

    originals = {t: read_all(broker.endpoint, t, 2 if t == "lidar.top" else 1) for t in counts}
    for topic, n in counts.items():
        replayed = read_all(broker.endpoint, "replay." + topic, 2 if topic == "lidar.top" else 1)
        assert len(replayed) == n
        by_source = {(r.partition, int(r.headers["replay.source.offset"])): r for r in replayed}
        for original in originals[topic]:
            copy = by_source[(original.partition, original.offset)]
            assert bytes(copy.value) == bytes(original.value) and copy.key == original.key
            assert copy.timestamp == original.timestamp
            assert copy.headers["seq"] == original.headers["seq"]
            assert copy.headers["replay.source.topic"] == topic.encode()
            assert copy.headers["replay.id"] == summary["replay_id"].encode()
        for partition in {r.partition for r in replayed}:
            stamps = [r.timestamp for r in replayed if r.partition == partition]
            assert stamps == sorted(stamps)


def test_control_over_a_pipe_pause_speed_seek_stop(broker):
    record_mixed(broker.endpoint, 30.0, camera_bytes=2_000)
    proc = subprocess.Popen([*EDGE, "replay", "--topics", "camera.front,lidar.top", "--start", "earliest",
                             "--speed", "1", "--quiet", "--endpoint", broker.endpoint],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answers: list[dict] = []
    reader = threading.Thread(target=lambda: answers.extend(json.loads(line) for line in proc.stdout), daemon=True)
    reader.start()

    def ask(command: str) -> dict:
        before = len(answers)
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 15
        while len(answers) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(answers) > before, f"no answer to {command!r}: {proc.stderr.read() if proc.poll() else ''}"
        return answers[-1]

    try:
        time.sleep(2.0)
        paused = ask("pause")
        assert paused["state"] == "paused" and paused["records"] > 0
        time.sleep(0.5)
        still = ask("status")
        assert still["records"] == paused["records"]
        assert ask("resume")["state"] == "playing"
        assert ask("speed 4")["speed"] == 4.0
        before = ask("status")["position_ns"]
        sought = ask("seek +10s")
        time.sleep(0.3)
        after = ask("status")["position_ns"]
        assert after - before >= 10 * 10**9, (before, after, sought)
        assert "unknown command" in ask("jump")["error"]
        assert "outside 0.1–10" in ask("speed 99")["error"]
        ask("stop")
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        reader.join(5)
        proc.stdout.close()
        proc.stderr.close()
    assert answers[-1]["state"] == "stopped"
    assert answers[-1]["records"] < 30 * 40  # it stopped before the end of the recording


def test_drive_name_selects_the_drive_window_and_its_end(broker):
    record_mixed(broker.endpoint, 3.0)
    record_event(broker.endpoint, "start", "drive-test-1", time_ns=T0 + 1 * 10**9)
    record_event(broker.endpoint, "stop", "drive-test-1", time_ns=T0 + 2 * 10**9)
    done = edge("replay", "--drive", "drive-test-1", "--topics", "camera.front", "--max", "--no-control",
                "--prefix", "d.", endpoint=broker.endpoint)
    assert done.returncode == 0, done.stderr
    replayed = read_all(broker.endpoint, "d.camera.front")
    assert len(replayed) == 30
    assert all(T0 + 10**9 <= r.timestamp < T0 + 2 * 10**9 for r in replayed)


@pytest.mark.parametrize("args, message", [
    (["--topics", "camera.front", "--prefix", ""], "would feed the replay its own output"),
    (["--topics", "camera.nope"], "has no topic 'camera.nope'"),
    (["--topics", "radar.*"], "no topic of the broker"),
    (["--topics", "camera.front", "--start", "1795000000"], "looks like epoch seconds"),
    (["--topics", "camera.front", "--drive", "no-such-drive"], "no drive named 'no-such-drive'"),
    (["--topics", "camera.front", "--speed", "50"], "outside 0.1–10"),
    (["--topics", "camera.front", "--remap", "camera.front"], "expected SOURCE=DESTINATION"),
    (["--topics", "camera.front:3"], "has 1 partition(s), no partition 3"),
])
def test_bad_arguments_are_refused_with_a_clear_message(broker, args, message):
    record_mixed(broker.endpoint, 0.2)
    done = edge("replay", *args, "--no-control", "--quiet", endpoint=broker.endpoint)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    with Admin(broker.endpoint) as admin:
        assert not [t for t in admin.list_topics() if t.startswith("replay.")]  # nothing published


def test_memory_stays_bounded_replaying_6mb_frames(broker):
    frame = os.urandom(6 * 1024 * 1024)
    with Producer(broker.endpoint, linger_ms=0) as producer:
        for i in range(80):  # 480 MiB of raw frames
            producer.send("camera.raw", frame, headers={"encoding": "bgr8"}, timestamp_ns=T0 + i * 33 * MS)
        producer.flush(60)
    proc = subprocess.Popen([*EDGE, "replay", "--topics", "camera.raw", "--max", "--no-control", "--quiet",
                             "--endpoint", broker.endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["records"] == 80
    # interpreter + libraries ~70 MB; a read-ahead of a few frames and the producer's 32 MiB
    # buffer on top: far below the 480 MiB a replay that buffered the window would hold
    assert peak < 260 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MiB"
    with Admin(broker.endpoint) as admin:
        assert admin.list_offset("replay.camera.raw", 0, "latest") == 80


def test_records_deleted_by_retention_are_reported_and_fail_the_export_and_replay(broker, tmp_path):
    """On main an export of a window partly deleted by retention wrote what was left and
    reported success. The window here starts before the oldest record kept: the records
    before the log start that may belong to it are reported, and both commands exit 3
    unless --allow-gaps."""
    ep = broker.endpoint
    with Admin(ep) as admin:
        admin.create_topic("camera.front", 1, config={"segment_bytes": 16_384})
    frame = {"encoding": "bgr8", "width": "16", "height": "16"}
    with Producer(ep, linger_ms=0) as producer:
        for i in range(1200):
            sent = producer.send("camera.front", bytes(768), headers=frame, timestamp_ns=T0 + i * 1_000_000)
            if i % 10 == 9:
                sent.result(10)  # batches of about 10 records, so segments roll and retention can act
    with Admin(ep) as admin:
        admin.configure_topic("camera.front", {"retention_bytes": 400_000})
    broker.stop()
    broker.start()  # retention runs at once on start

    deadline = time.monotonic() + 10
    with Admin(ep) as admin:
        while admin.list_offset("camera.front", 0, "earliest") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        log_start = admin.list_offset("camera.front", 0, "earliest")
    assert 0 < log_start < 1200

    def edge(*args):
        return subprocess.run([sys.executable, "-m", "edge.cli", *args, "--endpoint", ep],
                              capture_output=True, text=True, timeout=60, check=False)

    window = ["--topics", "camera.front", "--start", str(T0), "--end", str(T0 + 1200 * 1_000_000)]
    done = edge("export", *window, "--out", str(tmp_path / "w"), "--quiet")
    assert done.returncode == 3, done.stderr
    assert f"camera.front:0 (log starts at {log_start})" in done.stderr and "incomplete" in done.stderr
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["records"] == 1200 - log_start
    assert manifest["missing"]["before_log_start"] == [
        {"topic": "camera.front", "partition": 0, "log_start": log_start}]
    done = edge("export", *window, "--out", str(tmp_path / "w2.mcap"), "--quiet", "--allow-gaps")
    assert done.returncode == 0 and "warning" in done.stderr, done.stderr
    with open(tmp_path / "w2.mcap", "rb") as fh:
        meta = {m.name: m.metadata for m in make_reader(fh).iter_metadata()}
    assert json.loads(meta["edge.export"]["missing_records"])["before_log_start"][0]["log_start"] == log_start
    done = edge("replay", *window, "--max", "--no-control", "--quiet")
    assert done.returncode == 3, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["records"] == 1200 - log_start and summary["missing"]["before_log_start"], summary
