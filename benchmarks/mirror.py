"""Mirror benchmark: MB/s shipped to a local single-node Kafka, next to the raw producer.

    python -m benchmarks.mirror [--quick]

For 64 KiB and 1 MiB records: (1) confluent-kafka's producer alone (acks=all, idempotent,
no compression: the payloads are random) writing N records to a topic, and (2) ``edge
mirror`` shipping the same N records from the local broker to the cloud topic (timed from
the mirror's start to the last record visible read_committed). Goal: mirror >= 90% of raw.
The mirror's figure is given twice: from the process start (imports, transactions init,
resume-offset reads included) and steady (from the first committed records to the last).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka import TopicPartition

from broker.client import Producer

from .broker import start_broker, stop_broker
from .common import print_table, save_results, work_dir

MiB = 1024 * 1024


def raw_produce(bootstrap: str, topic: str, size: int, count: int) -> float:
    producer = KafkaProducer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                              "compression.type": "none", "linger.ms": 20, "message.max.bytes": 8 * MiB,
                              "queue.buffering.max.kbytes": 262144})
    payload = os.urandom(size)
    started = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(300)
    return size * count / (time.perf_counter() - started) / 1e6


def committed_count(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": "bench", "isolation.level": "read_committed"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return high - low
    except Exception:  # not created yet
        return 0
    finally:
        consumer.close()


def mirror_rate(bootstrap: str, endpoint: str, data_dir: Path, topic: str, size: int,
                count: int) -> tuple[float, float]:
    with Producer(endpoint, linger_ms=2, max_batch_bytes=8 * MiB) as producer:
        payload = os.urandom(size)
        for _ in range(count):
            producer.send(topic, payload)
        producer.flush(300)
    config = Path(tempfile.mkstemp(suffix=".toml")[1])
    vehicle = f"bench{int(time.time())}"
    config.write_text(f'[vehicle]\nid = "{vehicle}"\n[broker]\ndata_dir = "{data_dir}"\n[mirror]\n'
                      f'bootstrap_servers = "{bootstrap}"\ntopics = ["{topic}"]\nreplication_factor = 1\n'
                      f'transaction_interval = "1s"\n[mirror.kafka]\n"compression.type" = "none"\n')
    dest = f"vehicles.{vehicle}.{topic}"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "mirror", "--config", str(config),
                             "--endpoint", endpoint, "--log-level", "WARNING"])
    first: tuple[float, int] | None = None
    try:
        while (done := committed_count(bootstrap, dest)) < count:
            if first is None and done > 0:
                first = (time.perf_counter(), done)
            time.sleep(0.05)
        ended = time.perf_counter()
    finally:
        proc.terminate()
        proc.wait(60)
    whole = size * count / (ended - started) / 1e6
    if first is None or ended - first[0] <= 0:  # everything landed in one transaction
        return whole, whole
    return whole, size * (count - first[1]) / (ended - first[0]) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.kafka.harness import KafkaCluster

    base = work_dir("mirror")
    cluster = KafkaCluster(nodes=1, base_dir=base / "kafka").start()
    broker, endpoint = start_broker(base / "data")
    rows, results = [], {}
    try:
        for size, total_mb in ((64 * 1024, 128 if args.quick else 512), (MiB, 128 if args.quick else 512)):
            count = total_mb * MiB // size
            cluster.create_topic(f"raw{size}", 1, 1, {"max.message.bytes": str(8 * MiB)})
            raw = raw_produce(cluster.bootstrap_servers, f"raw{size}", size, count)
            whole, steady = mirror_rate(cluster.bootstrap_servers, endpoint, base / "data", f"bench.m{size}", size,
                                        count)
            label = "64 KiB" if size < MiB else "1 MiB"
            rows += [(f"raw producer {label}", f"{raw:,.0f} MB/s", "confluent-kafka alone"),
                     (f"mirror {label}, from start", f"{whole:,.0f} MB/s", f"{whole / raw:.0%} of raw"),
                     (f"mirror {label}, steady", f"{steady:,.0f} MB/s", f"{steady / raw:.0%} of raw (goal >= 90%)")]
            results[label] = {"raw_mb_s": raw, "mirror_mb_s": whole, "mirror_steady_mb_s": steady, "records": count}
    finally:
        stop_broker(broker)
        cluster.stop()
        work_dir("mirror")
    print_table("mirror to a local single-node Kafka (same run, same payloads)", rows)
    print(f"\nresults: {save_results('mirror', results)}")


if __name__ == "__main__":
    main()
