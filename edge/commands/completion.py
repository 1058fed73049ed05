"""``edge completion bash|zsh``: print the shell's completion script (edge/completion.py).

    eval "$(edge completion bash)"     # in ~/.bashrc
    eval "$(edge completion zsh)"      # in ~/.zshrc, after compinit
"""

from __future__ import annotations

import argparse

from . import Subparsers


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("completion", help="print the bash or zsh completion script",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("shell", choices=["bash", "zsh"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.completion import SCRIPTS

    print(SCRIPTS[args.shell], end="")
    return 0
