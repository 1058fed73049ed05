"""Produce records to the appliance's broker with the Python client library (docs/CLIENT.md).

    python examples/producer.py --endpoint ipc:///var/lib/edge/broker.sock --topic demo --count 10

Each record has a key, a header and a capture time; ``acks="durable"`` waits until the
broker has fsynced the batch (the record survives a power cut). Prints one line per
acknowledged record: ``partition offset key``. Exit 1 if any record was not acknowledged.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from broker.client import Admin, Producer
from broker.errors import BrokerError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("EDGE_ENDPOINT"), help="default: $EDGE_ENDPOINT")
    parser.add_argument("--topic", default="demo")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    if not args.endpoint:
        parser.error("give --endpoint or set $EDGE_ENDPOINT (e.g. ipc:///var/lib/edge/broker.sock)")
    try:
        with Admin(args.endpoint) as admin:
            admin.create_topic(args.topic, partitions=2, if_not_exists=True)
        with Producer(args.endpoint, acks="durable", linger_ms=5) as producer:
            futures = [
                producer.send(args.topic, f"reading {i}".encode(), key=f"sensor-{i % 2}".encode(),
                              headers={"unit": "celsius"}, timestamp_ns=time.time_ns())
                for i in range(args.count)
            ]
            producer.flush(30)
            for i, future in enumerate(futures):
                result = future.result(30)  # raises the broker's typed error if it failed
                print(f"{result.partition} {result.offset} sensor-{i % 2}")
    except BrokerError as exc:
        print(f"producer: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
