"""The ``edge`` command: one entry point, a subcommand per part of the appliance.

Each subcommand lives in ``edge/commands/<name>.py`` and exposes ``add_parser(subparsers)``;
heavy libraries (OpenCV, open3d, confluent-kafka, FastAPI) are imported only inside the
command that runs, so ``edge broker`` starts in a fraction of a second.

Failures follow edge/commands/failures.py: one line on stderr, exit 2 for usage errors and
1 for runtime failures, never a traceback unless ``edge --debug COMMAND`` asks for one.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from edge.commands.failures import USAGE, one_line, report

PRIVATE_UMASK = 0o027  # files we create: 0640 at most, directories 0750; never world-readable

COMMANDS = ["up", "broker", "driver", "topics", "produce", "consume", "status", "drives",
            "mirror", "api", "replay", "export", "keys", "groups", "doctor", "completion", "import", "events"]
MODULES = {"import": "importer"}  # a command whose name is a Python keyword


class EdgeArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command, the problem and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edge-appliance")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class VersionAction(argparse.Action):
    """``--version``, looked up only when asked: the package metadata lookup cost every command
    30-80 ms of start-up (argparse's own version action needs the string up front)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help=help or "show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"edge {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = EdgeArgumentParser(prog="edge", description="In-vehicle sensor ingestion appliance.")
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"edge.commands.{MODULES.get(name, name)}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that part of the appliance is not installed in this build
            raise
        module.add_parser(subparsers)
    return parser


TIME_OPTIONS = ("--from", "--start", "--end", "--seek", "--to", "--timestamp")


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
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == ["__complete"]:  # the shell asking for candidates: not a command of the tree
        from edge.completion import complete_main

        return complete_main(words[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(_join_relative_times(words))
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        message = one_line(str(exc.code))  # `raise SystemExit("edge up: ...")`: one line, runtime
        print(message if message.startswith("edge ") else f"edge {args.command}: {message}", file=sys.stderr)
        return 1
    except Exception as exc:  # every failure becomes one line, see failures.py
        return report(args.command, exc, debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
