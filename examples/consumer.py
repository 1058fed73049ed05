"""Consume a topic in a consumer group with the Python client library (docs/CLIENT.md).

    python examples/consumer.py --endpoint ipc:///var/lib/edge/broker.sock --topic demo --group demo-readers

Joins the group (partitions are shared with its other members), starts at the group's
committed offsets (else the earliest), prints ``partition offset key value`` per record,
commits what it printed, and exits after ``--max-messages`` records or ``--timeout``
seconds without one. Run it again: it continues after the last committed record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from broker.client import Consumer
from broker.errors import BrokerError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("EDGE_ENDPOINT"), help="default: $EDGE_ENDPOINT")
    parser.add_argument("--topic", default="demo")
    parser.add_argument("--group", default="demo-readers")
    parser.add_argument("--max-messages", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds without a record before exiting")
    args = parser.parse_args()
    if not args.endpoint:
        parser.error("give --endpoint or set $EDGE_ENDPOINT (e.g. ipc:///var/lib/edge/broker.sock)")
    consumer = Consumer(args.endpoint, group=args.group, auto_offset_reset="earliest")
    seen = 0
    try:
        consumer.subscribe([args.topic])
        last = time.monotonic()
        while args.max_messages is None or seen < args.max_messages:
            records = consumer.poll(0.5)
            if not records:
                if time.monotonic() - last > args.timeout:
                    break
                continue
            last = time.monotonic()
            done: dict[tuple[str, int], int] = {}
            for record in records[: None if args.max_messages is None else args.max_messages - seen]:
                key = record.key.decode() if record.key is not None else "-"
                print(f"{record.partition} {record.offset} {key} {bytes(record.value).decode()}")
                done[(record.topic, record.partition)] = record.offset + 1  # next to read
                seen += 1
            consumer.commit(done)
    except BrokerError as exc:
        print(f"consumer: {exc.message}", file=sys.stderr)
        return 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
