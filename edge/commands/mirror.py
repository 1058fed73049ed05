"""``edge mirror``: ship the configured topics to the cloud Kafka cluster, exactly once."""

from __future__ import annotations

import argparse

from . import Subparsers
from .common import add_endpoint_args, load_app_config, log_level, resolve_endpoint


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("mirror", help="mirror topics to a cloud Apache Kafka cluster ([mirror] config)")
    parser.add_argument("--log-level", type=log_level, default="INFO")
    parser.add_argument("--data-dir", help="override [broker] data_dir (where .mirror/ keeps its checkpoint)")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from broker.logs import setup_logging
    from edge.mirror.service import run_mirror

    setup_logging(args.log_level, "mirror")
    return run_mirror(load_app_config(args), resolve_endpoint(args))
