"""``edge events create|list|show|delete``: pin the seconds around an incident (edge/events.py).

    edge events create --label hard_brake --before 30s --after 10s --topics camera.front,lidar.top
    edge events list --format json
    edge events show ev-20261206-035500-1a2b
    edge events delete ev-20261206-035500-1a2b
    edge events watch        # [[events.triggers]]: an event per matching record (run by edge up)
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from . import Subparsers
from .common import add_endpoint_args, load_app_config, resolve_endpoint
from .failures import UsageError

if TYPE_CHECKING:  # the broker client loads when a command runs, not when the parser is built
    from broker.client import Admin


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("events", help="create, list, show or delete events (pinned windows)")
    parser.add_argument("action", choices=["create", "list", "show", "delete", "watch"],
                        help="watch: create events from [[events.triggers]] until stopped (edge up runs it)")
    parser.add_argument("id", nargs="?", help="the event (show, delete)")
    parser.add_argument("--label", default="", help="what happened (create)")
    parser.add_argument("--before", help="window before now (create; default: [events] before, 30s)")
    parser.add_argument("--after", help="window after now, recorded on (create; default: [events] after, 10s)")
    parser.add_argument("--topics", help="comma-separated topics (create; default: [events] topics, else all recorded)")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="list output")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def _duration(text: str, option: str) -> int:
    from broker.base.units import parse_duration_ns

    try:
        return parse_duration_ns(text)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"invalid {option} {text!r}: {exc}") from None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def run(args: argparse.Namespace) -> int:
    from broker.client import Admin

    if args.action in ("show", "delete") and not args.id:
        raise UsageError(f"{args.action} needs the event's id (see `edge events list`)")
    if args.action == "watch":
        return _watch(args)
    with Admin(resolve_endpoint(args)) as admin:
        return _run(args, admin)


def _run(args: argparse.Namespace, admin: Admin) -> int:
    from edge.events import create_event, delete_event, list_events, show_event

    if args.action == "create":
        defaults = load_app_config(args).events
        topics = ([t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else defaults.topics)
        event = create_event(
            admin, label=args.label, topics=topics,
            before_ns=_duration(args.before, "--before") if args.before else defaults.before_ns,
            after_ns=_duration(args.after, "--after") if args.after else defaults.after_ns)
        print(json.dumps(event))
        return 0
    if args.action == "show":
        print(json.dumps(show_event(admin, args.id), indent=2))
        return 0
    if args.action == "delete":
        delete_event(admin, args.id)
        print(f"deleted {args.id}")
        return 0
    report = list_events(admin)
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"{'EVENT':<28} {'STATE':<10} {'START (UTC)':<24} {'END (UTC)':<24} {'PINNED MB':>9} {'LOST MB':>8}  LABEL")
    for e in report["events"]:
        print(f"{e['id']:<28} {e['state']:<10} {e['start']:<24} {e['end']:<24} {_mb(e['pinned_bytes']):>9} "
              f"{_mb(e['lost_bytes']):>8}  {e['label']}")
    print(f"pinned in total: {_mb(report['pinned_bytes'])} MB (shared segments counted once); overlapping events "
          "stack: each keeps its own pin")
    return 0


def _watch(args: argparse.Namespace) -> int:
    import signal
    import threading

    from broker.logs import setup_logging
    from edge.events import watch_triggers

    config = load_app_config(args).events
    if not config.triggers:
        print("edge events watch: no [[events.triggers]] in the config: nothing to watch")
        return 0
    setup_logging("INFO", "events")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watch_triggers(resolve_endpoint(args), config, stop)
    return 0
