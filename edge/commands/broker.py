"""``edge broker``: run the local log broker."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from broker.server import add_arguments

    parser = subparsers.add_parser("broker", help="run the local log broker",
                                   description="Run the broker: segments in --data-dir, served on --endpoint.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from broker.server import main_from_args

    return main_from_args(args)
