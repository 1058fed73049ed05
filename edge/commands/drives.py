"""``edge drives [list|start|stop]``: drive boundaries for replay and export by name."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from . import Subparsers
from .common import add_endpoint_args, add_format_arg, resolve_endpoint


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("drives", help="list drives, or mark a drive's start/stop (ignition hooks)")
    parser.add_argument("action", nargs="?", choices=["list", "start", "stop"], default="list")
    parser.add_argument("--name", type=drive_name_arg,
                        help="drive name (start: default drive-<UTC time>; stop: default the open drive)")
    parser.add_argument("--reason", default="manual", help="why (e.g. ignition)")
    add_format_arg(parser)
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def drive_name_arg(text: str) -> str:
    from edge.drives import check_drive_name

    try:
        return check_drive_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def run(args: argparse.Namespace) -> int:
    from edge.drives import list_drives, new_drive_name, record_event

    endpoint = resolve_endpoint(args)
    if args.action == "start":
        name = args.name or new_drive_name()
        record_event(endpoint, "start", name, reason=args.reason)
        print(f"started {name}")
        return 0
    if args.action == "stop":
        name = args.name
        if name is None:
            open_drives = [d for d in list_drives(endpoint, with_topics=False) if d.open]
            if not open_drives:
                print("edge drives: no open drive to stop")
                return 1
            name = open_drives[-1].name
        record_event(endpoint, "stop", name, reason=args.reason)
        print(f"stopped {name}")
        return 0
    drives = list_drives(endpoint)
    if args.format == "json":
        print(json.dumps([d.to_json() for d in drives], indent=2))
        return 0
    print(f"{'DRIVE':<24} {'START (UTC)':<20} {'END (UTC)':<20} {'DURATION':>9} {'RECORDS':>9} {'MB':>9}  TOPICS")
    for d in drives:
        duration = "open" if d.open else f"{d.duration_s:.0f}s"
        records = sum(t["records"] for t in d.topics.values())
        size = sum(t["bytes"] for t in d.topics.values()) / 1e6
        print(f"{d.name:<24} {_when(d.start_ns):<20} {_when(d.end_ns):<20} {duration:>9} {records:>9} {size:>9.1f}  "
              f"{','.join(sorted(d.topics))}")
    return 0
