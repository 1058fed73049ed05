"""Soak: the appliance under the mixed vehicle load for a long time, sampled as it runs.

    python -m benchmarks.soak [--duration 1h] [--interval 5s]     (scripts/soak)

Runs ``edge up`` on configs/sim.toml (two cameras, a LiDAR, the API; the API on a free
port) plus a live consumer of every sensor topic, and every ``--interval`` records, per
process and in total: RSS, open file descriptors, and the end-to-end latency of the
records the consumer received (now minus capture time, p50/p99/max). Healthy means flat:
the summary reports the RSS and fd change over the second half of the run (where start-up
growth is over) and the latency percentiles per quarter. Writes
``results/soak-DATE.json`` and a chart ``results/soak-DATE.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from broker.base.units import parse_duration_ns
from broker.client import Admin, Consumer
from broker.errors import BrokerError

from .common import print_table, work_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
TOPICS = ("camera.front", "camera.rear", "lidar.top")


class LatencyProbe:
    """A consumer of the sensor topics at their live end; keeps (now - capture) per record."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.samples: list[float] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        consumer = Consumer(self.endpoint, max_wait_ms=100)
        consumer.assign([(t, 0) for t in TOPICS])
        consumer.seek_to_end()
        try:
            while not self.stop.is_set():
                try:
                    records = consumer.poll(0.5)
                except BrokerError:
                    time.sleep(0.5)
                    continue
                now = time.time_ns()
                with self.lock:
                    self.samples += [(now - r.timestamp) / 1e6 for r in records]
        finally:
            consumer.close()

    def take(self) -> list[float]:
        with self.lock:
            out, self.samples = self.samples, []
        return out


def family(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def role(proc: psutil.Process) -> str:
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return "?"
    if "up" in argv:
        return "supervisor"
    for name in ("broker", "api", "mirror"):
        if name in argv:
            return name
    if "driver" in argv and "--name" in argv:
        return f"{argv[argv.index('driver') + 1]}-{argv[argv.index('--name') + 1]}"
    return "other"


def sample(pid: int) -> dict:
    per: dict[str, dict[str, float]] = {}
    for proc in family(pid):
        try:
            per[role(proc)] = {"rss_mb": proc.memory_info().rss / 1e6, "fds": proc.num_fds()}
        except psutil.Error:
            continue
    return {"rss_mb": sum(p["rss_mb"] for p in per.values()), "fds": sum(p["fds"] for p in per.values()),
            "processes": per}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    arr = np.asarray(values)
    return {"n": int(arr.size), "p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "max_ms": float(arr.max())}


def chart(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t_s"] / 60 for p in points]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [p["rss_mb"] for p in points], label="all processes")
    for name in sorted(points[-1]["processes"]):
        axes[0].plot(t, [p["processes"].get(name, {}).get("rss_mb", np.nan) for p in points], lw=0.8, label=name)
    axes[0].set_ylabel("RSS (MB)")
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].plot(t, [p["fds"] for p in points])
    axes[1].set_ylabel("open fds")
    axes[2].plot(t, [p["latency"]["p50_ms"] for p in points], label="p50")
    axes[2].plot(t, [p["latency"]["p99_ms"] for p in points], label="p99")
    axes[2].set_ylabel("capture → consumer (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend(fontsize=7)
    fig.suptitle("edge up on configs/sim.toml: soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="1h")
    parser.add_argument("--interval", default="5s")
    args = parser.parse_args()
    duration_s = parse_duration_ns(args.duration) / 1e9
    interval_s = parse_duration_ns(args.interval) / 1e9
    base = work_dir("soak")
    config = base / "sim.toml"
    config.write_text((REPO / "configs" / "sim.toml").read_text().replace("port = 8080", "port = 0"))
    data_dir = base / "data"
    endpoint = f"ipc://{data_dir}/broker.sock"
    with open(base / "edge-up.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "up", "--config", str(config), "--data-dir",
                                 str(data_dir)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    points: list[dict] = []
    probe = LatencyProbe(endpoint)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with Admin(endpoint, timeout_s=1) as admin:
                    if set(TOPICS) <= set(admin.list_topics()):
                        break
            except BrokerError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"edge up did not start: see {base / 'edge-up.log'}")
            time.sleep(0.5)
        probe.thread.start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < duration_s:
            time.sleep(interval_s)
            point = {"t_s": round(time.monotonic() - started, 1), **sample(proc.pid),
                     "latency": percentiles(probe.take())}
            points.append(point)
            if proc.poll() is not None:
                raise SystemExit(f"edge up exited with {proc.returncode} after {elapsed:.0f}s")
    finally:
        probe.stop.set()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    half = points[len(points) // 2:]
    hours = max((half[-1]["t_s"] - half[0]["t_s"]) / 3600, 1e-9)
    rss_slope = (half[-1]["rss_mb"] - half[0]["rss_mb"]) / hours
    quarters = [points[i * len(points) // 4:(i + 1) * len(points) // 4] for i in range(4)]
    summary = {
        "duration_s": points[-1]["t_s"], "samples": len(points),
        "rss_mb_first_last": [points[0]["rss_mb"], points[-1]["rss_mb"]],
        "rss_mb_max": max(p["rss_mb"] for p in points),
        "rss_mb_per_hour_second_half": rss_slope,
        "fds_min_max": [min(p["fds"] for p in points), max(p["fds"] for p in points)],
        "fds_change_second_half": half[-1]["fds"] - half[0]["fds"],
        "latency_p50_by_quarter_ms": [float(np.nanmedian([p["latency"]["p50_ms"] for p in q])) if q else None
                                      for q in quarters],
        "latency_p99_by_quarter_ms": [float(np.nanmax([p["latency"]["p99_ms"] for p in q])) if q else None
                                      for q in quarters],
    }
    stamp = time.strftime("%Y-%m-%d")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"soak-{stamp}.json").write_text(json.dumps({"summary": summary, "points": points}, indent=1))
    rows = [("duration", f"{summary['duration_s'] / 60:.1f} min", f"{len(points)} samples"),
            ("RSS first → last", f"{points[0]['rss_mb']:.0f} → {points[-1]['rss_mb']:.0f} MB",
             f"max {summary['rss_mb_max']:.0f} MB"),
            ("RSS slope, 2nd half", f"{rss_slope:+.1f} MB/h", "flat when healthy"),
            ("open fds", f"{summary['fds_min_max'][0]}–{summary['fds_min_max'][1]}",
             f"{summary['fds_change_second_half']:+d} over the 2nd half"),
            ("latency p99 per quarter", " / ".join(f"{v:.0f}" for v in summary["latency_p99_by_quarter_ms"]) + " ms",
             "capture → consumer")]
    print_table("soak: edge up on configs/sim.toml", rows)
    print(f"\nresults: {RESULTS / f'soak-{stamp}.json'}")
    try:
        chart(points, RESULTS / f"soak-{stamp}.png")
        print(f"chart: {RESULTS / f'soak-{stamp}.png'}")
    except ImportError:
        print("no chart: matplotlib is in the bench extra (pip install -e '.[bench]')")


if __name__ == "__main__":
    main()
