"""``edge up`` on configs/sim.toml serves Kafka clients (the shipped 127.0.0.1:9092, here a
free port): kcat reads the camera driver's JPEG frames with their headers. (``-c N``, not
``-e``: librdkafka reports the partition end only on an empty fetch, which a camera writing
at its frame rate, to Kafka or to us, does not leave time for.)"""

from __future__ import annotations

import subprocess

from broker.client import Admin
from tests.integration.test_edge_up import start_up, stop, wait_for


def test_kcat_reads_camera_frames_with_headers_from_edge_up(tmp_path):
    data_dir = tmp_path / "data"
    endpoint = f"ipc://{data_dir}/broker.sock"
    proc = start_up(data_dir)
    try:
        def kafka_address():
            with Admin(endpoint, timeout_s=2) as admin:
                meta = admin.metadata()
            ready = meta["topics"].get("camera.front", {}).get("partitions", [{}])[0].get("next_offset", 0) >= 2
            return ready and meta["broker"]["kafka"]["listen"]

        bootstrap = wait_for(kafka_address, 40, "camera frames and the Kafka listener")
        out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "camera.front", "-o", "-2", "-c", "2", "-f",
                              "%o %S %h\\n"], capture_output=True, timeout=30, check=False)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.decode().splitlines()
        assert len(lines) == 2
        for line in lines:
            _offset, size, headers = line.split(" ", 2)
            assert int(size) > 1000 and "encoding=jpeg" in headers, line
        frame = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "camera.front", "-o", "-1", "-c", "1", "-f", "%s"],
                               capture_output=True, timeout=30, check=False).stdout
        assert frame[:3] == b"\xff\xd8\xff"  # a JPEG, byte for byte
    finally:
        code, out = stop(proc)
    assert code == 0, out[-2000:]
