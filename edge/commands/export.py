"""``edge export``: a window of recorded topics to an MCAP file (Foxglove) or a directory
of MP4 videos and PCD/PLY clouds.

    edge export --topics camera.front,lidar.top --start -10m --end now --out drive.mcap
    edge export --topics 'camera.*' --drive drive-20261122-101500 --out exports/drive1/
    edge export --topics lidar.top --start 2026-11-22T10:00:00Z --end +30s --out clouds --cloud-format ply
    edge export --kafka broker:9092 --vehicle v42 --topics camera.front --start -1h --out cam.mcap
    edge export --event ev-20261206-035500-1a2b --format mcap --out incident.mcap

The format follows ``--out`` (``.mcap``: MCAP, anything else: a directory) unless
``--format`` says (``mp4`` and ``pcd`` name the directory export: MP4 videos, PCD clouds).
``--event ID`` exports exactly the event's pinned offsets (its topics unless ``--topics``).
Progress goes to stderr, the summary to stdout (``--json``: the result as JSON). Nothing
appears under ``--out`` unless the export completed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

from . import Subparsers
from .common import add_endpoint_args, resolve_endpoint
from .failures import UsageError

if TYPE_CHECKING:  # the export and replay packages load when the command runs
    from edge.export.core import ExportPlan
    from edge.replay.sources import RecordSource


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a window of topics to MCAP (Foxglove) or MP4/PCD files")
    parser.add_argument("--topics",
                        help="comma-separated topic names or shell patterns (camera.front,lidar.* ; name:PARTITION)")
    parser.add_argument("--start", help="window start: ISO-8601, epoch ns, -10m, earliest, topic:partition:offset, "
                                        "or a drive name (default: earliest, or the drive's start)")
    parser.add_argument("--end", help="window end (exclusive): as --start, or +30s from the start (default: the end "
                                         "of the log: every record, whatever its capture time)")
    parser.add_argument("--drive", help="export this drive's window (see `edge drives`)")
    parser.add_argument("--event", help="export exactly this event's pinned window (see `edge events`)")
    parser.add_argument("--out", required=True, help="output: FILE.mcap, or a directory (created; must not exist "
                                                     "unless empty or --force)")
    parser.add_argument("--format", choices=["mcap", "dir", "mp4", "pcd"],
                        help="override the format inferred from --out (mp4, pcd: the directory export)")
    parser.add_argument("--cloud-format", choices=["pcd", "ply"], default="pcd",
                        help="point-cloud file type of a directory export (default: pcd)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out (only once the export is done)")
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="read the mirror's copy from this Kafka cluster")
    parser.add_argument("--vehicle", help="the vehicle whose topics to read from Kafka (with --kafka)")
    parser.add_argument("--kafka-template", default=None,
                        help="Kafka topic name template (default: vehicles.{vehicle}.{topic})")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="exit 0 even when records of the window were no longer in the log (still reported)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


class ProgressBar:
    """One self-rewriting line on a terminal; a line every ``interval_s`` otherwise."""

    def __init__(self, stream: TextIO | None = None, *, width: int = 28, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self.interval_s = interval_s
        self._last = 0.0
        self._drawn = False
        self._length = 0

    def line(self, fraction: float | None, message: str) -> str:
        if fraction is None:
            return f"export  {message}"
        fraction = min(1.0, max(0.0, fraction))
        filled = int(fraction * self.width + 0.5)  # half up: 25% of 10 cells shows 3
        return f"export [{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}%  {message}"

    def eta(self, fraction: float | None) -> str:
        """``, ETA 12s`` from the time since the bar was made and the fraction done."""
        if fraction is None or not 0 < fraction < 1:
            return ""
        elapsed = self._clock() - self._started
        return f", ETA {elapsed * (1 - fraction) / fraction:.0f}s"

    def __call__(self, fraction: float | None = None, message: str = "") -> None:
        text = self.line(fraction, message + (self.eta(fraction) if self.tty else ""))
        if self.tty:
            self.stream.write("\r" + text.ljust(self._length))
            self._length = len(text)
            self._drawn = True
        else:
            now = time.monotonic()
            if fraction != 1.0 and now - self._last < self.interval_s:
                return
            self._last = now
            self.stream.write(text + "\n")
        self.stream.flush()

    def warn(self, message: str) -> None:
        self.clear()
        self.stream.write(f"edge export: warning: {message}\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False
            self._length = 0


def check_out_parent(out: str) -> None:
    """``--out``'s directory must exist: a typo in a path is refused, not silently created."""
    from pathlib import Path

    parent = Path(out).expanduser().absolute().parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"cannot write --out {out}: directory {parent} {what}: create it first "
                         f"(mkdir -p {parent}) or choose another path")


def summary(result: dict[str, Any]) -> str:
    topics = result.get("topics") or {}
    parts = []
    for topic, info in topics.items():
        count = info.get("messages", info.get("frames", info.get("clouds", 0)))
        parts.append(f"{topic}: {count}")
    text = (f"exported {result['written']} of {result['records']} records ({', '.join(parts)}) to {result['path']} "
            f"({result['output_bytes'] / 1e6:.1f} MB) in {result['elapsed_s']:.1f}s")
    if result.get("skipped"):
        text += f"; skipped (not frames or clouds): {result['skipped']}"
    if result.get("corrupt"):
        text += f"; corrupt (skipped): {result['corrupt']}"
    if result.get("outside_window"):
        text += f"; outside the window (not exported): {result['outside_window']} records"
    return text


def outside_window(source: RecordSource, plan: ExportPlan, result: dict[str, Any]) -> int:
    """How many records of the chosen partitions the window left out (their capture times
    lie outside it): reported, so a window never drops records silently."""
    from edge.replay.timespec import EARLIEST_NS, END_OF_LOG_NS

    held = sum(source.count_between(tp, EARLIEST_NS, END_OF_LOG_NS) for tp in plan.partitions)
    exported: int = result["records"]
    return max(0, held - exported)


def _event_window(endpoint: str, event_id: str) -> tuple[Any, ...]:  # edge.events.event_resolution's answer
    from broker.errors import BrokerError
    from edge.events import event_resolution
    from edge.replay.timespec import TimeSpecError

    try:
        return event_resolution(endpoint, event_id)
    except BrokerError as exc:  # named as an event, not as a drive
        raise TimeSpecError(f"--event {event_id}: {exc.message}") from None


def run(args: argparse.Namespace) -> int:
    from edge.drives import drive_resolution, source_drive_resolution
    from edge.export import ExportError, export_window, infer_format, plan_export
    from edge.replay.missing import missing_exit_status
    from edge.replay.sources import DEFAULT_KAFKA_TEMPLATE, open_source
    from edge.replay.timespec import END_OF_LOG_NS, TimeSpecError, parse_window

    if args.format in ("mp4", "pcd"):  # the directory export writes MP4 videos and PCD/PLY clouds
        args.cloud_format = "pcd" if args.format == "pcd" else args.cloud_format
        args.format = "dir"
    if args.event and (args.drive or args.kafka):
        raise ExportError("--event exports from the vehicle broker: it takes no --drive or --kafka")
    if not args.topics and not args.event:
        raise ExportError("name the topics to export (--topics) or an event (--event)")
    fmt = infer_format(args.out, args.format)
    check_out_parent(args.out)
    endpoint = (args.endpoint or os.environ.get("EDGE_ENDPOINT")) if args.kafka else resolve_endpoint(args)
    resolver = partial(_event_window if args.event else drive_resolution, endpoint) if endpoint else None
    cloud = None
    if args.kafka and args.drive:  # a drive from the cloud: the catalog the mirror shipped
        cloud = open_source(kafka=args.kafka, vehicle=args.vehicle,
                            template=args.kafka_template or DEFAULT_KAFKA_TEMPLATE)
    try:
        spec = parse_window(args.start, args.end, drive=args.event or args.drive,
                            resolver=partial(source_drive_resolution, cloud) if cloud else resolver)
    except TimeSpecError as exc:
        raise ExportError(str(exc)) from None
    finally:
        if cloud is not None:
            cloud.close()
    if args.end is None and args.drive is None and args.event is None:
        # Capture clocks are the sensors' (a file's timestamps may lie ahead of the host clock):
        # "now" would silently cut them, so the default end is the end of each partition's log.
        spec = dataclasses.replace(spec, end=END_OF_LOG_NS)
    patterns = [p.strip() for p in (args.topics or ",".join(spec.drive_topics)).split(",") if p.strip()]
    source = open_source(endpoint=endpoint, kafka=args.kafka, vehicle=args.vehicle,
                         template=args.kafka_template or DEFAULT_KAFKA_TEMPLATE)
    bar = ProgressBar()
    try:
        plan = plan_export(source, patterns, spec)
        result = export_window(source, plan.partitions, plan.window, args.out, fmt, cloud_format=args.cloud_format,
                               overwrite=args.force, expected=plan.expected,
                               progress=None if args.quiet else bar, warn=bar.warn)
        result["outside_window"] = outside_window(source, plan, result)
        result["keyframes"] = plan.keyframes  # video partitions that start at the keyframe before the window
    finally:
        bar.clear()
        source.close()
    print(json.dumps(result, indent=2) if args.json else summary(result))
    return missing_exit_status("export", result["missing"], args.allow_gaps, sys.stderr)

