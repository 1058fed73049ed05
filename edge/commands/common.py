"""Arguments and helpers shared by the subcommands: endpoint and config resolution, times."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from datetime import datetime, timezone

from broker.units import parse_duration_ns


def add_endpoint_args(parser: argparse.ArgumentParser, config_option: str = "--config") -> None:
    parser.add_argument("--endpoint", help="broker endpoint (default: $EDGE_ENDPOINT, else from the config)")
    parser.add_argument(config_option, dest="config", help="appliance config file (default: configs/sim.toml)")


def load_app_config(args: argparse.Namespace):
    from edge.config import load_config

    config = load_config(getattr(args, "config", None))
    data_dir = getattr(args, "data_dir", None)
    if data_dir:  # `edge up --data-dir` hands its override to every child that keeps files
        config.broker.data_dir = Path(data_dir).resolve()
    export_client_keys(config)
    return config


def export_client_keys(config) -> None:
    """Put the config's CURVE client keys in ``$EDGE_CURVE_*`` (unless already set), where
    every client of this process and of its children finds them (broker/curve.py)."""
    from broker.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV

    curve = config.broker.curve
    if curve is not None and curve.client_secret_key is not None and curve.server_public_key is not None:
        os.environ.setdefault(CLIENT_KEY_ENV, str(curve.client_secret_key))
        os.environ.setdefault(SERVER_KEY_ENV, str(curve.server_public_key))


def resolve_endpoint(args: argparse.Namespace) -> str:
    if getattr(args, "endpoint", None):
        return args.endpoint
    if os.environ.get("EDGE_ENDPOINT"):
        return os.environ["EDGE_ENDPOINT"]
    return load_app_config(args).broker.resolved_endpoint()


def parse_time_ns(text: str, *, now_ns: int | None = None) -> int:
    """ISO-8601 (``2026-11-22T10:00:00Z``), epoch nanoseconds, or relative (``-10m``)."""
    text = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    if text.startswith("-"):
        return now - parse_duration_ns(text[1:])
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use ISO-8601 (2026-11-22T10:00:00Z), epoch ns, or relative (-10m)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1_000_000) * 1000


def parse_key_values(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"invalid {what} {item!r}: expected key=value")
        out[key] = value
    return out
