"""The ``edge`` command: one entry point, a subcommand per part of the appliance.

Each subcommand lives in ``edge/commands/<name>.py`` and exposes ``add_parser(subparsers)``;
heavy libraries (OpenCV, open3d, confluent-kafka, FastAPI) are imported only inside the
command that runs, so ``edge broker`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from broker.errors import BrokerError

PRIVATE_UMASK = 0o027  # files we create: 0640 at most, directories 0750; never world-readable

COMMANDS = ["up", "broker", "driver", "topics", "produce", "consume", "status", "drives",
            "mirror", "api", "replay", "export", "keys"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="In-vehicle sensor ingestion appliance.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"edge.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edge.commands.{name}":
                continue  # that part of the appliance is not installed in this build
            raise
        module.add_parser(subparsers)
    return parser


TIME_OPTIONS = ("--from", "--start", "--end", "--seek")


def _join_relative_times(argv: list[str]) -> list[str]:
    """``--from -10m`` would look like an option to argparse: pass it as ``--from=-10m``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in TIME_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1][1:2].isdigit():
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)  # tighten what we inherit, never loosen it
    parser = build_parser()
    args = parser.parse_args(_join_relative_times(sys.argv[1:] if argv is None else list(argv)))
    try:
        return int(args.func(args) or 0)
    except BrokerError as exc:
        print(f"edge {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
