"""``edge produce TOPIC``: one record per stdin line, or one binary record from a file."""

from __future__ import annotations

import argparse
import sys

from . import Subparsers
from .common import add_endpoint_args, parse_key_values, readable_file, resolve_endpoint, time_arg


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("produce", help="produce records from stdin lines or a file")
    parser.add_argument("topic")
    parser.add_argument("--key", help="record key (UTF-8)")
    parser.add_argument("--partition", type=int, help="explicit partition (default: by key, else 0/round robin)")
    parser.add_argument("--header", action="append", metavar="KEY=VALUE", help="record header (repeatable)")
    parser.add_argument("--acks", choices=["none", "written", "durable"], default="written")
    parser.add_argument("--timestamp", type=time_arg, metavar="TIME",
                        help="the records' time (Kafka's CreateTime): ISO-8601, epoch ns or -DURATION "
                             "(default: now, per record)")
    parser.add_argument("--value-file", type=readable_file, help="send this file's bytes as one record")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for acknowledgements")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from broker.client import Producer
    from broker.errors import BrokerError

    headers = parse_key_values(args.header, "--header") or None
    key = args.key.encode() if args.key is not None else None
    producer = Producer(resolve_endpoint(args), acks=args.acks, linger_ms=2, request_timeout_s=args.timeout)
    futures = []
    try:
        if args.value_file:
            with open(args.value_file, "rb") as f:
                futures.append(producer.send(args.topic, f.read(), key=key, headers=headers, partition=args.partition,
                                             timestamp_ns=args.timestamp))
        else:
            for line in sys.stdin.buffer:
                futures.append(producer.send(args.topic, line.rstrip(b"\r\n"), key=key, headers=headers,
                                             partition=args.partition, timestamp_ns=args.timestamp))
        producer.flush(args.timeout)
    except BrokerError as exc:
        print(f"edge produce: {exc.message}", file=sys.stderr)
    finally:
        producer.close(timeout=1.0)
    ok: dict[int, list[int | None]] = {}  # offsets are None with acks=none
    failed: list[BaseException | None] = []
    for future in futures:
        error = future.exception() if future.done() else None
        if not future.done() or error is not None:
            failed.append(error)
            continue
        result = future.result()
        ok.setdefault(result.partition, []).append(result.offset)
    for partition, offsets in sorted(ok.items()):
        real = [o for o in offsets if o is not None]
        where = f"offsets {min(real)}..{max(real)}" if real else "(acks=none: offsets unknown)"
        print(f"produced {len(offsets)} record(s) to {args.topic} partition {partition} {where}", file=sys.stderr)
    if failed:
        reason = next((str(e) for e in failed if e is not None), "not acknowledged")
        print(f"edge produce: {len(failed)} record(s) not acknowledged ({args.acks}): {reason}", file=sys.stderr)
        return 1
    return 0
