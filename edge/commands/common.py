"""Arguments and helpers shared by the subcommands: endpoint and config resolution, times,
and the argparse value types that refuse bad input at parse time (exit 2, one line)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from broker.base import timespec

from .failures import UsageError

if TYPE_CHECKING:
    from edge.config import AppConfig

ENDPOINT_SCHEMES = ("ipc://", "tcp://")
# a bare number up to this many digits is an offset (--from, --to); a longer one is an epoch-ns time
OFFSET_DIGITS_MAX = timespec.MIN_EPOCH_NS_DIGITS - 1


def check_endpoint(endpoint: str, where: str = "--endpoint") -> str:
    """An endpoint the client library can connect to, or a UsageError saying what one looks like
    (``localhost:9092`` would make ZeroMQ raise deep inside every command)."""
    if not endpoint.startswith(ENDPOINT_SCHEMES) or len(endpoint) <= len("tcp://"):
        hint = f"tcp://{endpoint}" if endpoint and "://" not in endpoint else "tcp://127.0.0.1:5555"
        raise UsageError(f"{where} {endpoint!r} is not a broker endpoint: use tcp://HOST:PORT (e.g. {hint}) "
                         "or ipc:///path/broker.sock")
    return endpoint


def endpoint_arg(text: str) -> str:
    """argparse type of --endpoint."""
    try:
        return check_endpoint(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--endpoint ")) from None


def positive_float(text: str) -> float:
    """argparse type: a number of seconds (or a rate) above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number above 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(text: str) -> str:
    """argparse type of --log-level."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: use one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def tcp_port(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port: use 1-65535 (or 0 for any free port)")
    return value


def readable_file(text: str) -> str:
    """argparse type: a file that exists and can be read (checked now, not after connecting)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
    return text


def add_endpoint_args(parser: argparse.ArgumentParser, config_option: str = "--config") -> None:
    parser.add_argument("--endpoint", type=endpoint_arg,
                        help="broker endpoint, tcp://HOST:PORT or ipc:///PATH "
                             "(default: $EDGE_ENDPOINT, else from the config)")
    parser.add_argument(config_option, dest="config", type=readable_file,
                        help="appliance config file (default: configs/sim.toml)")


def add_format_arg(parser: argparse.ArgumentParser) -> None:
    """``--format table|json`` (the one vocabulary of every listing command); ``--json`` stays
    as a hidden alias of ``--format json`` for scripts written before."""
    parser.add_argument("--format", choices=["table", "json"], default="table", help="output format (default: table)")
    parser.add_argument("--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS)


def time_arg(text: str) -> int:
    """argparse type: a time as ``parse_time_ns`` reads it, in nanoseconds since the epoch."""
    try:
        return parse_time_ns(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ensure_data_dir(path: Path) -> Path:
    """Create the data directory (and its parents) or say in one line why it cannot be one."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".edge-write-probe"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"data directory {path} is not usable ({exc.strerror or exc}): choose a writable "
                         "directory with --data-dir or [broker] data_dir") from None
    return path


def load_app_config(args: argparse.Namespace) -> AppConfig:
    from edge.config import load_config

    config = load_config(getattr(args, "config", None))
    data_dir = getattr(args, "data_dir", None)
    if data_dir:  # `edge up --data-dir` hands its override to every child that keeps files
        config.broker.data_dir = Path(data_dir).resolve()
    export_client_keys(config)
    return config


def export_client_keys(config: AppConfig) -> None:
    """Put the config's CURVE client keys in ``$EDGE_CURVE_*`` (unless already set), where
    every client of this process and of its children finds them (broker/curve.py)."""
    from broker.curve import CLIENT_KEY_ENV, SERVER_KEY_ENV

    curve = config.broker.curve
    if curve is not None and curve.client_secret_key is not None and curve.server_public_key is not None:
        os.environ.setdefault(CLIENT_KEY_ENV, str(curve.client_secret_key))
        os.environ.setdefault(SERVER_KEY_ENV, str(curve.server_public_key))


def resolve_endpoint(args: argparse.Namespace) -> str:
    given: str | None = getattr(args, "endpoint", None)
    if given:
        return check_endpoint(given)
    if os.environ.get("EDGE_ENDPOINT"):
        return check_endpoint(os.environ["EDGE_ENDPOINT"], "$EDGE_ENDPOINT")
    return load_app_config(args).broker.resolved_endpoint()


def parse_time_ns(text: str, *, now_ns: int | None = None) -> int:
    """A time in the floor's one grammar (broker.base.timespec: ISO-8601, epoch ns, -10m,
    10m ago, now ...), in nanoseconds since the epoch; a refusal is a UsageError (exit 2)."""
    try:
        return timespec.parse_time_ns(text, now_ns=now_ns)
    except timespec.TimeSpecError as exc:
        raise UsageError(str(exc)) from None


def parse_key_values(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out
