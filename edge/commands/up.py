"""``edge up``: the whole appliance from one config, supervised, with a live status view.

Starts the broker, waits until it answers, records a drive start, starts the HTTP API and
the mirror (when configured) and every configured driver; restarts crashed children with
backoff; on Ctrl-C / SIGTERM stops drivers, then mirror and API, records the drive stop,
stops the broker, and exits 0 when every child exited cleanly.

One ``edge up`` per data directory: it holds ``<data_dir>/.edge-up.lock`` for its life
and refuses to start (exit 2, one line naming the lock and the holder's pid) while another
``edge up`` or a broker holds the directory. Its children die with it, even on SIGKILL
(edge/supervisor.py). Files it and its children create are 0640 at most (umask 0027, set
in edge/cli.py). Writes through the API need a token: the configured one, else one
generated into ``<data_dir>/.api-token`` (0600); the dashboard URL carrying it is
printed once at start.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import Subparsers
from .common import ensure_data_dir, positive_float, readable_file
from .failures import UsageError

if TYPE_CHECKING:  # the config and the supervisor load when the command runs
    from edge.config import AppConfig
    from edge.supervisor import ChildSpec, Supervisor


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("up", help="run the whole appliance (broker, drivers, API, mirror)")
    parser.add_argument("--config", type=readable_file,
                        help="appliance config (default: the embedded configs/sim.toml)")
    parser.add_argument("--data-dir", help="override [broker] data_dir (and an ipc endpoint: its socket goes there)")
    parser.add_argument("--status-interval", type=positive_float, default=2.0, help="seconds between status refreshes")
    parser.add_argument("--no-status", action="store_true", help="do not print the live status")
    parser.set_defaults(func=run)


def _has_command(name: str) -> bool:
    return importlib.util.find_spec(f"edge.commands.{name}") is not None


def build_specs(config: AppConfig, config_path: str, data_dir: Path, endpoint: str) -> list[ChildSpec]:
    from edge.supervisor import LAYER_BROKER, LAYER_DRIVERS, LAYER_SERVICES, ChildSpec

    edge = [sys.executable, "-m", "edge.cli"]
    common = ["--config", config_path, "--endpoint", endpoint]
    specs = [ChildSpec("broker", [*edge, "broker", "--config", config_path, "--data-dir", str(data_dir),
                                  "--endpoint", endpoint], LAYER_BROKER)]
    if config.api is not None and config.api.enabled and _has_command("api"):
        specs.append(ChildSpec("api", [*edge, "api", *common, "--data-dir", str(data_dir)], LAYER_SERVICES))
    if config.mirror is not None and _has_command("mirror"):
        specs.append(ChildSpec("mirror", [*edge, "mirror", *common, "--data-dir", str(data_dir)], LAYER_SERVICES))
    if config.events.triggers:  # [[events.triggers]]: records that create events (edge/events.py)
        specs.append(ChildSpec("events", [*edge, "events", "watch", *common], LAYER_SERVICES))
    for camera in config.cameras:
        specs.append(ChildSpec(f"camera-{camera.name}", [*edge, "driver", "camera", "--name", camera.name, *common],
                               LAYER_DRIVERS))
    for lidar in config.lidars:
        specs.append(ChildSpec(f"lidar-{lidar.name}", [*edge, "driver", "lidar", "--name", lidar.name, *common],
                               LAYER_DRIVERS))
    return specs


def format_children(children: list[dict[str, Any]]) -> str:
    """``processes: 3/4 up`` and a line per child: state, pid or next start, last error."""
    up = sum(1 for c in children if c["state"] == "running")
    restarts = sum(c["restarts"] for c in children)
    lines = [f"processes: {up}/{len(children)} up, {restarts} restart(s)"]
    for c in children:
        if c["state"] == "running":
            detail = f"pid {c['pid']}"
        elif c["state"] == "backoff":
            detail = f"exit {c['last_exit']}, restart in {c['restart_in_s']:.1f}s"
        else:
            detail = f"exit {c['last_exit']}"
        if c["restarts"]:
            detail += f", {c['restarts']} restart(s)"
        if c["state"] != "running" and c["last_error"]:
            detail += f": {c['last_error']}"
        lines.append(f"  {c['name']:<20} {c['state']:<8} {detail}")
    return "\n".join(lines)


def wait_for_broker(endpoint: str, supervisor: Supervisor, timeout_s: float = 30.0) -> None:
    from broker.client import Admin
    from broker.errors import BrokerError

    deadline = time.monotonic() + timeout_s
    # an ipc endpoint: wait for its socket file first; a ping sent before the broker listens
    # waits out its whole 0.5 s timeout (a stale file from a killed broker only skips this)
    socket_file = Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None
    while socket_file is not None and not socket_file.exists() and time.monotonic() < deadline:
        supervisor.poll()
        time.sleep(0.01)
    with Admin(endpoint, timeout_s=0.5) as admin:
        while True:
            try:
                admin.ping()
                return
            except BrokerError:
                supervisor.poll()
                if time.monotonic() > deadline:
                    raise SystemExit(f"edge up: the broker did not answer on {endpoint} within {timeout_s:.0f}s "
                                     f"(see {supervisor.log_dir / 'broker.log'})") from None
                time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    from broker.errors import BrokerError
    from broker.logs import log_event, setup_logging
    from edge.config import DEFAULT_CONFIG, load_config
    from edge.drives import new_drive_name, record_event
    from edge.status import StatusTracker, format_status
    from edge.supervisor import Supervisor

    config_path = str(Path(args.config or DEFAULT_CONFIG).resolve())
    config = load_config(config_path)
    from .common import export_client_keys

    export_client_keys(config)  # this process and every child reach a CURVE broker with them
    data_dir = Path(args.data_dir).resolve() if args.data_dir else config.broker.data_dir
    ensure_data_dir(data_dir)
    from broker.storage.dir_lock import BROKER_LOCK_FILE, SUPERVISOR_LOCK_FILE, check_free, hold_for_process

    hold_for_process(data_dir / SUPERVISOR_LOCK_FILE, "edge up")  # DataDirLockedError: exit 2, one line
    check_free(data_dir / BROKER_LOCK_FILE, "broker")  # fail now, not after the broker's retries
    dashboard = None
    if config.api is not None and config.api.enabled and _has_command("api"):
        from edge.api.config import ApiConfigError

        from .api import dashboard_url

        try:
            dashboard = dashboard_url(config.api.host, config.api.port, config.api.token_for(data_dir))
        except ApiConfigError as exc:
            raise UsageError(exc.message) from None
    # --data-dir moves the ipc socket with the data; a tcp endpoint (and its CURVE) is kept
    configured = config.broker.endpoint
    keep = configured and (configured.startswith("tcp://") or not args.data_dir)
    endpoint = configured if configured and keep else f"ipc://{data_dir}/broker.sock"
    setup_logging(config.broker.log_level, "edge-up")
    import logging

    logger = logging.getLogger("edge.up")
    supervisor = Supervisor(build_specs(config, config_path, data_dir, endpoint), data_dir / "logs")
    stopping = {"flag": False}

    def request_stop(*_: object) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"edge up: config {config_path}, data {data_dir}, broker {endpoint}", flush=True)
    supervisor.start(wait_ready=lambda: wait_for_broker(endpoint, supervisor))
    drive = new_drive_name()
    try:
        record_event(endpoint, "start", drive, reason="edge up", vehicle=config.vehicle.id)
    except BrokerError as exc:
        log_event(logger, logging.WARNING, "drive_start_not_recorded", drive=drive, error=exc)
    print(f"edge up: running {len(supervisor.children)} processes, drive {drive}; Ctrl-C stops", flush=True)
    if dashboard is not None:
        print(f"edge up: dashboard {dashboard}  (writes need its token; `edge api --print-url` shows it again)",
              flush=True)
    tracker = StatusTracker(endpoint, min_free_bytes=config.broker.disk_guard.min_free_bytes, include_drives=False)
    tty = sys.stdout.isatty()
    next_status = time.monotonic() + args.status_interval
    while not stopping["flag"]:
        supervisor.poll()
        if not args.no_status and time.monotonic() >= next_status:
            next_status = time.monotonic() + args.status_interval
            try:
                view = format_status(tracker.sample())
            except BrokerError as exc:
                view = f"status unavailable: {exc.message}"
            view += "\n" + format_children(supervisor.describe())
            if tty and dashboard is not None:  # the screen is redrawn: keep the link on it
                view = f"dashboard: {dashboard}\n{view}"
            print(("\x1b[H\x1b[2J" if tty else "") + view + ("" if tty else "\n"), flush=True)
        time.sleep(0.2)

    print("edge up: stopping drivers, then services, then the broker", flush=True)

    def close_drive() -> None:
        try:
            record_event(endpoint, "stop", drive, reason="edge up stopped", vehicle=config.vehicle.id)
        except BrokerError as exc:
            log_event(logger, logging.WARNING, "drive_stop_not_recorded", drive=drive, error=exc)

    codes = supervisor.stop(before_broker=close_drive)
    # -SIGTERM: a child that had not yet installed its handler died of the stop we asked for
    bad = {name: code for name, code in codes.items() if code not in (0, None, -signal.SIGTERM)}
    if bad:
        print(f"edge up: stopped; non-zero exits: {bad}", file=sys.stderr)
        return 1
    print("edge up: stopped cleanly", flush=True)
    return 0
