"""``edge status [--format json]``: one screen of what the appliance is doing."""

from __future__ import annotations

import argparse
import json

from . import Subparsers
from .common import add_endpoint_args, add_format_arg, load_app_config, positive_float, resolve_endpoint


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("status", help="topics, rates, drivers, disk, lag, mirror, drives")
    add_format_arg(parser)
    parser.add_argument("--interval", type=positive_float, default=1.0,
                        help="seconds between the two samples for rates")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.status import collect_status, format_status

    endpoint = resolve_endpoint(args)
    min_free = load_app_config(args).broker.disk_guard.min_free_bytes if args.config else 0
    status = collect_status(endpoint, min_free_bytes=min_free, interval_s=args.interval)
    if args.format == "json":
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_status(status))
    return 0
