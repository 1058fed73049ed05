"""``edge keys``: create ZeroMQ CURVE key pairs for a tcp broker (broker/curve.py).

    edge keys /etc/edge/curve broker            # broker.key, broker.key_secret
    edge keys /etc/edge/curve/clients laptop    # a client; its .key authorizes it

The broker's config names its ``.key_secret`` and the directory of client ``.key`` files
(``[broker.curve]``); a client needs its own ``.key_secret`` and the broker's ``.key``.
"""

from __future__ import annotations

import argparse

from . import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("keys", help="create a CURVE key pair (NAME.key, NAME.key_secret) for tcp",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="where to write the pair (created if missing)")
    parser.add_argument("name", help="file name stem, e.g. broker or the client's host name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from broker.curve import CurveError, create_key_pair

    directory = Path(args.directory)
    for suffix in (".key", ".key_secret"):
        if (directory / f"{args.name}{suffix}").exists():
            raise CurveError(f"{directory / (args.name + suffix)} already exists: not overwriting a key")
    public, secret = create_key_pair(directory, args.name)
    print(f"public key {public} (give to the other side), secret key {secret} (mode 0600, keep here)")
    return 0
