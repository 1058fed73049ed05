"""``edge replay``: republish a window of recorded topics at the recorded timing.

Control while it runs: on a terminal, keys (space pause/resume, + / - speed ×2 / ÷2,
← / → seek 10 s, r restart, q quit); on a pipe, one command per line (``pause``,
``resume``, ``speed 2`` or ``speed max``, ``seek +10s`` / ``seek -10s`` / ``seek TIME``,
``restart``, ``status``, ``stop``), answered with a JSON status line on stdout.
Progress goes to stderr. Ctrl-C stops cleanly (everything sent so far is flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

from . import Subparsers
from .common import add_endpoint_args, resolve_endpoint

if TYPE_CHECKING:  # the replay package loads when the command runs
    from edge.replay.player import Player, ReplayStatus

KEYS_HELP = "space pause/resume · +/- speed · ←/→ seek 10s · r restart · q quit"


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("replay", help="republish recorded topics at their recorded timing",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", required=False, default="",
                        help="comma list of topics or patterns (camera.*), each optionally TOPIC:PARTITION "
                             "(default with --drive: the drive's topics)")
    parser.add_argument("--start", help="ISO-8601, epoch ns, -10m, topic:partition:offset, earliest, or a drive name")
    parser.add_argument("--end", help="as --start, or +DURATION from the start; default now")
    parser.add_argument("--drive", help="replay this drive (see `edge drives`)")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=1.0, help="playback speed, 0.1 to 10 (default 1)")
    speed.add_argument("--max", action="store_true", help="as fast as possible")
    parser.add_argument("--loop", action="store_true", help="start over at the end of the window")
    parser.add_argument("--prefix", default="replay.", help="destination topic = PREFIX + source topic")
    parser.add_argument("--remap", action="append", default=[], metavar="SRC=DEST",
                        help="destination topic for one source topic (repeatable, or comma list)")
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="read the mirror's copy from this Kafka cluster")
    parser.add_argument("--vehicle", help="vehicle id of the Kafka copy (with --kafka)")
    parser.add_argument("--kafka-template", default="vehicles.{vehicle}.{topic}",
                        help="the mirror's topic naming (default vehicles.{vehicle}.{topic})")
    parser.add_argument("--max-gap", default="10s", metavar="DURATION",
                        help="cut out jumps in capture time longer than this (a clock step, all sensors silent); "
                             "0 keeps every gap (default 10s)")
    parser.add_argument("--restamp", action="store_true",
                        help="stamp replayed records with the host clock (original time in replay.capture_ns)")
    parser.add_argument("--no-control", action="store_true", help="ignore stdin")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    parser.add_argument("--allow-gaps", action="store_true",
                        help="exit 0 even when records of the window were no longer in the log (still reported)")
    add_endpoint_args(parser)
    parser.set_defaults(func=run)


def _progress_line(status: ReplayStatus) -> str:
    from edge.replay.timespec import format_ns

    pct = "   ?%" if status.fraction is None else f"{status.fraction * 100:5.1f}%"
    pos = format_ns(status.position_ns) if status.position_ns else "-"
    speed = "max" if status.speed is None else f"{status.speed:g}x"
    eta = "" if status.eta_s is None else f"  ETA {status.eta_s:.0f}s"
    return (f"\r{status.state:8s} {pct} at {pos}  {status.records} records "
            f"{status.bytes / 1e6:.1f} MB  {status.rate_rps:.0f} rec/s  speed {speed}{eta}   ")


def _apply_line(player: Player, line: str, out: TextIO) -> bool:
    """One pipe command; False when it asks to stop."""
    from broker.base.units import parse_duration_ns
    from edge.replay.timespec import parse_point

    words = line.split()
    if not words:
        return True
    cmd, arg = words[0].lower(), (words[1] if len(words) > 1 else "")
    try:
        if cmd == "pause":
            player.pause()
        elif cmd == "resume":
            player.resume()
        elif cmd == "speed":
            player.set_speed(None if arg.lower() == "max" else float(arg))
        elif cmd == "seek" and arg[:1] in "+-" and arg[1:2].isdigit():
            delta = parse_duration_ns(arg[1:])
            player.seek_by(delta if arg[0] == "+" else -delta)
        elif cmd == "seek" and arg:
            point = parse_point(arg, role="start")
            if not isinstance(point, int):
                raise ValueError("seek takes a time, not an offset")
            player.seek(point)
        elif cmd == "restart":
            player.restart()
        elif cmd in ("stop", "quit", "q"):
            player.stop()
            return False
        elif cmd != "status":
            raise ValueError(
                f"unknown command {cmd!r} (pause, resume, speed N|max, seek ±DUR|TIME, restart, status, stop)")
        time.sleep(0.05)  # let the player apply it before reporting
        out.write(json.dumps(player.status().to_json()) + "\n")
    except ValueError as exc:
        out.write(json.dumps({"error": str(exc)}) + "\n")
    except Exception as exc:  # a bad command must not end the replay
        out.write(json.dumps({"error": getattr(exc, "message", str(exc))}) + "\n")
    out.flush()
    return True


def _control_pipe(player: Player, done: threading.Event) -> None:
    fd = sys.stdin.fileno()
    buffer = b""
    while not done.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not _apply_line(player, line.decode("utf-8", "replace"), sys.stdout):
                return


def _control_keys(player: Player, done: threading.Event) -> None:
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            key = os.read(fd, 8)
            if key == b" ":
                player.toggle_pause()
            elif key in (b"+", b"="):
                player.set_speed(min(10.0, (player.speed or 10.0) * 2))
            elif key in (b"-", b"_"):
                player.set_speed(max(0.1, (player.speed or 10.0) / 2))
            elif key == b"\x1b[C":
                player.seek_by(10_000_000_000)
            elif key == b"\x1b[D":
                player.seek_by(-10_000_000_000)
            elif key in (b"r", b"R"):
                player.restart()
            elif key in (b"q", b"Q"):
                player.stop()
                return
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from edge.drives import drive_resolution, source_drive_resolution
    from edge.replay import ReplayOptions, TopicNaming, open_source, parse_remap, parse_window, prepare_replay
    from edge.replay.missing import missing_exit_status

    endpoint = resolve_endpoint(args)
    remap = parse_remap(args.remap)
    patterns = [p.strip() for p in args.topics.split(",") if p.strip()]
    if not patterns and not args.drive:
        print("edge replay: give --topics (or --drive for the drive's topics)", file=sys.stderr)
        return 2
    cloud = None
    if args.kafka and args.drive:  # a drive from the cloud: the catalog the mirror shipped
        cloud = open_source(kafka=args.kafka, vehicle=args.vehicle, template=args.kafka_template)
    try:
        spec = parse_window(args.start, args.end, drive=args.drive,
                            resolver=partial(source_drive_resolution, cloud) if cloud
                            else lambda name: drive_resolution(endpoint, name))
    except ValueError as exc:  # TimeSpecError: a time argument that is not one of the forms
        print(f"edge replay: {exc}", file=sys.stderr)
        return 2
    finally:
        if cloud is not None:
            cloud.close()
    source = open_source(endpoint=endpoint, kafka=args.kafka, vehicle=args.vehicle, template=args.kafka_template)
    from broker.base.units import parse_duration_ns

    try:
        max_gap_s = parse_duration_ns(args.max_gap) / 1e9
    except ValueError:
        print(f"edge replay: --max-gap {args.max_gap!r} is not a duration (e.g. 10s, 500ms, 0)", file=sys.stderr)
        return 2
    options = ReplayOptions(speed=None if args.max else args.speed, loop=args.loop, restamp=args.restamp,
                            max_gap_s=max_gap_s)
    err = sys.stderr
    show = not args.quiet

    def on_progress(status: ReplayStatus) -> None:
        if show and err.isatty():  # a log or a pipe gets the first and the last line only
            err.write(_progress_line(status))
            err.flush()

    try:
        session = prepare_replay(source, patterns, spec, endpoint=endpoint,
                                 naming=TopicNaming(args.prefix, remap), options=options, on_progress=on_progress)
    except BaseException:
        source.close()
        raise
    player = session.player
    if show:
        routes = ", ".join(f"{s} → {d}" for s, d in session.destinations.items())
        err.write(f"replay {options.replay_id}: {routes}; about {session.expected_records} records\n")
    done = threading.Event()
    control = None
    if not args.no_control and sys.stdin is not None and not sys.stdin.closed:
        try:
            interactive = os.isatty(sys.stdin.fileno())
        except (OSError, ValueError):
            interactive = None
        if interactive is not None:
            if interactive and show:
                err.write(KEYS_HELP + "\n")
            control = threading.Thread(target=_control_keys if interactive else _control_pipe,
                                       args=(player, done), name="edge-replay-control", daemon=True)
            control.start()
    previous = signal.signal(signal.SIGINT, lambda *_: player.stop())
    signal.signal(signal.SIGTERM, lambda *_: player.stop())
    try:
        status = player.run()
    finally:
        done.set()
        signal.signal(signal.SIGINT, previous)
        if control is not None:
            control.join(1.0)
        session.close()
    if show:
        err.write(_progress_line(status) + "\n")
    summary = status.to_json()
    summary["destinations"] = session.destinations
    summary["missing"] = session.missing.to_json()
    summary["keyframes"] = session.keyframes.to_json() if session.keyframes else None
    print(json.dumps(summary), flush=True)
    return missing_exit_status("replay", summary["missing"], args.allow_gaps, err)
