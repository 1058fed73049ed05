"""``edge topics list|describe|create|delete``.

Topic settings are ``create --set KEY=VALUE``; ``--config`` is the appliance config file as in
every other command (``--config KEY=VALUE`` is still read as ``--set``, with a deprecation note)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import Subparsers
from .common import add_endpoint_args, add_format_arg, parse_key_values, readable_file, resolve_endpoint
from .failures import UsageError, pydantic_line


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("topics", help="list, describe, create or delete topics")
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="topics with partitions, records and bytes")
    add_format_arg(ls)
    describe = sub.add_parser("describe", help="config and per-partition offsets of a topic")
    describe.add_argument("name")
    add_format_arg(describe)
    create = sub.add_parser("create", help="create a topic")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, default=None)
    create.add_argument("--set", dest="topic_config", action="append", default=[], metavar="KEY=VALUE",
                        help="topic setting, e.g. codec=zstd retention_age=72h (repeatable)")
    delete = sub.add_parser("delete", help="delete a topic and its data")
    delete.add_argument("name")
    for p in (ls, describe, delete):
        add_endpoint_args(p)
    add_endpoint_args(create, config_option="--config-file")
    create.add_argument("--config", action=ConfigFileOrDeprecatedSetting, dest="config", metavar="CONFIG",
                        help="appliance config file, as in every command (same as --config-file)")
    create.set_defaults(deprecated_config_setting=False)
    parser.set_defaults(func=run)


class ConfigFileOrDeprecatedSetting(argparse.Action):
    """``--config`` is the appliance config FILE in every command; ``topics create`` once took
    topic settings with it, so ``--config KEY=VALUE`` (not an existing file) is still read as
    ``--set KEY=VALUE``, noted as deprecated once the topic is created."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any,
                 option_string: str | None = None) -> None:
        if "=" in value and not Path(value).exists():
            namespace.topic_config = [*(namespace.topic_config or []), value]
            namespace.deprecated_config_setting = True
            return
        try:
            namespace.config = readable_file(value)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


def check_topic_settings(config: dict[str, str]) -> None:
    """Refuse an unknown or malformed topic setting here, in one line naming the valid ones,
    before the broker is asked (its refusal would carry a validation dump)."""
    from pydantic import ValidationError

    from broker.topic_config import TopicConfig

    try:
        TopicConfig.model_validate(config)
    except ValidationError as exc:
        valid = ", ".join(sorted(TopicConfig.model_fields))
        raise UsageError(f"--set: {pydantic_line(exc)} (settings: {valid})") from None


def _records(topic: dict[str, Any]) -> int:
    records: int = sum(p["next_offset"] - p["log_start"] for p in topic["partitions"])
    return records


def run(args: argparse.Namespace) -> int:
    from broker.client import Admin

    with Admin(resolve_endpoint(args)) as admin:
        if args.action == "list":
            topics = admin.list_topics()
            if args.format == "json":
                print(json.dumps(topics, indent=2))
                return 0
            print(f"{'TOPIC':<32} {'PARTS':>5} {'RECORDS':>12} {'BYTES':>14}")
            for name, topic in topics.items():
                size = sum(p["size_bytes"] for p in topic["partitions"])
                print(f"{name:<32} {len(topic['partitions']):>5} {_records(topic):>12} {size:>14}")
        elif args.action == "describe":
            topic = admin.describe_topic(args.name)
            if args.format == "json":
                print(json.dumps(topic, indent=2))
                return 0
            print(f"topic {args.name}")
            for key, value in topic["config"].items():
                print(f"  {key} = {value}")
            print(f"  {'PART':>4} {'EARLIEST':>12} {'LATEST':>12} {'DURABLE':>12} {'BYTES':>14} {'SEGMENTS':>8}")
            for p in topic["partitions"]:
                print(f"  {p['partition']:>4} {p['log_start']:>12} {p['next_offset']:>12} {p['durable_offset']:>12} "
                      f"{p['size_bytes']:>14} {p['segments']:>8}")
        elif args.action == "create":
            config = parse_key_values(args.topic_config, "--set")
            check_topic_settings(config)
            result = admin.create_topic(args.name, args.partitions, config)
            print(f"created topic {args.name} with {result['config']['partitions']} partition(s)")
            if args.deprecated_config_setting:  # after success: a refusal stays one line on stderr
                print("edge topics create: --config KEY=VALUE is deprecated, use --set KEY=VALUE", file=sys.stderr)
        elif args.action == "delete":
            admin.delete_topic(args.name)
            print(f"deleted topic {args.name}")
    return 0
