"""``edge consume TOPIC``: print records as JSON lines (or raw values), optionally in a group."""

from __future__ import annotations

import base64
import json
import sys
import time

from .common import add_endpoint_args, parse_time_ns, resolve_endpoint


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("consume", help="print records of a topic")
    parser.add_argument("topic")
    parser.add_argument("--partition", type=int, help="only this partition (default: all)")
    parser.add_argument("--from", dest="start", default="earliest",
                        help="earliest | latest | OFFSET | ISO-8601 time | -DURATION (e.g. -10m)")
    parser.add_argument("--group", help="consumer group: start at its committed offsets, commit what was printed")
    parser.add_argument("--limit", type=int, help="exit after this many records")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds without a new record")
    parser.add_argument("--format", choices=["json", "value"], default="json")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def record_json(record) -> str:
    value = bytes(record.value)
    try:
        text, b64 = value.decode("utf-8"), None
    except UnicodeDecodeError:
        text, b64 = None, base64.b64encode(value).decode()
    body = {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp": record.timestamp,
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "headers": {k: bytes(v).decode("utf-8", "replace") for k, v in record.headers.items()},
        "size": len(value), "value": text,
    }
    if b64 is not None:
        body["value_b64"] = b64
    return json.dumps(body)


def run(args) -> int:
    from broker.client import Admin, Consumer

    endpoint = resolve_endpoint(args)
    with Admin(endpoint) as admin:
        count = len(admin.describe_topic(args.topic)["partitions"])
    partitions = [(args.topic, args.partition)] if args.partition is not None else [(args.topic, p) for p in range(count)]
    reset = "latest" if args.start == "latest" else "earliest"
    consumer = Consumer(endpoint, group=args.group, auto_offset_reset=reset, max_wait_ms=200)
    printed: dict[tuple[str, int], int] = {}
    try:
        consumer.assign(partitions)
        committed = consumer.committed(partitions) if args.group else {}
        for tp in partitions:
            if tp in committed:
                continue
            if args.start == "earliest":
                consumer.seek_to_beginning([tp])
            elif args.start == "latest":
                consumer.seek_to_end([tp])
            elif args.start.isdigit() and len(args.start) < 16:
                consumer.seek(tp[0], tp[1], int(args.start))
            else:
                consumer.seek_to_time(parse_time_ns(args.start), [tp])
        seen = 0
        last_record = time.monotonic()
        out = sys.stdout.buffer
        while args.limit is None or seen < args.limit:
            records = consumer.poll(0.5)
            if not records:
                if args.timeout is not None and time.monotonic() - last_record >= args.timeout:
                    break
                continue
            last_record = time.monotonic()
            for record in records:
                if args.limit is not None and seen >= args.limit:
                    break
                if args.format == "value":
                    out.write(bytes(record.value) + b"\n")
                else:
                    out.write(record_json(record).encode() + b"\n")
                printed[(record.topic, record.partition)] = record.offset + 1
                seen += 1
            out.flush()
        if args.group and printed:
            consumer.commit(printed)
    finally:
        consumer.close()
    return 0
