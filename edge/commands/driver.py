"""``edge driver camera|lidar --name NAME``: one sensor driver process.

Settings come from the config's ``[[cameras]]`` / ``[[lidars]]`` entry of that name;
flags override them, and with flags alone (no entry) a driver runs without any config."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from . import Subparsers
from .common import add_endpoint_args, log_level, readable_file, resolve_endpoint
from .failures import UsageError, pydantic_line

if TYPE_CHECKING:  # the config, its models and the event triggers load when the driver starts
    from edge.config import AppConfig, CameraConfig, LidarConfig
    from edge.events import GapTrigger


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("driver", help="run a sensor driver (camera or lidar)")
    kinds = parser.add_subparsers(dest="kind", required=True)
    camera = kinds.add_parser("camera", help="a camera: sim, V4L2 device, stream URL or video file")
    camera.add_argument("--fps", type=float)
    camera.add_argument("--width", type=int)
    camera.add_argument("--height", type=int)
    camera.add_argument("--encoding", choices=["jpeg", "png", "bgr8", "passthrough"],
                        help="passthrough: record H.264/H.265/MJPEG as the camera sends it, no re-encoding")
    camera.add_argument("--quality", type=int)
    lidar = kinds.add_parser("lidar", help="a LiDAR: sim, Velodyne UDP, pcap capture, PCD/PLY directory")
    lidar.add_argument("--model", choices=["VLP-16", "Puck LITE", "Puck Hi-Res", "HDL-32E", "VLP-32C", "HDL-64E S2",
                                           "HDL-64E S3", "VLS-128", "Alpha Prime"],
                       help="override the model identified from the packets")
    lidar.add_argument("--calibration", type=readable_file,
                       help="Velodyne: VeloView XML or ROS YAML (must fit the packets' model); Ouster: metadata JSON")
    for p in (camera, lidar):
        p.add_argument("--name", required=True, help="sensor name (its config entry, and the default topic)")
        p.add_argument("--source", help="camera: sim|N|/dev/videoN|URL|PATH; lidar: sim|udp://HOST:PORT|pcap:PATH|pcd-dir:PATH")
        p.add_argument("--topic")
        p.add_argument("--rate", help="file sources: recorded | max | HZ")
        p.add_argument("--loop", action="store_true", default=None, help="restart a file source at its end")
        p.add_argument("--keep-timestamps", action="store_true", default=None,
                       help="stamp records with the times recorded in the file, not the host clock")
        p.add_argument("--queue-size", type=int)
        p.add_argument("--log-level", type=log_level, default="INFO")
        add_endpoint_args(p)
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> tuple[CameraConfig | LidarConfig, AppConfig | None]:
    from pydantic import ValidationError

    from edge.config import CameraConfig, ConfigError, LidarConfig, load_config

    model: type[CameraConfig | LidarConfig] = CameraConfig if args.kind == "camera" else LidarConfig
    base: dict[str, Any] = {"name": args.name}
    config = None
    if args.config or not args.source:
        config = load_config(args.config)
        try:
            entry = config.camera(args.name) if args.kind == "camera" else config.lidar(args.name)
            base = entry.model_dump(exclude_unset=True)
        except ConfigError:
            if not args.source:
                raise
    overrides = {k: v for k, v in vars(args).items() if k in model.model_fields and v is not None and k != "name"}
    try:
        return model.model_validate({**base, **overrides}), config
    except ValidationError as exc:  # name the setting (flag or config entry) and why
        raise UsageError(f"invalid {args.kind} settings for {args.name!r}: {pydantic_line(exc)}") from None


def run(args: argparse.Namespace) -> int:
    from broker.logs import setup_logging
    from drivers.processes import run_camera, run_lidar

    settings, config = _settings(args)
    setup_logging(args.log_level, f"{args.kind}-{args.name}")
    endpoint = resolve_endpoint(args)
    runner = run_camera if args.kind == "camera" else run_lidar
    triggers: dict[str, GapTrigger] = {}
    if config is not None:
        from edge.events import GapTrigger

        if config.events.on_gap:
            triggers["on_gap"] = GapTrigger(endpoint, settings.name, config.events)
        if config.events.on_clock_step:
            triggers["on_clock_step"] = GapTrigger(endpoint, settings.name, config.events, kind="clock_step")
    try:
        return runner(settings, endpoint, **triggers)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # one clear line, not a traceback
        print(f"edge driver {args.kind} {args.name}: {exc}", file=sys.stderr)
        return 1
