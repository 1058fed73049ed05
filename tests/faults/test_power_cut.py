"""Power cuts: the whole appliance (``edge up`` on configs/sim.toml: broker, simulated
camera and LiDAR drivers, API, supervisor) is SIGKILLed as one process group at random
moments while the sensors record, a producer writes acks=durable records and a consumer
group commits offsets; after every restart:

- every record acknowledged as durable is present exactly once, in order (values strictly
  increasing, offsets contiguous from 0);
- offsets continue (a topic's log end never goes below what was acknowledged, and new
  sensor records get new offsets);
- no corrupt record is served: every topic reads back from its first offset to its end;
- committed group offsets survive and never point past the log end.

``EDGE_FAULT_ROUNDS`` (default 4) sets the rounds; ``scripts/faults`` runs many more.
The same power cuts with a ``[mirror]`` configured (the mirror is one of the processes cut,
and every acknowledged record must reach the real Kafka cluster exactly once, in order) are
in tests/integration/mirror/test_power_cut_mirror.py; SIGKILLs of the mirror alone and the
loss of a Kafka node are in tests/integration/mirror/test_mirror.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError
from tests.faults.test_second_instance import alive
from tests.integration.test_edge_up import sim_config, topic_ends, wait_for

ROUNDS = int(os.environ.get("EDGE_FAULT_ROUNDS", "4"))
SEQ_TOPIC = "faults.seq"
GROUP = "faults.reader"
SENSOR_TOPICS = ("camera.front", "camera.rear", "lidar.top")


def start_appliance(config: Path, data_dir: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(config),
                                 "--data-dir", str(data_dir)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def power_cut(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the appliance at once, as a power cut would."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in family:  # children that left the group (none should) die too
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(10)
    wait_dead([p for p in map(_process, family) if p is not None], 10)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def wait_dead(procs: list[psutil.Process], timeout: float) -> None:
    """Until every process is gone or a zombie. A zombie holds no files and no locks any more
    (its data directory's flock is released); waiting for someone else to reap it (init:
    up to 2 s per cut here, psutil.wait_procs waits for that) tests nothing of ours."""
    deadline = time.monotonic() + timeout
    while running := [p for p in procs if alive(p)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"still running {timeout:.0f} s after SIGKILL: {[p.pid for p in running]}")
        time.sleep(0.01)


class DurableWriter:
    """A thread sending 0, 1, 2, ... with acks=durable; remembers which were acknowledged."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.acked: list[int] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="durable-writer", daemon=True)

    def start(self) -> DurableWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        with Producer(self.endpoint, acks="durable", linger_ms=1, request_timeout_s=1.0, on_full="fail") as producer:
            i = 0
            while not self._stop.is_set():
                try:
                    future = producer.send(SEQ_TOPIC, str(i).encode(), headers={"i": str(i)})
                    future.add_done_callback(
                        lambda f, i=i: self.acked.append(i) if f.exception() is None else self._fail())
                except BrokerError:
                    self._fail()
                i += 1
                time.sleep(0.002)

    def _fail(self) -> None:
        self.failed += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def read_everything(endpoint: str, topic: str, keep=lambda record: record) -> list:
    """``keep(record)`` of every record of ``topic`` partition 0 from its first offset to its
    end (a summary keeps memory small); a corrupt batch raises (the broker refuses to serve
    damaged data)."""
    with Admin(endpoint) as admin:
        start = admin.list_offset(topic, 0, "earliest")
        end = admin.list_offset(topic, 0, "latest")
    consumer = Consumer(endpoint, max_wait_ms=50)
    try:
        consumer.assign([(topic, 0)])
        consumer.seek(topic, 0, start)
        out: list = []
        deadline = time.monotonic() + 60
        while consumer.position(topic, 0) < end:
            out += [keep(r) for r in consumer.poll(1.0) if r.offset < end]
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: stuck at {consumer.position(topic, 0)} of {end}")
        return out
    finally:
        consumer.close()


@pytest.mark.slow
def test_power_cuts_lose_nothing_acknowledged(tmp_path):
    data_dir = tmp_path / "data"
    endpoint = f"ipc://{data_dir}/broker.sock"
    config = sim_config(tmp_path)
    log = tmp_path / "edge-up.log"
    rng = random.Random(int(os.environ.get("EDGE_FAULT_SEED", "7")))
    proc = start_appliance(config, data_dir, log)
    wait_for(lambda: SENSOR_TOPICS[0] in topic_ends(endpoint), 30, "the appliance to record")
    with Admin(endpoint) as admin:
        admin.create_topic(SEQ_TOPIC, 1, if_not_exists=True)
    writer = DurableWriter(endpoint).start()
    committed: dict[tuple[str, int], int] = {}
    try:
        for round_no in range(ROUNDS):
            ends_before = wait_for(lambda: (e := topic_ends(endpoint)) and all(t in e for t in SENSOR_TOPICS) and e,
                                   30, f"sensor topics (round {round_no})")
            # a consumer group reads a little and commits
            with Admin(endpoint) as admin:
                target = min(ends_before["camera.front"], committed.get(("camera.front", 0), 0) + 5)
                admin.commit_offsets(GROUP, {("camera.front", 0): target})
                committed[("camera.front", 0)] = target
            time.sleep(rng.uniform(0.3, 2.0))
            acked_at_cut = len(writer.acked)
            power_cut(proc)
            proc = start_appliance(config, data_dir, log)
            after = wait_for(lambda: (e := topic_ends(endpoint)) and SEQ_TOPIC in e and e, 30,
                             f"the appliance back after power cut {round_no}")
            # every record acknowledged before the cut holds an offset below the log end
            assert after[SEQ_TOPIC] >= acked_at_cut, (after, acked_at_cut)
            with Admin(endpoint) as admin:
                offsets = admin.group_offsets(GROUP)
                end = admin.list_offset("camera.front", 0, "latest")
            assert offsets.get(("camera.front", 0)) == committed[("camera.front", 0)], offsets
            assert committed[("camera.front", 0)] <= end
            # sensors record again, with offsets continuing from what survived
            wait_for(lambda end=end: topic_ends(endpoint)["camera.front"] > end + 3, 30, "camera.front to record again")
        time.sleep(1.0)
    finally:
        writer.stop()
        try:
            records = read_everything(endpoint, SEQ_TOPIC)
            sensors = {t: read_everything(endpoint, t) for t in SENSOR_TOPICS}
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    values = [int(bytes(r.value)) for r in records]
    assert [r.offset for r in records] == list(range(len(records))), "offsets contiguous from 0"
    assert len(values) == len(set(values)), "no record twice"
    assert values == sorted(values), "in order"
    missing = set(writer.acked) - set(values)
    print(f"power cuts: {ROUNDS} rounds, {len(writer.acked)} acknowledged-durable records at risk, "
          f"{writer.failed} refused while down, {len(values)} in the log, {len(missing)} lost")
    assert not missing, f"{len(missing)} acknowledged-durable records lost, e.g. {sorted(missing)[:5]}"
    # records were at risk in every round; sends while the appliance was down are not refused
    # any more when batches were in flight: the idempotent producer holds them and sends them
    # again once the broker is back (acknowledged once: "no record twice" above)
    assert len(writer.acked) > 20 * ROUNDS, (len(writer.acked), writer.failed)
    for topic, got in sensors.items():
        offsets = [r.offset for r in got]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), f"{topic}: a gap in the offsets"
        assert all(len(r.value) > 0 for r in got), f"{topic}: an empty record served"
