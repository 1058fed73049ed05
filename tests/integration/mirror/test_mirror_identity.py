"""Resume counts only this vehicle's records of this data directory's epoch, and trusts the
destination only while it still holds them (issue 28 cases 1-3), against a real Kafka node.

Each check counts, per destination partition, the records of one vehicle and epoch: every
source offset once, in order, with the payload it had locally (0 lost, duplicated,
reordered or altered)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from broker.client import Admin
from tests.support.broker_process import BrokerProcess

from .conftest import mirror_factory
from .test_mirror import cloud_records, produce_local

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def shipped_offsets(records, vehicle: str, epoch: bytes | None = None) -> list[int]:
    """Source offsets of one vehicle's (and epoch's) records, in destination order, each
    checked to carry the payload produce_local wrote for its offset."""
    out = []
    for m in records:
        headers = dict(m.headers())
        if headers["edge.vehicle"] != vehicle.encode() or (epoch is not None and headers["edge.epoch"] != epoch):
            continue
        offset = int(headers["edge.source.offset"])
        assert m.value()[:8] == f"{offset:08d}".encode(), f"altered record at source offset {offset}"
        out.append(offset)
    return out


def epochs_of(records, vehicle: str) -> list[bytes]:
    seen: list[bytes] = []
    for m in records:
        headers = dict(m.headers())
        if headers["edge.vehicle"] == vehicle.encode() and headers["edge.epoch"] not in seen:
            seen.append(headers["edge.epoch"])
    return seen


def ship(make, topic_count_dest, expected, cluster, **settings):
    """Start a mirror, wait until ``expected`` records are in the destination, stop it."""
    mirror = make(topics='["camera.*"]', transaction_interval='"200ms"', **settings).start()
    try:
        got = cloud_records(cluster, topic_count_dest, expected, timeout=60)
    finally:
        assert mirror.stop() == 0, mirror.log()
    return got, mirror


def test_two_vehicles_sharing_a_destination_each_ship_everything(tmp_path, broker, kafka_single, mirror_single):
    make_a, vehicle_a = mirror_single
    dest = f"fleet{uuid.uuid4().hex[:6]}.{{topic}}"
    produce_local(broker.endpoint, "camera.front", 300)
    got, _ = ship(make_a, dest.format(topic="camera.front"), 300, kafka_single,
                  destination=f'"{dest}"', shared_destination="true")
    assert shipped_offsets(got, vehicle_a) == list(range(300))
    (tmp_path / "b").mkdir()
    with BrokerProcess(tmp_path / "b" / "data") as broker_b:
        produce_local(broker_b.endpoint, "camera.front", 100)
        make_b, vehicle_b, started = mirror_factory(tmp_path, broker_b, kafka_single)
        try:
            got, mirror_b = ship(make_b, dest.format(topic="camera.front"), 400, kafka_single,
                                 destination=f'"{dest}"', shared_destination="true")
        finally:
            for proc in started:
                proc.kill()
    # before: B resumed from A's last offset (299 + 1) and shipped none of its 100 records
    assert shipped_offsets(got, vehicle_b) == list(range(100)), mirror_b.log()
    assert shipped_offsets(got, vehicle_a) == list(range(300))


def test_replaced_data_directory_starts_a_new_epoch_and_ships_everything(tmp_path, broker, kafka_single):
    vehicle = f"veh{uuid.uuid4().hex[:6]}"
    dest = f"vehicles.{vehicle}.camera.front"
    make, _, started = mirror_factory(tmp_path, broker, kafka_single, vehicle)
    produce_local(broker.endpoint, "camera.front", 200)
    got, _ = ship(make, dest, 200, kafka_single)
    old_epoch = dict(got[0].headers())["edge.epoch"]
    assert shipped_offsets(got, vehicle, old_epoch) == list(range(200))
    (tmp_path / "new").mkdir()
    with BrokerProcess(tmp_path / "new" / "data") as new_disk:  # same vehicle id, new disk
        produce_local(new_disk.endpoint, "camera.front", 120)
        make_new, _, started_new = mirror_factory(tmp_path, new_disk, kafka_single, vehicle)
        try:
            got, mirror = ship(make_new, dest, 320, kafka_single)
        finally:
            for proc in started + started_new:
                proc.kill()
    epochs = epochs_of(got, vehicle)
    assert len(epochs) == 2 and epochs[0] == old_epoch, mirror.log()
    # before: resume took the old disk's 200, cut it to the new end (120) and shipped nothing
    assert shipped_offsets(got, vehicle, epochs[1]) == list(range(120)), mirror.log()
    assert shipped_offsets(got, vehicle, old_epoch) == list(range(200))


def test_emptied_destination_resumes_from_the_local_commit(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    dest = f"vehicles.{vehicle}.camera.front"
    produce_local(broker.endpoint, "camera.front", 200)
    got, _ = ship(make, dest, 200, kafka_single)
    assert shipped_offsets(got, vehicle) == list(range(200))
    admin = AdminClient({"bootstrap.servers": kafka_single.bootstrap_servers})
    high = got[-1].offset() + 2  # the last record and its commit marker
    for future in admin.delete_records([TopicPartition(dest, 0, high)]).values():
        future.result(30)
    produce_local(broker.endpoint, "camera.front", 50, start=200)
    mirror = make(topics='["camera.*"]', transaction_interval='"200ms"').start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "mirror_resume_from_local" not in mirror.log():
            time.sleep(0.2)
        after = cloud_records(kafka_single, dest, 50, timeout=60)
    finally:
        assert mirror.stop() == 0, mirror.log()
    # before: the 200 records were shipped again although `_mirror` said 200
    assert shipped_offsets(after, vehicle) == list(range(200, 250)), mirror.log()
    log = mirror.log()
    assert "mirror_resume_from_local" in log and "retention or DeleteRecords" in log, log


def test_two_vehicles_share_a_destination_through_mirror_kills_and_a_kafka_node_loss(tmp_path, broker, kafka_cluster):
    """Three nodes (min.insync.replicas 2): both vehicles ship into the same two-partition
    topics at once; vehicle A's mirror is SIGKILLed and a Kafka node killed meanwhile. Per
    vehicle and partition: every offset once, in order, unaltered."""
    dest = f"fleet{uuid.uuid4().hex[:6]}.{{topic}}"
    settings = {"topics": '["lidar.*"]', "transaction_interval": '"300ms"', "destination": f'"{dest}"',
                    "shared_destination": "true"}
    (tmp_path / "b").mkdir()
    with BrokerProcess(tmp_path / "b" / "data") as broker_b:
        brokers = {"a": broker, "b": broker_b}
        makers = {name: mirror_factory(tmp_path, b, kafka_cluster) for name, b in brokers.items()}
        for b in brokers.values():
            with Admin(b.endpoint) as admin:
                admin.create_topic("lidar.top", partitions=2)
        try:
            for p in (0, 1):  # payloads numbered by source offset
                produce_local(broker.endpoint, "lidar.top", 300, partition=p)
                produce_local(broker_b.endpoint, "lidar.top", 200, partition=p)
            mirrors = {name: make(**settings).start() for name, (make, _v, _s) in makers.items()}
            time.sleep(2.0)
            kafka_cluster.kill_node(1)
            mirrors["a"].kill()
            produce_local(broker.endpoint, "lidar.top", 100, start=300, partition=0)
            mirrors["a"] = makers["a"][0](**settings).start()
            time.sleep(2.0)
            kafka_cluster.start_node(1)
            kafka_cluster.wait_ready(120)
            got = cloud_records(kafka_cluster, dest.format(topic="lidar.top"), 1100, timeout=120, partitions=2)
            for proc in mirrors.values():
                assert proc.stop() == 0, proc.log()
        finally:
            kafka_cluster.start_node(1)
            for _make, _vehicle, started in makers.values():
                for proc in started:
                    proc.kill()
    for name, ends in (("a", [400, 300]), ("b", [200, 200])):
        vehicle = makers[name][1]
        for p in (0, 1):
            offsets = shipped_offsets([m for m in got if m.partition() == p], vehicle)
            assert offsets == list(range(ends[p])), (name, p, offsets[:5], len(offsets))
    kafka_cluster.wait_ready(120)


def test_own_records_beyond_the_scan_bound_fall_back_to_the_local_commit(tmp_path, broker, kafka_single,
                                                                          mirror_single):
    """A busy shared destination: 100 of vehicle B's records after A's last one, A scans back
    only 20: A resumes from its `_mirror` commit (logged with the reason), ships nothing twice."""
    make_a, vehicle_a = mirror_single
    dest = f"fleet{uuid.uuid4().hex[:6]}.{{topic}}"
    settings = {"destination": f'"{dest}"', "shared_destination": "true", "resume_scan_records": "20"}
    produce_local(broker.endpoint, "camera.front", 50)
    ship(make_a, dest.format(topic="camera.front"), 50, kafka_single, **settings)
    (tmp_path / "b").mkdir()
    with BrokerProcess(tmp_path / "b" / "data") as broker_b:
        produce_local(broker_b.endpoint, "camera.front", 100)
        make_b, _vehicle_b, started = mirror_factory(tmp_path, broker_b, kafka_single)
        try:
            ship(make_b, dest.format(topic="camera.front"), 150, kafka_single, **settings)
        finally:
            for proc in started:
                proc.kill()
    produce_local(broker.endpoint, "camera.front", 10, start=50)
    got, mirror = ship(make_a, dest.format(topic="camera.front"), 160, kafka_single, **settings)
    assert shipped_offsets(got, vehicle_a) == list(range(60)), mirror.log()
    assert "mirror_resume_from_local" in mirror.log() and "scan bound" in mirror.log(), mirror.log()


def test_an_upgraded_mirror_adopts_the_records_shipped_before_epochs(broker, kafka_single, mirror_single):
    """Records shipped by a mirror without epochs (no `edge.epoch`) from this data directory,
    whose `_mirror` group says 30: the first epoch adopts them and ships from 30, not 0 (the
    local commit alone would also say 30; the adoption keeps the destination's evidence)."""
    from confluent_kafka import Producer as KafkaProducer

    make, vehicle = mirror_single
    dest = f"vehicles.{vehicle}.camera.front"
    produce_local(broker.endpoint, "camera.front", 40)
    old_mirror = KafkaProducer({"bootstrap.servers": kafka_single.bootstrap_servers})
    for i in range(30):
        old_mirror.produce(dest, f"{i:08d}".encode().ljust(1000, b"."), key=b"k%d" % i, partition=0, headers=[
            ("edge.vehicle", vehicle.encode()), ("edge.source.topic", b"camera.front"),
            ("edge.source.partition", b"0"), ("edge.source.offset", str(i).encode())])
    old_mirror.flush(30)
    with Admin(broker.endpoint) as admin:
        admin.commit_offsets("_mirror", {("camera.front", 0): 30})
    got, mirror = ship(make, dest, 40, kafka_single)
    # without the adoption: a new epoch would ship offsets 0..39 again (70 records)
    assert shipped_offsets(got, vehicle) == list(range(40)), mirror.log()
    assert "adopts_unmarked=True" in mirror.log()
