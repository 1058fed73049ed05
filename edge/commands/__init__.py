"""Subcommands of ``edge``; each module exposes ``add_parser(subparsers)``."""
