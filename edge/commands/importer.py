"""``edge import FILE.mcap``: Foxglove or rosbag2 MCAP recordings into topics (edge/mcap_import.py).

    edge import drive.mcap                      # /camera/front -> camera.front, ...
    edge import bag.mcap --prefix imported.     # imported.camera.front, ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import Subparsers
from .common import add_endpoint_args, readable_file, resolve_endpoint
from .failures import UsageError


def progress_line(records: int, done_bytes: int, total_bytes: int, elapsed_s: float) -> str:
    """``import  42.0%  1200 records  96.1 MB  35.2 MB/s  ETA 4s`` (the file read so far)."""
    rate = done_bytes / elapsed_s if elapsed_s > 0 else 0.0
    fraction = done_bytes / total_bytes if total_bytes else 1.0
    eta = f"ETA {(total_bytes - done_bytes) / rate:.0f}s" if rate > 0 else "ETA ?"
    return (f"import {fraction * 100:5.1f}%  {records} records  {done_bytes / 1e6:.1f} MB  "
            f"{rate / 1e6:.1f} MB/s  {eta}   ")


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("import", help="import an MCAP file (Foxglove or rosbag2) into topics",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=readable_file, help="the .mcap file")
    parser.add_argument("--prefix", default="", help="prepended to every topic name (e.g. imported.)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="summary format")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from broker.client import Admin
    from edge.mcap_import import McapImportError, import_mcap

    endpoint = resolve_endpoint(args)
    with Admin(endpoint) as admin:
        admin.ping()  # an unreachable broker is said before the file is read
    show = not args.quiet and sys.stderr.isatty()
    started = time.monotonic()

    def progress(records: int, done_bytes: int, total_bytes: int) -> None:
        if show:
            sys.stderr.write("\r" + progress_line(records, done_bytes, total_bytes, time.monotonic() - started))
            sys.stderr.flush()

    try:
        with open(args.file, "rb") as stream:
            result = import_mcap(stream, endpoint, prefix=args.prefix, progress=progress)
    except McapImportError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    finally:
        if show:
            sys.stderr.write("\n")
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
        return 0
    topics = ", ".join(f"{t}: {n}" for t, n in sorted(result.by_topic.items()))
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind.items()))
    print(f"imported {result.records} records ({kinds}) into {topics or 'no topics'}"
          + (f"; {result.raw_fallbacks} could not be converted and were imported raw" if result.raw_fallbacks else ""))
    return 0
