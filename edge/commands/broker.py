"""``edge broker``: run the local log broker.

Its flags come from broker/server.py (the broker never imports edge/); this wrapper checks
them first so that a bad endpoint, log level or data directory is one line and exit 2."""

from __future__ import annotations

def add_parser(subparsers) -> None:
    from broker.server import add_arguments

    parser = subparsers.add_parser("broker", help="run the local log broker",
                                   description="Run the broker: segments in --data-dir, served on --endpoint.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from broker.server import main_from_args

    from .common import LOG_LEVELS, check_endpoint, ensure_data_dir
    from .failures import UsageError

    if args.endpoint:
        check_endpoint(args.endpoint)
    if args.log_level and args.log_level.upper() not in LOG_LEVELS:
        raise UsageError(f"--log-level {args.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    if args.data_dir:
        ensure_data_dir(Path(args.data_dir))
    return main_from_args(args)
