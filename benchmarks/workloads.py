"""The workloads of issue 9, from real vehicle sensor rates, as phases the harness runs per system.

A ``Phase`` is what one measurement is: streams of records (``Stream``: topic, one
partition per stream, record size or size range, rate per stream or maximum rate), grouped
into producer processes (``Stream.producer``), one consumer process reading every topic of
the phase from the beginning, a duration and a durability mode.

- camera: 8 × 30 fps × ~250 KB (230-270 KB, incompressible), 60 MB/s offered;
- raw_camera: 6 × 3.75 MB at 24 Hz (540 MB/s offered), and the same 6 streams at maximum rate;
- lidar: 1 × 3.2 MB at 10 Hz plus 4 × 160 KB at 25 Hz; and packet mode 5 × 754 packets/s × 1,206 B;
- telemetry: 100-byte records at maximum rate; 2,000 records/s of 50-2,000 B (written and durable);
- replay_read: a 2 GiB topic (512 MiB with --quick) of 1 MiB records, read from the beginning;
- mixed: camera + lidar + lidar packets + telemetry at their real rates together (60 s, 6 s
  with --quick). Raw camera is left out: raw frames and JPEG frames are two outputs of the
  same cameras, and 540 MB/s of raw frames alone is the raw_camera workload.

Paced producers behave like real-time drivers: a frame whose slot passed more than one
period ago is skipped and counted as a drop, never sent late in a burst.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KB = 1000
MB = 1000 * 1000
MiB = 1024 * 1024
WORKLOADS = ("camera", "raw_camera", "lidar", "telemetry", "replay_read", "mixed")


@dataclass(frozen=True)
class Stream:
    topic: str
    partition: int
    size: int | tuple[int, int]  # bytes, or a (min, max) uniform range
    rate_hz: float | None  # None: as fast as the system accepts
    producer: str = "p0"  # streams with the same producer name share one process

    @property
    def mean_size(self) -> float:
        return self.size if isinstance(self.size, int) else sum(self.size) / 2


@dataclass
class Phase:
    workload: str
    name: str
    mode: str  # "written" or "durable"
    streams: list[Stream]
    duration_s: float
    replay_bytes: int = 0  # replay phases: fill this much, then time the read
    latency_matters: bool = True  # paced phases; at maximum rate latency is queueing
    notes: str = ""
    max_records: int = 0  # maximum-rate phases: stop after this many records (0: duration only)

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.name}/{self.mode}"

    @property
    def topics(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.streams:
            out[s.topic] = max(out.get(s.topic, 0), s.partition + 1)
        return out

    @property
    def offered_mb_s(self) -> float | None:
        if any(s.rate_hz is None for s in self.streams):
            return None
        return sum(s.mean_size * s.rate_hz for s in self.streams) / MB

    @property
    def producers(self) -> dict[str, list[Stream]]:
        groups: dict[str, list[Stream]] = {}
        for s in self.streams:
            groups.setdefault(s.producer, []).append(s)
        return groups


def camera_streams(producer: str = "camera") -> list[Stream]:
    return [Stream("camera", i, (230 * KB, 270 * KB), 30.0, producer) for i in range(8)]


def lidar_streams(producer: str = "lidar") -> list[Stream]:
    return [Stream("lidar", 0, 3_200_000, 10.0, producer)] + [
        Stream("lidar", 1 + i, 160 * KB, 25.0, producer) for i in range(4)]


def packet_streams(producer: str = "packets") -> list[Stream]:
    return [Stream("lidar_packets", i, 1206, 754.0, producer) for i in range(5)]


def telemetry_mixed_streams(producer: str = "telemetry") -> list[Stream]:
    return [Stream("telemetry", 0, (50, 2000), 2000.0, producer)]


def raw_streams(rate_hz: float | None) -> list[Stream]:
    return [Stream("raw_camera", i, 3_750_000, rate_hz, "raw") for i in range(6)]


@dataclass
class Plan:
    phases: list[Phase] = field(default_factory=list)

    def modes(self) -> list[str]:
        return sorted({p.mode for p in self.phases}, key=lambda m: m != "written")


def build_plan(workloads: list[str], quick: bool) -> Plan:
    """Phases for the chosen workloads; --quick shortens every phase, runs the durable mode for
    telemetry only and reads a 512 MiB replay."""
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        raise ValueError(f"unknown workloads: {', '.join(sorted(unknown))} (known: {', '.join(WORKLOADS)})")
    run = 2.0 if quick else 8.0
    full_only_durable = [] if quick else ["durable"]
    plan = Plan()
    add = plan.phases.append
    for workload in WORKLOADS:  # fixed order, whatever order was asked
        if workload not in workloads:
            continue
        if workload == "camera":
            for mode in ["written", *full_only_durable]:
                add(Phase("camera", "8x30fps x 250KB", mode, camera_streams(), run))
        elif workload == "raw_camera":
            add(Phase("raw_camera", "6x24Hz x 3.75MB", "written", raw_streams(24.0), run))
            for mode in ["written", *full_only_durable]:
                add(Phase("raw_camera", "6 x 3.75MB max rate", mode, raw_streams(None), run, latency_matters=False))
        elif workload == "lidar":
            for mode in ["written", *full_only_durable]:
                add(Phase("lidar", "1x10Hz x 3.2MB + 4x25Hz x 160KB", mode, lidar_streams(), run))
            add(Phase("lidar", "packets 5x754/s x 1206B", "written", packet_streams(), run))
        elif workload == "telemetry":
            # capped: a fast producer would otherwise queue minutes of records for the consumer
            add(Phase("telemetry", "100B max rate", "written", [Stream("telemetry_small", 0, 100, None, "t")], run,
                      latency_matters=False, max_records=1_000_000 if quick else 4_000_000))
            for mode in ("written", "durable"):
                add(Phase("telemetry", "2000/s x 50-2000B", mode, telemetry_mixed_streams(), run))
        elif workload == "replay_read":
            size = (512 if quick else 2048) * MiB
            label = f"{size // (1024 * MiB)} GiB" if size >= 1024 * MiB else f"{size // MiB} MiB"
            add(Phase("replay_read", f"read {label} of 1MiB records", "written",
                      [Stream("replay", 0, MiB, None, "fill")], 0.0, replay_bytes=size, latency_matters=False))
        elif workload == "mixed":
            streams = camera_streams() + lidar_streams() + packet_streams() + telemetry_mixed_streams()
            add(Phase("mixed", "camera+lidar+packets+telemetry", "written", streams, 6.0 if quick else 60.0,
                      notes="all at real rates, one producer process per sensor class"))
    return plan
