"""``edge doctor``: one PASS / WARN / FAIL line per readiness check (edge/doctor.py); exit 1
when any check FAILs."""

from __future__ import annotations

import argparse
import json

from . import Subparsers
from .common import add_endpoint_args, add_format_arg, load_app_config, positive_float, resolve_endpoint


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="check disk, mounts, permissions, clock, broker, sensors, cloud link")
    parser.add_argument("--listen", type=positive_float, default=2.0, metavar="SECONDS",
                        help="how long to wait for packets from a udp:// LiDAR (default 2)")
    add_format_arg(parser)
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.doctor import FAIL, run_checks

    config = load_app_config(args)
    checks = run_checks(config, resolve_endpoint(args), listen_s=args.listen)
    if args.format == "json":
        print(json.dumps([c.to_json() for c in checks], indent=2))
    else:
        for check in checks:
            print(check.line())
    failed = [c.name for c in checks if c.status == FAIL]
    return 1 if failed else 0
