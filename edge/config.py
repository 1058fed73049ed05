"""The appliance config file: one TOML schema for every process (broker, drivers, mirror, API).

``load_config(path)`` parses and validates the whole file with pydantic; an invalid file
raises ConfigError whose message names the file, each bad key (dotted path) and what was
expected. Unknown keys are errors. Sizes ("256MiB") and durations ("72h", "200ms") are
accepted as strings wherever a size or duration is expected.

The embedded default is ``configs/sim.toml`` (simulated sensors; works on any machine).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from broker.errors import BrokerError, InvalidConfigError
from broker.logs import is_secret_key
from broker.storage.layout import validate_topic_name
from broker.storage.retention import DiskGuard
from broker.topic_config import TopicConfig
from edge.api.config import ApiConfig
from edge.events import EventsConfig
from edge.mirror.config import MirrorConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "sim.toml"


class ConfigError(InvalidConfigError):
    """A config file is missing, not TOML, or does not match the schema."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VehicleConfig(_Section):
    id: str = Field("sim-vehicle", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")


class CurveConfig(_Section):
    """``[broker.curve]``: ZeroMQ CURVE for a tcp endpoint (key files from ``edge keys``;
    paths relative to the config file)."""

    server_secret_key: Path = Field(description="the broker's NAME.key_secret")
    authorized_keys: Path = Field(description="directory of the public NAME.key files of accepted clients")
    client_secret_key: Path | None = Field(None, description="this appliance's own client NAME.key_secret "
                                                             "(used by edge up, drivers, mirror, API)")
    server_public_key: Path | None = Field(None, description="the broker's public NAME.key, for the clients")


class BrokerConfig(_Section):
    data_dir: Path = Field(Path("data"), description="where segments live; relative to the config file")
    endpoint: str | None = Field(None, description="default ipc://<data_dir>/broker.sock")
    curve: CurveConfig | None = None
    allow_insecure_tcp: bool = Field(False, description="allow a non-loopback tcp endpoint without CURVE")
    auto_create_topics: bool = True
    defaults: TopicConfig = Field(default_factory=TopicConfig)
    disk_guard: DiskGuard = Field(default_factory=DiskGuard)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    kafka_listen: str = Field("127.0.0.1:9092", description="Kafka protocol listener HOST:PORT, or 'off'")
    kafka_advertised: str | None = Field(None, description="HOST:PORT told to Kafka clients (default: kafka_listen)")
    kafka_insecure: bool = Field(False, description="allow a non-loopback kafka_listen without TLS/SASL")
    kafka_tls_cert: Path | None = Field(None, description="TLS certificate (PEM) of the Kafka listener")
    kafka_tls_key: Path | None = Field(None, description="its private key (PEM)")
    kafka_sasl_users: Path | None = Field(None, description="SASL/PLAIN users file: user:password lines")

    @field_validator("kafka_listen", "kafka_advertised")
    @classmethod
    def _check_kafka_address(cls, value: str | None) -> str | None:
        if value is not None and value != "off":
            from broker.kafka.address import parse_host_port

            parse_host_port(value)  # ValueError names the bad value
        return value

    @property
    def kafka_listen_set(self) -> bool:
        """Whether the config names the Kafka address (a busy default is not fatal)."""
        return "kafka_listen" in self.model_fields_set

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ipc://", "tcp://")):
            raise ValueError(
                f"expected an endpoint like ipc:///path/broker.sock or tcp://127.0.0.1:5555, got {value!r}")
        return value

    def resolved_endpoint(self) -> str:
        return self.endpoint or f"ipc://{self.data_dir.resolve()}/broker.sock"


SensorName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Rate = Annotated[str, Field(pattern=r"^(recorded|max|\d+(\.\d+)?)$")]
Policy = Literal["drop_oldest", "drop_newest", "block"]


class MountingConfig(_Section):
    """Where a sensor sits on the vehicle: its frame in ``parent`` (REP-103: x forward, y
    left, z up), translation in metres, then rotation as roll, pitch, yaw in degrees (about
    x, y, z of the parent, applied yaw first: the usual ZYX / URDF rpy convention)."""

    parent: SensorName = Field("base_link", description="the frame the sensor is mounted on")
    xyz: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="metres, in the parent frame")
    rpy_deg: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="roll, pitch, yaw in degrees")

    def header(self) -> str:
        """The record header that carries it (JSON), for export's frame transforms."""
        import json

        return json.dumps({"parent": self.parent, "xyz": list(self.xyz), "rpy_deg": list(self.rpy_deg)},
                          separators=(",", ":"))


class CameraConfig(_Section):
    name: SensorName
    topic: str | None = Field(None, description="default camera.<name>")
    source: str = Field("sim", description="sim | N | /dev/videoN | rtsp://… | http://… | a video file")
    fps: float | None = Field(None, gt=0, le=1000, description="capture rate for sim and devices")
    width: int | None = Field(None, ge=16, le=16384)
    height: int | None = Field(None, ge=16, le=16384)
    encoding: Literal["jpeg", "png", "bgr8", "passthrough"] = Field(
        "jpeg",
        description="passthrough: record the camera's H.264/H.265/MJPEG as sent (drivers/camera/passthrough.py)")
    quality: int = Field(85, ge=1, le=100, description="JPEG quality")
    rate: Rate = Field("recorded", description="file sources: recorded | max | Hz")
    loop: bool = False
    keep_timestamps: bool = False
    mounting: MountingConfig | None = Field(None, description="extrinsics: the camera frame in base_link")
    queue_size: int = Field(8, ge=1, le=1024)
    overload: Policy = "drop_oldest"

    def resolved_topic(self) -> str:
        return self.topic or f"camera.{self.name}"


class LidarConfig(_Section):
    name: SensorName
    topic: str | None = Field(None, description="default lidar.<name>")
    source: str = Field("sim", description="sim | udp://HOST:PORT | pcap:PATH | pcd-dir:PATH")
    model: Literal["VLP-16", "Puck LITE", "Puck Hi-Res", "HDL-32E", "VLP-32C", "HDL-64E S2", "HDL-64E S3", "VLS-128",
                   "Alpha Prime"] | None = Field(
        None, description="default: identified from the packets (drivers/lidar/identify.py); set only to override")
    calibration: Path | None = Field(None, description="Velodyne: VeloView XML or ROS YAML (must fit the packets; "
                                     "default: built-in); Ouster: the sensor metadata JSON (required)")
    rate: Rate = Field("recorded", description="file sources: recorded | max | Hz; sim: Hz")
    loop: bool = False
    keep_timestamps: bool = False
    mounting: MountingConfig | None = Field(None, description="extrinsics: the sensor frame in base_link")
    queue_size: int = Field(4, ge=1, le=1024)
    overload: Policy = "drop_oldest"

    def resolved_topic(self) -> str:
        return self.topic or f"lidar.{self.name}"


class AppConfig(_Section):
    vehicle: VehicleConfig = Field(default_factory=VehicleConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    cameras: list[CameraConfig] = Field(default_factory=list)
    lidars: list[LidarConfig] = Field(default_factory=list)
    api: ApiConfig | None = Field(None, description="HTTP API and dashboard (run by `edge up` when enabled)")
    mirror: MirrorConfig | None = Field(None, description="ship topics to a cloud Kafka cluster")
    events: EventsConfig = Field(default_factory=EventsConfig, description="defaults of events (edge/events.py)")
    topics: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-topic overrides of broker.defaults, by topic name"
    )
    source: Path | None = Field(None, exclude=True, description="the file this was loaded from")

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, topics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in topics:
            try:
                validate_topic_name(name)
            except BrokerError as exc:  # InvalidTopicError is not a ValueError
                raise ValueError(exc.message) from None
        return topics

    @field_validator("cameras", "lidars")
    @classmethod
    def _unique_names(cls, sensors: list[CameraConfig] | list[LidarConfig]) -> list[CameraConfig] | list[LidarConfig]:
        names = [s.name for s in sensors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sensor names must be unique, repeated: {', '.join(duplicates)}")
        return sensors

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise ConfigError(f"{self.source}: no [[cameras]] entry named {name!r} "
                          f"(have: {', '.join(c.name for c in self.cameras) or 'none'})")

    def lidar(self, name: str) -> LidarConfig:
        for lidar in self.lidars:
            if lidar.name == name:
                return lidar
        raise ConfigError(f"{self.source}: no [[lidars]] entry named {name!r} "
                          f"(have: {', '.join(lidar.name for lidar in self.lidars) or 'none'})")

    def topic_config(self, name: str) -> TopicConfig:
        """The broker defaults with this topic's overrides applied."""
        return self.broker.defaults.merged(self.topics.get(name, {}))


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid config ({exc.error_count()} error{'s' if exc.error_count() != 1 else ''}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema)"
        got = err.get("input")
        if err["type"] in ("extra_forbidden", "missing") or isinstance(got, dict):
            got_text = ""
        elif any(is_secret_key(str(p)) for p in err["loc"]):
            got_text = " (value not shown: it is a secret)"
        else:
            got_text = f" (got {got!r})"
        lines.append(f"  {key}: {msg}{got_text}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], path: Path) -> AppConfig:
    try:
        config = AppConfig.model_validate(data)
        for name in config.topics:
            config.topic_config(name)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    except InvalidConfigError as exc:
        raise ConfigError(f"{path}: invalid config: {exc}") from None
    config.source = path
    if not config.broker.data_dir.is_absolute():
        config.broker.data_dir = (path.parent / config.broker.data_dir).resolve()
    curve = config.broker.curve
    if curve is not None:
        for name in ("server_secret_key", "authorized_keys", "client_secret_key", "server_public_key"):
            value = getattr(curve, name)
            if value is not None and not value.is_absolute():
                setattr(curve, name, (path.parent / value).resolve())
    for name in ("kafka_tls_cert", "kafka_tls_key", "kafka_sasl_users"):  # relative to the config file too
        value = getattr(config.broker, name)
        if value is not None and not value.is_absolute():
            setattr(config.broker, name, (path.parent / value).resolve())
    return config


def load_config(path: str | os.PathLike[str] | None = None) -> AppConfig:
    """Load and validate a config file (default: the embedded configs/sim.toml)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
                          "TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path)
