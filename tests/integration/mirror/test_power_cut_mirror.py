"""Power cuts with the mirror running: the whole appliance (``edge up`` on configs/sim.toml
plus a ``[mirror]`` section pointing at the real three-node Kafka cluster: broker, simulated
camera and LiDAR drivers, API, mirror, supervisor) is SIGKILLed at random moments while the
sensors record, a producer writes acks=durable records to a mirrored topic and the mirror
ships; ``edge up`` is started again after every cut. At the end the mirror catches up (a
driverless ``edge up`` on the same data) and, read from Kafka with
``isolation.level=read_committed``:

- every record acknowledged as durable is in the cloud exactly once, in order;
- the cloud copy of every mirrored partition is the local log, record for record: the
  ``edge.source.offset`` headers run contiguously from the local log start to its end (every
  10th for the sampled LiDAR), no (partition, source offset) twice, values identical;
- the mirror was shipping in every round (its committed position moved since the last cut)
  and every appliance process, the mirror among them, died at each cut.

``EDGE_FAULT_ROUNDS`` (default 2) sets the rounds; ``scripts/faults`` runs many more.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import random
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, TopicPartition

from broker.client import Admin, Producer
from broker.errors import BrokerError
from edge.mirror.service import MIRROR_GROUP
from tests.faults.test_power_cut import SEQ_TOPIC, DurableWriter, power_cut, read_everything, start_appliance
from tests.integration.test_edge_up import SIM, topic_ends, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROUNDS = int(os.environ.get("EDGE_FAULT_ROUNDS", "2"))
LIDAR_EVERY = 10  # LiDAR clouds are ~4 MB/s raw: ship every 10th, as a bandwidth-bound vehicle would
MIN_SAMPLED = 12  # records each mirrored topic must ship for the comparison to mean something
MIRRORED = (SEQ_TOPIC, "camera.front", "camera.rear", "lidar.top")


def mirror_config(tmp: Path, data_dir: Path, vehicle: str, bootstrap: str, *, sensors: bool = True) -> Path:
    """configs/sim.toml with its data in ``data_dir``, the API on a free port, a unique
    vehicle id and a [mirror] section; ``sensors=False`` drops the drivers (catch-up run)."""
    text = SIM.read_text()
    for old, new in (('data_dir = "../data"', f'data_dir = "{data_dir}"'), ("port = 8080", "port = 0"),
                     ('id = "sim-vehicle"', f'id = "{vehicle}"')):
        if old not in text:
            raise AssertionError(f"configs/sim.toml no longer contains {old!r}")
        text = text.replace(old, new)
    if not sensors:
        text = text[:text.index("[[cameras]]")]
    text += (f'\n[mirror]\nbootstrap_servers = "{bootstrap}"\n'
             f'topics = ["{SEQ_TOPIC}", "camera.*", "lidar.top"]\n'
             f'transaction_interval = "300ms"\nsampling = {{ "lidar.*" = {LIDAR_EVERY} }}\n')
    path = tmp / ("sim-mirror.toml" if sensors else "drain-mirror.toml")
    path.write_text(text)
    return path


class WindowedDurableWriter(DurableWriter):
    """DurableWriter with at most ``window`` records unacknowledged (a burst, then its acks,
    then the next): stopping it never leaves a backlog that the producer's close() abandons
    after its timeout (it then closes its wake-up fd under the still running I/O thread,
    which dies of EBADF: seen with the one-record batches of the parent at 500 sends a
    second, each waiting for the broker's next flush)."""

    window = 50

    def _run(self) -> None:
        with Producer(self.endpoint, acks="durable", linger_ms=1, request_timeout_s=1.0, on_full="fail") as producer:
            first = 0
            while not self._stop.is_set():
                futures = []
                for i in range(first, first + self.window):
                    try:
                        future = producer.send(SEQ_TOPIC, str(i).encode(), headers={"i": str(i)})
                        future.add_done_callback(
                            lambda f, i=i: self.acked.append(i) if f.exception() is None else self._fail())
                        futures.append(future)
                    except BrokerError:
                        self._fail()
                first += self.window
                deadline = time.monotonic() + 10
                for future in futures:  # each is acked, or fails after request_timeout_s
                    try:
                        future.exception(max(0.0, deadline - time.monotonic()))
                    except concurrent.futures.TimeoutError:
                        break
                if not futures:
                    time.sleep(0.05)  # the appliance is down


def every_nth(topic: str) -> int:
    return LIDAR_EVERY if topic.startswith("lidar.") else 1


def mirror_position(endpoint: str) -> int:
    """Offset of faults.seq below which the mirror has committed to Kafka (group _mirror)."""
    with Admin(endpoint, timeout_s=2) as admin:
        return admin.group_offsets(MIRROR_GROUP).get((SEQ_TOPIC, 0), 0)


def appliance_processes(proc, config: Path) -> list[psutil.Process]:
    """Every live process started for this appliance, found by its config path (so a child
    that escaped the supervisor's process tree is found too)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if str(config) in " ".join(p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def summary(value) -> tuple[bytes, bytes | None]:
    """(SHA-1, the value itself if small): what two copies of a record are compared by."""
    value = bytes(value)
    return hashlib.sha1(value).digest(), value if len(value) <= 32 else None


def local_copy(endpoint: str, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, *summary) of every record of ``topic`` partition 0, without holding ~300 MB
    of point clouds."""
    return read_everything(endpoint, topic, keep=lambda r: (r.offset, *summary(r.value)))


def cloud_copy(bootstrap: str, topic: str, want: dict[int, int], timeout: float) -> list[tuple]:
    """Committed records of ``topic`` (read_committed), each Kafka offset once, as
    (partition, source offset, *summary, headers), once every partition ``p`` holds the
    record of source offset ``want[p]`` (the last one to ship) or the deadline passes (the
    caller's checks then fail and name what is missing)."""
    consumer = KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4()}",
                              "auto.offset.reset": "earliest", "enable.auto.commit": False,
                              "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in want])
    seen: dict[tuple[int, int], tuple] = {}
    top = dict.fromkeys(want, -1)
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if at_end >= set(want) and all(top[p] >= want[p] for p in want):
                        break
                    continue
                if msg.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    continue  # not created yet
                raise AssertionError(f"reading {topic}: {msg.error()}")
            at_end.discard(msg.partition())
            headers = dict(msg.headers() or [])
            source = int(headers["edge.source.offset"])
            top[msg.partition()] = max(top[msg.partition()], source)
            seen[(msg.partition(), msg.offset())] = (msg.partition(), source, *summary(msg.value()), headers)
    finally:
        consumer.close()
    return [seen[k] for k in sorted(seen)]


@pytest.mark.timeout(150 + 30 * ROUNDS)
def test_power_cuts_with_the_mirror_running_ship_everything_exactly_once(tmp_path, kafka_cluster):
    started = time.monotonic()
    data_dir = tmp_path / "data"
    endpoint = f"ipc://{data_dir}/broker.sock"
    vehicle = f"veh{uuid.uuid4().hex[:6]}"
    config = mirror_config(tmp_path, data_dir, vehicle, kafka_cluster.bootstrap_servers)
    log = tmp_path / "edge-up.log"
    seed = int(os.environ.get("EDGE_FAULT_SEED", "7"))
    rng = random.Random(seed)
    proc = start_appliance(config, data_dir, log)
    writer = None
    shipped_at_cut = at_risk = 0
    unshipped_at_cuts = []
    try:
        wait_for(lambda: "camera.front" in topic_ends(endpoint), 30, "the appliance to record")
        with Admin(endpoint) as admin:
            admin.create_topic(SEQ_TOPIC, 1, if_not_exists=True)
        writer = WindowedDurableWriter(endpoint).start()
        for round_no in range(ROUNDS):
            # the mirror (restarted after the last cut) ships again: its commit moves on
            floor = shipped_at_cut
            wait_for(lambda floor=floor: mirror_position(endpoint) > floor, 60,
                     f"the mirror to ship in round {round_no}")
            names = [" ".join(p.cmdline()) for p in appliance_processes(proc, config)]
            assert any(" mirror " in n for n in names), f"no mirror process under edge up: {names}"
            time.sleep(rng.uniform(0.3, 2.0))
            acked_at_cut = at_risk = len(writer.acked)
            shipped_at_cut = mirror_position(endpoint)
            unshipped_at_cuts.append(topic_ends(endpoint)[SEQ_TOPIC] - shipped_at_cut)
            power_cut(proc)
            survivors = appliance_processes(proc, config)
            for p in survivors:
                p.kill()
            assert not survivors, f"power cut {round_no}: processes survived: {[p.cmdline() for p in survivors]}"
            proc = start_appliance(config, data_dir, log)
            after = wait_for(lambda: (e := topic_ends(endpoint)) and SEQ_TOPIC in e and e, 30,
                             f"the appliance back after power cut {round_no}")
            assert after[SEQ_TOPIC] >= acked_at_cut, (after, acked_at_cut)
        # each power cut restarts the LiDAR driver from cold; on a loaded machine three short
        # lives recorded only ~60 clouds (6 sampled): record enough that sampling is exercised
        wait_for(lambda: topic_ends(endpoint).get("lidar.top", 0) >= MIN_SAMPLED * LIDAR_EVERY, 60,
                 f"the LiDAR to record {MIN_SAMPLED * LIDAR_EVERY} clouds")
        wait_for(lambda: mirror_position(endpoint) > shipped_at_cut, 60, "the mirror to ship after the last cut")
        writer.stop()
    finally:
        if writer is not None:
            writer.stop()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text(errors="replace")[-3000:]

    # catch up: the mirror ships the rest of the (now final) local logs; nothing records
    drain = start_appliance(mirror_config(tmp_path, data_dir, vehicle, kafka_cluster.bootstrap_servers, sensors=False),
                            data_dir, log)
    try:
        wait_for(lambda: SEQ_TOPIC in topic_ends(endpoint), 30, "the catch-up run's broker")
        local = {t: local_copy(endpoint, t) for t in MIRRORED}
        cloud = {t: cloud_copy(kafka_cluster.bootstrap_servers, f"vehicles.{vehicle}.{t}",
                               {0: max((o for o, *_ in local[t] if o % every_nth(t) == 0), default=-1)}, timeout=60)
                 for t in MIRRORED}
    finally:
        drain.send_signal(signal.SIGTERM)
        drain_code = drain.wait(60)
    assert drain_code == 0, log.read_text(errors="replace")[-3000:]

    problems, duplicates = [], 0
    for topic in MIRRORED:
        expected = [(0, offset, digest) for offset, digest, _ in local[topic] if offset % every_nth(topic) == 0]
        got = [(p, source, digest) for p, source, digest, _, _ in cloud[topic]]
        counts = collections.Counter((p, source) for p, source, _ in got)
        twice = sorted(k for k, n in counts.items() if n > 1)
        duplicates += len(twice)
        missing = sorted({(p, o) for p, o, _ in expected} - set(counts))
        foreign = [h for *_, h in cloud[topic]
                   if (h["edge.vehicle"], h["edge.source.topic"], h["edge.source.partition"])
                   != (vehicle.encode(), topic.encode(), b"0")]
        if len(expected) < MIN_SAMPLED:
            problems.append(f"{topic}: only {len(expected)} records to ship")
        if twice:
            problems.append(f"{topic}: {len(twice)} (partition, source offset) in Kafka twice, e.g. {twice[:5]}")
        if missing:
            problems.append(f"{topic}: {len(missing)} local records never reached Kafka, e.g. {missing[:5]}")
        if twice or missing:
            pass  # already named
        elif [g[:2] for g in got] != [e[:2] for e in expected]:
            problems.append(f"{topic}: Kafka holds records out of source offset order or not in the local log")
        elif got != expected:
            problems.append(f"{topic}: a record's value in Kafka differs from the local one")
        if foreign:
            problems.append(f"{topic}: {len(foreign)} records with wrong mirror headers, e.g. {foreign[0]}")
    in_cloud = [int(value) for _, _, _, value, _ in cloud[SEQ_TOPIC]]
    lost = sorted(set(writer.acked) - set(in_cloud))
    if in_cloud != sorted(set(in_cloud)):
        problems.append(f"{SEQ_TOPIC} in Kafka: values not strictly increasing")
    if lost:
        problems.append(f"{len(lost)} acknowledged-durable records not in Kafka, e.g. {lost[:5]}")
    print(f"\npower cuts with the mirror: {ROUNDS} rounds (seed {seed}), {at_risk} durable acks before the last cut "
          f"({len(writer.acked)} in all); in the local log but not yet committed to Kafka at each cut: "
          f"{unshipped_at_cuts}; {len(local[SEQ_TOPIC])} {SEQ_TOPIC} records in the local log, "
          f"{len(in_cloud)} in Kafka; "
          f"{len(lost)} lost, {duplicates} duplicates; cloud records: "
          + ", ".join(f"{t} {len(cloud[t])}" for t in MIRRORED) + f"; {time.monotonic() - started:.0f} s")
    assert not problems, "\n".join(problems)
    assert at_risk > 100 * ROUNDS, f"too few records at risk: {at_risk}"
