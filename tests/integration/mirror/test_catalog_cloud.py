"""The drive catalog goes to the cloud with the records (``[mirror] catalog``), so a drive is
replayed and exported from the real Kafka of tests/kafka by name, with no vehicle broker to
ask: exactly the drive's records, by the vehicle's offsets."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader

from broker.client import Admin, Producer
from edge.drives import DRIVES_TOPIC, record_event

from .conftest import local_records
from .test_mirror import BASE_NS, cloud_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
EDGE = [sys.executable, "-m", "edge.cli"]


def produce_local(endpoint: str, topic: str, n: int, start: int = 0) -> None:
    """Small JPEG camera frames (export writes them as images), capture time BASE_NS + i us."""
    with Producer(endpoint, linger_ms=2) as producer:
        for i in range(start, start + n):
            frame = cv2.imencode(".jpg", np.full((24, 32, 3), i, dtype=np.uint8))[1].tobytes()
            producer.send(topic, frame, key=b"k%d" % i, timestamp_ns=BASE_NS + i * 1000,
                          headers={"encoding": "jpeg", "width": "32", "height": "24", "seq": str(i)})
        producer.flush(30)


def test_replay_and_export_a_drive_from_the_cloud_catalog(broker, kafka_single, mirror_single, tmp_path):
    make, vehicle = mirror_single
    produce_local(broker.endpoint, "camera.front", 30)
    record_event(broker.endpoint, "start", "drive-cloud1", vehicle=vehicle)
    produce_local(broker.endpoint, "camera.front", 40, start=30)
    record_event(broker.endpoint, "stop", "drive-cloud1", vehicle=vehicle)
    produce_local(broker.endpoint, "camera.front", 30, start=70)
    mirror = make(topics='["camera.*"]', transaction_interval='"200ms"').start()
    try:
        assert len(cloud_records(kafka_single, f"vehicles.{vehicle}.camera.front", 100)) == 100
        assert len(cloud_records(kafka_single, f"vehicles.{vehicle}.{DRIVES_TOPIC}", 2)) == 2
    finally:
        assert mirror.stop() == 0, mirror.log()
    with Admin(broker.endpoint) as admin:  # the vehicle's catalog is gone: only the cloud knows the drive
        admin.delete_topic(DRIVES_TOPIC)

    cloud = ["--kafka", kafka_single.bootstrap_servers, "--vehicle", vehicle, "--drive", "drive-cloud1"]
    done = subprocess.run([*EDGE, "replay", *cloud, "--topics", "camera.front", "--max", "--prefix", "cloud.",
                           "--no-control", "--quiet", "--endpoint", broker.endpoint],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["records"] == 40
    got = local_records(broker.endpoint, [("cloud.camera.front", 0)], 40)
    assert [int(r.headers["seq"]) for r in got] == list(range(30, 70))

    out = tmp_path / "drive.mcap"
    done = subprocess.run([*EDGE, "export", *cloud, "--topics", "camera.front", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120, check=False, env=_no_endpoint())
    assert done.returncode == 0, done.stderr
    with open(out, "rb") as fh:
        times = [message.log_time for _s, _c, message in make_reader(fh).iter_messages()]
    assert times == [BASE_NS + i * 1000 for i in range(30, 70)]

    done = subprocess.run([*EDGE, "replay", "--kafka", kafka_single.bootstrap_servers, "--vehicle", vehicle,
                           "--drive", "drive-nope", "--topics", "camera.front", "--max", "--no-control",
                           "--endpoint", broker.endpoint],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "no drive named 'drive-nope' in the catalog of Kafka" in done.stderr, done.stderr


def _no_endpoint() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "EDGE_ENDPOINT"}
