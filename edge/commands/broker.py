"""``edge broker``: run the local log broker (broker/server_run.py) from flags and the config.

Flags override the config's ``[broker]`` section. They are checked first, so that a bad
endpoint, log level or data directory is one line and exit 2. (This was the command line of
broker/server.py: the broker never imports edge/, so the config is read here.)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("broker", help="run the local log broker",
                                   description="Run the broker: segments in --data-dir, served on --endpoint.")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .common import LOG_LEVELS, check_endpoint, ensure_data_dir
    from .failures import UsageError

    if args.endpoint:
        check_endpoint(args.endpoint)
    if args.log_level and args.log_level.upper() not in LOG_LEVELS:
        raise UsageError(f"--log-level {args.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    if args.data_dir:
        ensure_data_dir(Path(args.data_dir))
    return main_from_args(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="appliance config file (TOML); flags override it")
    parser.add_argument("--data-dir", help="directory holding the segments")
    parser.add_argument("--endpoint", help="ipc:///path/broker.sock (default: <data-dir>/broker.sock) or tcp://HOST:PORT")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--kafka-listen", metavar="HOST:PORT",
                        help="also serve Kafka clients here (loopback only unless --kafka-insecure); "
                             "'off' disables the listener of the config")
    parser.add_argument("--kafka-advertised", metavar="HOST:PORT",
                        help="address Kafka clients are told to connect to (default: the listen address)")
    parser.add_argument("--kafka-insecure", action="store_true", default=None,
                        help="allow a non-loopback Kafka listener without TLS/SASL")
    parser.add_argument("--kafka-tls-cert", metavar="PEM", help="TLS certificate (chain) for the Kafka listener")
    parser.add_argument("--kafka-tls-key", metavar="PEM", help="its private key")
    parser.add_argument("--kafka-sasl-users", metavar="FILE",
                        help="SASL/PLAIN users for the Kafka listener, one user:password per line")


def _kafka_options(args: argparse.Namespace, broker: Any = None) -> dict[str, Any] | None:
    """Listener options from flags over ``[broker] kafka_*``; None: no listener."""
    listen = args.kafka_listen or (broker.kafka_listen if broker is not None else None)
    if not listen or listen == "off":
        return None
    return {"listen": listen,
            "advertised": args.kafka_advertised or (broker.kafka_advertised if broker is not None else None),
            "insecure": bool(args.kafka_insecure or (broker is not None and broker.kafka_insecure)),
            **{key: getattr(args, f"kafka_{key}") or (getattr(broker, f"kafka_{key}") if broker is not None else None)
               for key in ("tls_cert", "tls_key", "sasl_users")},
            # the config's default address may be taken (a second appliance, a test): not fatal
            "required": bool(args.kafka_listen) or (broker is not None and broker.kafka_listen_set)}


def main_from_args(args: argparse.Namespace) -> int:
    from broker.logs import setup_logging
    from broker.server_run import run_broker

    if args.config:
        from edge.config import load_config

        config = load_config(args.config)
        broker = config.broker
        data_dir = Path(args.data_dir) if args.data_dir else broker.data_dir
        endpoint = args.endpoint or broker.endpoint
        setup_logging(args.log_level or broker.log_level, "broker")
        curve = broker.curve
        return run_broker(data_dir, endpoint or f"ipc://{data_dir.resolve()}/broker.sock",
                          defaults=broker.defaults, disk_guard=broker.disk_guard,
                          auto_create_topics=broker.auto_create_topics, topic_config_for=config.topic_config,
                          curve=(curve.server_secret_key, curve.authorized_keys) if curve else None,
                          allow_insecure_tcp=broker.allow_insecure_tcp,
                          mirror_topics=config.mirror.selects if config.mirror is not None else None,
                          kafka=_kafka_options(args, broker))
    if not args.data_dir:
        raise SystemExit("edge broker: give --data-dir DIR or --config FILE")
    setup_logging(args.log_level or "INFO", "broker")
    return run_broker(Path(args.data_dir), args.endpoint, kafka=_kafka_options(args))
