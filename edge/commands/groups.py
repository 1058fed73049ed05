"""``edge groups list|describe GROUP|reset GROUP``: consumer groups, as kafka-consumer-groups.

    edge groups list                                   # groups, members, total lag
    edge groups describe readers                       # per partition: committed, end, lag, member
    edge groups reset readers --to earliest --dry-run  # the plan, nothing committed
    edge groups reset readers --to -1h --topic camera.front
    edge groups reset readers --to 1200                # an offset (clamped to the log's range)

A reset commits the new offsets for the group; it is refused (exit 1) while the group has
live members, which would overwrite it with their next commit (Kafka refuses the same).
``--to`` takes earliest, latest, an offset, or a time (ISO-8601, epoch ns, -DURATION): the
first record at or after it. Without ``--topic`` the partitions the group has committed
offsets for are reset; with it, every partition of that topic.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from . import Subparsers
from .common import OFFSET_DIGITS_MAX, add_endpoint_args, add_format_arg, parse_time_ns, resolve_endpoint
from .failures import UsageError

if TYPE_CHECKING:  # the broker client loads when a command runs, not when the parser is built
    from broker.client import Admin


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("groups", help="list, describe or reset consumer groups (offsets and lag)",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="groups with members and total lag")
    describe = sub.add_parser("describe", help="per partition: committed offset, log end, lag, member")
    describe.add_argument("group")
    reset = sub.add_parser("reset", help="move a group's committed offsets (refused while it has members)")
    reset.add_argument("group")
    reset.add_argument("--to", required=True, metavar="WHERE",
                       help="earliest | latest | OFFSET | ISO-8601 time | epoch ns | -DURATION (e.g. -1h)")
    reset.add_argument("--topic", help="reset every partition of this topic (default: the group's partitions)")
    reset.add_argument("--dry-run", action="store_true", help="print the new offsets, commit nothing")
    for p in (ls, describe, reset):
        add_format_arg(p)
        add_endpoint_args(p)
    parser.set_defaults(func=run)


def _lag_rows(group: dict[str, Any], topics: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per partition the group committed or was handed: committed, end, lag, member."""
    committed = {(t, p): o for t, p, o in group.get("offsets", [])}
    owner = {(t, p): member for member, tps in group.get("members", {}).items() for t, p in tps}
    rows = []
    for topic, partition in sorted(set(committed) | set(owner)):
        parts = topics.get(topic, {}).get("partitions", [])
        end = parts[partition]["next_offset"] if partition < len(parts) else None
        offset = committed.get((topic, partition))
        lag = None if offset is None or end is None else max(0, end - offset)
        rows.append({"topic": topic, "partition": partition, "committed": offset, "end": end, "lag": lag,
                     "member": owner.get((topic, partition))})
    return rows


def _show(value: object) -> str:
    return "-" if value is None else str(value)


def _group(admin: Admin, name: str) -> dict[str, Any]:
    groups = admin.list_groups()
    if name not in groups:
        known = ", ".join(sorted(groups)) or "none yet"
        raise UsageError(f"no consumer group {name!r} (groups: {known})")
    group: dict[str, Any] = groups[name]
    return group


def _target(admin: Admin, spec: str, topic: str, partition: int, info: dict[str, Any]) -> int:
    start: int = info["log_start"]
    end: int = info["next_offset"]
    if spec == "earliest":
        return start
    if spec == "latest":
        return end
    if spec.isdigit() and len(spec) <= OFFSET_DIGITS_MAX:
        return min(max(int(spec), start), end)
    return admin.list_offset(topic, partition, "timestamp", parse_time_ns(spec))


def _reset(admin: Admin, args: argparse.Namespace) -> int:
    group = _group(admin, args.group)
    topics = admin.list_topics()
    if args.topic is not None:
        if args.topic not in topics:
            raise UsageError(f"no topic {args.topic!r} (see `edge topics list`)")
        chosen = [(args.topic, p["partition"]) for p in topics[args.topic]["partitions"]]
    else:
        chosen = sorted((t, p) for t, p, _ in group.get("offsets", []))
        if not chosen:
            raise UsageError(f"group {args.group!r} has no committed offsets: name the topic with --topic")
    if args.to not in ("earliest", "latest") and not (args.to.isdigit() and len(args.to) <= OFFSET_DIGITS_MAX):
        parse_time_ns(args.to)  # a bad --to is a usage error before anything is asked
    members = sorted(group.get("members", {}))
    if members and not args.dry_run:
        print(f"edge groups: group {args.group!r} has {len(members)} live member(s) ({', '.join(members)}): "
              "stop its consumers first, or look with --dry-run", file=sys.stderr)
        return 1
    old = {(t, p): o for t, p, o in group.get("offsets", [])}
    plan = []
    for topic, partition in chosen:
        parts = topics.get(topic, {}).get("partitions", [])
        if partition >= len(parts):
            continue  # the topic was deleted or shrank: nothing to point at
        new = _target(admin, args.to, topic, partition, parts[partition])
        plan.append({"topic": topic, "partition": partition, "old": old.get((topic, partition)), "new": new})
    if not args.dry_run:
        admin.commit_offsets(args.group, {(r["topic"], r["partition"]): r["new"] for r in plan})
    if args.format == "json":
        print(json.dumps({"group": args.group, "dry_run": args.dry_run, "partitions": plan}, indent=2))
        return 0
    print(f"{'TOPIC':<32} {'PART':>4} {'OLD':>12} {'NEW':>12}")
    for r in plan:
        print(f"{r['topic']:<32} {r['partition']:>4} {_show(r['old']):>12} {r['new']:>12}")
    verb = "would reset (dry run, nothing committed)" if args.dry_run else "reset"
    print(f"{verb} group {args.group}: {len(plan)} partition(s) to {args.to}")
    return 0


def run(args: argparse.Namespace) -> int:
    from broker.client import Admin

    with Admin(resolve_endpoint(args)) as admin:
        if args.action == "reset":
            return _reset(admin, args)
        if args.action == "list":
            groups = admin.list_groups()
            topics = admin.list_topics()
            summary: dict[str, dict[str, Any]] = {}
            for name, group in sorted(groups.items()):
                rows = _lag_rows(group, topics)
                summary[name] = {"members": len(group.get("members", {})),
                                 "topics": sorted({r["topic"] for r in rows}),
                                 "lag": sum(r["lag"] or 0 for r in rows)}
            if args.format == "json":
                print(json.dumps(summary, indent=2))
                return 0
            print(f"{'GROUP':<32} {'MEMBERS':>7} {'LAG':>12}  TOPICS")
            for name, s in summary.items():
                print(f"{name:<32} {s['members']:>7} {s['lag']:>12}  {','.join(s['topics'])}")
            return 0
        group = _group(admin, args.group)
        rows = _lag_rows(group, admin.list_topics())
        if args.format == "json":
            print(json.dumps({"group": args.group, "generation": group.get("generation"),
                              "members": sorted(group.get("members", {})), "partitions": rows}, indent=2))
            return 0
        print(f"group {args.group}: {len(group.get('members', {}))} live member(s), "
              f"lag {sum(r['lag'] or 0 for r in rows)}")
        print(f"{'TOPIC':<32} {'PART':>4} {'COMMITTED':>12} {'END':>12} {'LAG':>10}  MEMBER")
        for r in rows:
            print(f"{r['topic']:<32} {r['partition']:>4} {_show(r['committed']):>12} {_show(r['end']):>12} "
                  f"{_show(r['lag']):>10}  {_show(r['member'])}")
    return 0
