"""``edge doctor``: is this machine ready to record? One check per line, PASS / WARN / FAIL.

Checks (each independent; one that cannot run says why instead of failing the others):
- disk: the data directory's free space against [broker.disk_guard] min_free, and the mount
  it is on (read-only: FAIL; ``sync`` or no ``noatime``: WARN, both cost write bandwidth);
- permissions: the data directory is ours and writable and not open to other users, the
  API token file and CURVE secret keys are 0600;
- clock: the kernel's view of clock synchronisation (adjtimex: TIME_ERROR means no NTP/PTP
  discipline; capture times then drift), with its estimated maximum error;
- broker: answers a ping on the configured endpoint (WARN when not running: `edge up` starts it);
- sensors: a Velodyne ``udp://`` source receives packets within a short window (or its port is
  held, by a running driver), a camera device or file opens for reading, file sources exist;
- cloud: every mirror bootstrap server accepts a TCP connection.
``run_checks`` returns the results; the command prints them and exits 1 if any FAILed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # doctor reads a loaded config; loading it is the caller's
    from edge.config import AppConfig

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
TIME_ERROR = 5  # adjtimex(2) return: the clock is not synchronised
UDP_LISTEN_S = 2.0
CONNECT_TIMEOUT_S = 3.0


@dataclass
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.name:<12} {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "detail": self.detail}


def _mount_of(path: Path, mounts_file: Path = Path("/proc/mounts")) -> tuple[str, str, list[str]] | None:
    """(mount point, file system type, options) of the mount holding ``path``."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    best = None
    resolved = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        point = fields[1].replace("\\040", " ")
        if (resolved == point or resolved.startswith(point.rstrip("/") + "/")) and (
                best is None or len(point) > len(best[0])):
            best = (point, fields[2], fields[3].split(","))
    return best


def check_disk(data_dir: Path, min_free_bytes: int) -> list[Check]:
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = os.statvfs(existing)
    free, total = usage.f_bavail * usage.f_frsize, usage.f_blocks * usage.f_frsize
    status = FAIL if free < min_free_bytes else PASS
    checks = [Check("disk", status, f"{data_dir}: {free / 1e9:.1f} GB free of {total / 1e9:.1f} GB "
                                    f"(disk guard min_free {min_free_bytes / 1e9:.1f} GB)")]
    mount = _mount_of(existing)
    if mount is not None:
        point, fstype, options = mount
        if "ro" in options:
            checks.append(Check("mount", FAIL, f"{point} ({fstype}) is mounted read-only"))
        elif "sync" in options or not ({"noatime", "relatime"} & set(options)):
            checks.append(Check("mount", WARN, f"{point} ({fstype}) {','.join(options)}: mount with noatime and "
                                               "without sync for write bandwidth"))
        else:
            shown = ",".join(o for o in options if o in ("rw", "noatime", "relatime"))
            checks.append(Check("mount", PASS, f"{point} ({fstype}) {shown}"))
    return checks


def _secret_mode_ok(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def check_permissions(data_dir: Path, secrets: list[Path]) -> Check:
    if not data_dir.exists():
        parent = data_dir.parent
        while not parent.exists():
            parent = parent.parent
        ok = os.access(parent, os.W_OK | os.X_OK)
        return Check("permissions", PASS if ok else FAIL,
                     f"{data_dir} does not exist yet; {parent} is {'writable' if ok else 'not writable'} by us")
    problems = []
    info = data_dir.stat()
    if info.st_uid != os.geteuid():
        problems.append(f"{data_dir} is owned by uid {info.st_uid}, not us ({os.geteuid()})")
    if not os.access(data_dir, os.W_OK | os.X_OK):
        problems.append(f"{data_dir} is not writable by us")
    if stat.S_IMODE(info.st_mode) & 0o007:
        problems.append(f"{data_dir} is open to other users (mode {stat.S_IMODE(info.st_mode):o}): chmod o-rwx")
    for secret in secrets:
        if secret.exists() and not _secret_mode_ok(secret):
            problems.append(f"{secret} is readable by others (mode {stat.S_IMODE(secret.stat().st_mode):o}): chmod 600")
    if problems:
        return Check("permissions", FAIL, "; ".join(problems))
    return Check("permissions", PASS, f"{data_dir} ours, writable, not open to others; "
                                      f"{sum(1 for s in secrets if s.exists())} secret file(s) 0600")


def check_clock() -> Check:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return Check("clock", WARN, "cannot ask the kernel (no adjtimex here)")
    if state < 0:
        return Check("clock", WARN, f"adjtimex failed ({os.strerror(ctypes.get_errno())})")
    maxerror_us = ctypes.c_long.from_buffer(timex, 3 * ctypes.sizeof(ctypes.c_long)).value
    if state == TIME_ERROR:
        return Check("clock", FAIL, "not synchronised (no NTP/PTP discipline): capture times drift; enable "
                                    "systemd-timesyncd, chrony or ptp4l")
    return Check("clock", PASS, f"synchronised (estimated max error {maxerror_us / 1000:.1f} ms)")


def check_broker(endpoint: str) -> Check:
    from broker.client import Admin
    from broker.errors import BrokerError

    try:
        with Admin(endpoint, timeout_s=2.0) as admin:
            admin.ping()
    except BrokerError as exc:
        return Check("broker", WARN, f"{exc.message} (`edge up` starts it)")
    return Check("broker", PASS, f"answers on {endpoint}")


def _udp_packets(host: str, port: int, listen_s: float) -> Check | int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return Check("", PASS, f"udp {host}:{port} held by another process (a running driver)")
            return Check("", FAIL, f"cannot listen on udp {host}:{port}: {exc.strerror}")
        return _count_packets(sock, listen_s)


def _count_packets(sock: socket.socket, listen_s: float) -> int:
    count = 0
    deadline = time.monotonic() + listen_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            sock.recv(65536)
            count += 1
        except TimeoutError:
            break
    return count


def check_lidar(name: str, source: str, listen_s: float = UDP_LISTEN_S) -> Check:
    label = f"lidar {name}"
    if source.startswith("udp://"):
        host, _, port = source[len("udp://"):].rpartition(":")
        result = _udp_packets(host or "0.0.0.0", int(port), listen_s)
        if isinstance(result, Check):
            return Check(label, result.status, result.detail)
        if result == 0:
            return Check(label, FAIL, f"no packets on {source} in {listen_s:.0f}s: is the sensor powered and "
                                      "its destination IP this host?")
        return Check(label, PASS, f"{result} packets on {source} in {listen_s:.0f}s")
    for prefix in ("pcap:", "pcd-dir:"):
        if source.startswith(prefix):
            path = Path(source[len(prefix):])
            ok = path.exists() and os.access(path, os.R_OK)
            return Check(label, PASS if ok else FAIL, f"{path} {'readable' if ok else 'missing or unreadable'}")
    return Check(label, PASS, f"source {source} (simulated)")


def check_camera(name: str, source: str) -> Check:
    label = f"camera {name}"
    if source == "sim":
        return Check(label, PASS, "source sim (simulated)")
    if "://" in source:
        return Check(label, WARN, f"stream {source}: not opened here (the driver reports its connection)")
    path = Path(f"/dev/video{source}") if source.isdigit() else Path(source)
    if not path.exists():
        return Check(label, FAIL, f"{path} does not exist")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return Check(label, FAIL, f"{path} cannot be opened: {exc.strerror} (video group membership?)")
    return Check(label, PASS, f"{path} opens")


def check_cloud(bootstrap: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Check:
    failed, reached = [], []
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                reached.append(server)
        except (OSError, ValueError) as exc:
            failed.append(f"{server} ({getattr(exc, 'strerror', None) or exc})")
    if failed:
        return Check("cloud", FAIL, f"cannot connect to {', '.join(failed)}" +
                     (f"; reached {', '.join(reached)}" if reached else ""))
    return Check("cloud", PASS, f"reached {', '.join(reached)}")


def run_checks(config: AppConfig, endpoint: str, *, listen_s: float = UDP_LISTEN_S) -> list[Check]:
    data_dir = config.broker.data_dir
    secrets = [data_dir / ".api-token"]
    curve = config.broker.curve
    if curve is not None:
        secrets += [p for p in (curve.server_secret_key, curve.client_secret_key) if p is not None]
    checks = [*check_disk(data_dir, config.broker.disk_guard.min_free_bytes), check_permissions(data_dir, secrets),
              check_clock(), check_broker(endpoint)]
    checks += [check_lidar(lidar.name, lidar.source, listen_s) for lidar in config.lidars]
    checks += [check_camera(camera.name, camera.source) for camera in config.cameras]
    if config.mirror is not None:
        checks.append(check_cloud(config.mirror.bootstrap_servers))
    return checks
