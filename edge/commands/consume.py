"""``edge consume TOPIC``: print records as JSON lines (or raw values), optionally in a group.

As Kafka's console consumer: ``--group`` joins the consumer group (partitions are shared with
the group's other members, rebalanced as they come and go), starts at the group's committed
offsets (else ``--from earliest|latest``) and commits what was printed every few seconds,
when partitions move to another member, and at exit (``--max-messages``, ``--timeout``,
Ctrl-C: exit 130, SIGTERM: 143). A broker restart is waited out (one line on stderr);
records are neither skipped nor printed twice. Offsets that are no longer in the log (retention, crash
recovery, a re-created topic) are said on stderr with the range skipped; with
``--offset-reset error`` the command stops there instead (exit 3).
"""

from __future__ import annotations

import base64
import json
import signal
import sys
import time

from .common import add_endpoint_args, parse_time_ns, resolve_endpoint


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("consume", help="print records of a topic")
    parser.add_argument("topic")
    parser.add_argument("--partition", type=int, help="only this partition (default: all)")
    parser.add_argument("--from", dest="start", default="earliest",
                        help="earliest | latest | OFFSET | ISO-8601 time | -DURATION (e.g. -10m)")
    parser.add_argument("--group", help="consumer group to join: start at its committed offsets, commit what was printed")
    parser.add_argument("--max-messages", "--limit", dest="limit", type=int, help="exit after this many records")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds without a new record")
    parser.add_argument("--offset-reset", choices=["earliest", "latest", "error"], default="earliest",
                        help="a position no longer in the log: go on at the log start / end (said on stderr), "
                             "or stop with exit 3")
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


COMMIT_INTERVAL_MS = 5000
EXIT_OFFSET_RESET = 3


def _say(message: str) -> None:
    sys.stderr.write(f"edge consume: {message}\n")
    sys.stderr.flush()


def _start_positions(consumer, args, partitions) -> None:
    for tp in partitions:
        if args.start == "earliest":
            consumer.seek_to_beginning([tp])
        elif args.start == "latest":
            consumer.seek_to_end([tp])
        elif args.start.isdigit() and len(args.start) < 16:
            consumer.seek(tp[0], tp[1], int(args.start))
        else:
            consumer.seek_to_time(parse_time_ns(args.start), [tp])


def run(args) -> int:
    from broker.client import Admin, Consumer
    from broker.errors import BrokerUnavailableError, OffsetOutOfRangeError

    endpoint = resolve_endpoint(args)
    if args.group and (args.partition is not None or args.start not in ("earliest", "latest")):
        raise SystemExit("edge consume: with --group the group's committed offsets say where to start; "
                         "--partition and --from OFFSET/TIME cannot be combined with it "
                         "(--from earliest|latest applies to partitions the group has not committed)")
    with Admin(endpoint) as admin:
        count = len(admin.describe_topic(args.topic)["partitions"])
    reset = args.offset_reset
    if args.group and reset != "error":
        reset = args.start
    consumer = Consumer(endpoint, group=args.group, auto_offset_reset=reset, max_wait_ms=200,
                        on_reset=lambda event: _say(event.describe()),
                        auto_commit_interval_ms=COMMIT_INTERVAL_MS if args.group else None)
    seen = 0
    batch: list = []
    printed_in_batch = 0
    stop: list[int] = []

    def interrupted(signum, _frame) -> None:
        if stop:
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        stop.append(signum)  # checked between records, so a record is printed and counted whole

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.group:
            consumer.subscribe([args.topic])
        else:
            partitions = ([(args.topic, args.partition)] if args.partition is not None
                          else [(args.topic, p) for p in range(count)])
            consumer.assign(partitions)
            _start_positions(consumer, args, partitions)
        last_record = time.monotonic()
        waiting_said = False
        out = sys.stdout.buffer
        while (args.limit is None or seen < args.limit) and not stop:
            try:
                batch, printed_in_batch = consumer.poll(0.5), 0
            except OffsetOutOfRangeError as exc:
                _say(str(exc))
                return EXIT_OFFSET_RESET
            except BrokerUnavailableError as exc:
                if not exc.retriable:
                    raise
                batch = []  # the consumer goes on from its positions at the next poll
            if consumer.broker_lost_since is not None and not waiting_said:
                _say(f"broker at {endpoint} not reachable; retrying from the current positions")
                waiting_said = True
            elif consumer.broker_lost_since is None and waiting_said:
                _say("broker back; continuing")
                waiting_said = False
            if not batch:
                if args.timeout is not None and time.monotonic() - last_record >= args.timeout:
                    break
                continue
            last_record = time.monotonic()
            for record in batch:
                if (args.limit is not None and seen >= args.limit) or stop:
                    break
                if args.format == "value":
                    out.write(bytes(record.value) + b"\n")
                else:
                    out.write(record_json(record).encode() + b"\n")
                printed_in_batch += 1
                seen += 1
            out.flush()
    finally:
        # records returned but not printed (--max-messages, Ctrl-C) are not committed
        for record in reversed(batch[printed_in_batch:]):
            consumer.seek(record.topic, record.partition, record.offset)
        consumer.close()  # commits the positions (group mode)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + stop[0] if stop else 0  # 130 after Ctrl-C, 143 after SIGTERM
