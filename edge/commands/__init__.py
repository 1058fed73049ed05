"""Subcommands of ``edge``; each module exposes ``add_parser(subparsers)``."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# What each module's add_parser receives: the ``edge`` parser's add_subparsers() (argparse
# names its class privately; quoted because it is generic only to type checkers).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
