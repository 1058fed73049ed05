"""``edge consume TOPIC``: print records as JSON lines (or raw values), optionally in a group.

As Kafka's console consumer: ``--group`` joins the consumer group (partitions are shared with
the group's other members, rebalanced as they come and go), starts at the group's committed
offsets (else ``--from earliest|latest``) and commits what was printed every few seconds,
when partitions move to another member, and at exit (``--max-messages``, ``--timeout``,
Ctrl-C: exit 130, SIGTERM: 143). A broker restart is waited out (one line on stderr);
records are neither skipped nor printed twice. Offsets that are no longer in the log (retention, crash
recovery, a re-created topic) are said on stderr with the range skipped; with
``--offset-reset error`` the command stops there instead (exit 3).

Several topics, or shell patterns (``edge consume 'camera.*' lidar.top``, or ``--include``
as kafka-console-consumer's), are read at once; ``--merge-by-time`` prints them in capture
time order: a record is held until every other partition has a later record waiting or has
none left (caught up with its log end), so a bounded read is fully ordered and a live one
is ordered among what has arrived.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import heapq
import json
import signal
import sys
import time
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

from . import Subparsers
from .common import (
    OFFSET_DIGITS_MAX,
    add_endpoint_args,
    non_negative_int,
    parse_time_ns,
    positive_float,
    resolve_endpoint,
)
from .failures import UsageError

if TYPE_CHECKING:  # the broker client loads when a command runs, not when the parser is built
    from broker.client import Admin, Consumer
    from broker.records import Record

ENDS_REFRESH_S = 0.5


def start_arg(text: str) -> str:
    """argparse type of --from: checked now (a bad time is a usage error before connecting)."""
    if text in ("earliest", "latest") or (text.isdigit() and len(text) <= OFFSET_DIGITS_MAX):
        return text
    try:
        parse_time_ns(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("consume", help="print records of topics (names or patterns)")
    parser.add_argument("topics", nargs="*", metavar="TOPIC", help="topic names or shell patterns (camera.*)")
    parser.add_argument("--include", action="append", default=[], metavar="PATTERN",
                        help="also the topics matching this shell pattern (repeatable)")
    parser.add_argument("--merge-by-time", action="store_true",
                        help="print the records of all partitions and topics in capture-time order")
    parser.add_argument("--partition", type=non_negative_int, help="only this partition (default: all; one topic)")
    parser.add_argument("--from", dest="start", default="earliest", type=start_arg,
                        help="earliest | latest | OFFSET | ISO-8601 time | -DURATION (e.g. -10m)")
    parser.add_argument("--group",
                        help="consumer group to join: start at its committed offsets, commit what was printed")
    parser.add_argument("--max-messages", "--limit", dest="limit", type=non_negative_int,
                        help="exit after this many records")
    parser.add_argument("--timeout", type=positive_float, help="exit after this many seconds without a new record")
    parser.add_argument("--offset-reset", choices=["earliest", "latest", "error"], default="earliest",
                        help="a position no longer in the log: go on at the log start / end (said on stderr), "
                             "or stop with exit 3")
    parser.add_argument("--format", choices=["json", "value"], default="json")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def record_json(record: Record) -> str:
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


def _start_positions(consumer: Consumer, args: argparse.Namespace, partitions: list[tuple[str, int]]) -> None:
    for tp in partitions:
        if args.start == "earliest":
            consumer.seek_to_beginning([tp])
        elif args.start == "latest":
            consumer.seek_to_end([tp])
        elif args.start.isdigit() and len(args.start) <= OFFSET_DIGITS_MAX:
            consumer.seek(tp[0], tp[1], int(args.start))
        else:
            consumer.seek_to_time(parse_time_ns(args.start), [tp])


def resolve_topics(admin: Admin, names: list[str], includes: list[str]) -> dict[str, int]:
    """Partition count of every topic named or matched (internal ``_`` topics only by a
    pattern that starts with ``_``)."""
    from broker.errors import UnknownTopicError

    topics = admin.list_topics()
    chosen: dict[str, int] = {}
    for item in [*names, *includes]:
        if any(c in item for c in "*?["):
            matched = [t for t in topics if fnmatch.fnmatchcase(t, item) and (item[:1] == "_" or t[:1] != "_")]
            if not matched:
                raise UsageError(f"no topic matches {item!r} (see `edge topics list`)")
        elif item in topics:
            matched = [item]
        else:
            raise UnknownTopicError(f"unknown topic {item!r}")
        chosen.update((t, len(topics[t]["partitions"])) for t in matched)
    return chosen


class TimeMerge:
    """Holds polled records and lets them out in capture-time order: the earliest held record
    goes once every other assigned partition has a record held or is at its log end."""

    def __init__(self, consumer: Consumer, admin: Admin):
        self.consumer = consumer
        self.admin = admin
        self.heap: list[tuple[int, int, Record]] = []  # (capture time, arrival order, record)
        self.held_by: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self.ends_at = 0.0
        self.seq = 0

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            self.seq += 1
            heapq.heappush(self.heap, (record.timestamp, self.seq, record))
            tp = (record.topic, record.partition)
            self.held_by[tp] = self.held_by.get(tp, 0) + 1

    def _caught_up(self, tp: tuple[str, int]) -> bool:
        position = self.consumer.position(*tp)
        if position >= self.ends.get(tp, -1):
            return True
        if time.monotonic() - self.ends_at >= ENDS_REFRESH_S:
            self.ends_at = time.monotonic()
            self.ends = {p: self.admin.list_offset(p[0], p[1], "latest") for p in self.consumer.assignment()}
        return position >= self.ends.get(tp, 0)

    def ready(self, flush: bool = False) -> list[Record]:
        out = []
        while self.heap:
            record = self.heap[0][2]
            tp = (record.topic, record.partition)
            if not flush and any(other != tp and not self.held_by.get(other) and not self._caught_up(other)
                                 for other in self.consumer.assignment()):
                break
            heapq.heappop(self.heap)
            self.held_by[tp] -= 1
            out.append(record)
        return out

    def held(self) -> list[Record]:
        return [entry[2] for entry in self.heap]


def run(args: argparse.Namespace) -> int:
    from broker.client import Admin, Consumer
    from broker.errors import BrokerUnavailableError, OffsetOutOfRangeError

    endpoint = resolve_endpoint(args)
    if not args.topics and not args.include:
        raise UsageError("name a topic, or topics and shell patterns (camera.*), or --include PATTERN")
    if args.group and (args.partition is not None or args.start not in ("earliest", "latest")):
        raise UsageError("with --group the group's committed offsets say where to start; "
                         "--partition and --from OFFSET/TIME cannot be combined with it "
                         "(--from earliest|latest applies to partitions the group has not committed)")
    admin = Admin(endpoint)
    try:
        counts = resolve_topics(admin, args.topics, args.include)
        if args.partition is not None and len(counts) != 1:
            raise UsageError(f"--partition needs exactly one topic, these are {len(counts)}: "
                             f"{', '.join(sorted(counts))}")
    except BaseException:
        admin.close()
        raise
    reset = args.offset_reset
    if args.group and reset != "error":
        reset = args.start
    consumer = Consumer(endpoint, group=args.group, auto_offset_reset=reset, max_wait_ms=200,
                        on_reset=lambda event: _say(event.describe()),
                        auto_commit_interval_ms=COMMIT_INTERVAL_MS if args.group else None)
    seen = 0
    batch: list[Record] = []
    printed_in_batch = 0
    stop: list[int] = []

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        if stop:
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        stop.append(signum)  # checked between records, so a record is printed and counted whole

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    merge = TimeMerge(consumer, admin) if args.merge_by_time else None
    try:
        if args.group:
            consumer.subscribe(sorted(counts))
        else:
            partitions = ([(next(iter(counts)), args.partition)] if args.partition is not None
                          else [(t, p) for t, n in sorted(counts.items()) for p in range(n)])
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
            if batch:
                last_record = time.monotonic()
            timed_out = args.timeout is not None and time.monotonic() - last_record >= args.timeout
            if merge is not None:
                merge.add(batch)
                batch = merge.ready(flush=timed_out)  # at the end every held record goes, in order
            if not batch:
                if timed_out:
                    break
                continue
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
        # records returned but not printed (--max-messages, Ctrl-C, held for the time order)
        # are not committed: each partition goes back to its first unprinted record
        first_unprinted: dict[tuple[str, int], int] = {}
        for record in [*batch[printed_in_batch:], *(merge.held() if merge is not None else [])]:
            tp = (record.topic, record.partition)
            first_unprinted[tp] = min(record.offset, first_unprinted.get(tp, record.offset))
        for (topic, partition), offset in first_unprinted.items():
            consumer.seek(topic, partition, offset)
        consumer.close()  # commits the positions (group mode)
        admin.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + stop[0] if stop else 0  # 130 after Ctrl-C, 143 after SIGTERM
