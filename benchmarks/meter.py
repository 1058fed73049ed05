"""What a run costs the machine and each broker: load, CPU time of others, broker RSS and CPU per GB.

- ``MachineWatch``: load average before and after, and the CPU seconds the machine spent
  outside this process tree while the run went on (busy time minus our own and our waited
  children's), for ``perfparse.quiet_verdict``;
- ``BrokerMeter``: per broker, peak RSS (sampled every 0.25 s on its process ids) and CPU
  seconds used during the cases measured on it, divided by the bytes those cases moved
  (produced + consumed) -> CPU seconds per GB.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil


def _own_cpu_s() -> float:
    times = os.times()  # children: every child we waited for (the tools, the stopped brokers)
    return times.user + times.system + times.children_user + times.children_system


def _busy_cpu_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class MachineWatch:
    def __init__(self) -> None:
        self.load_before = [round(x, 2) for x in os.getloadavg()]
        self.started = time.monotonic()
        self.busy_before, self.own_before = _busy_cpu_s(), _own_cpu_s()

    def finish(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        foreign = max(0.0, (_busy_cpu_s() - self.busy_before) - (_own_cpu_s() - self.own_before))
        return {"load_before": self.load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
                "wall_s": round(wall, 1), "foreign_cpu_s": round(foreign, 1)}


class BrokerMeter:
    """Peak RSS and CPU per GB of one broker's processes."""

    def __init__(self, name: str, pids: list[int]):
        self.name = name
        self.processes = [psutil.Process(pid) for pid in pids]
        self.peak_rss = 0
        self.cpu_s = 0.0
        self.bytes_moved = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"rss-{name}", daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        total = 0.0
        for process in self.processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            rss = 0
            for process in self.processes:
                try:
                    rss += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)

    @contextmanager
    def case(self, bytes_moved: int) -> Iterator[None]:
        """Count the broker's CPU seconds during one measured case that moves ``bytes_moved``."""
        before = self._cpu()
        try:
            yield
        finally:
            self.cpu_s += self._cpu() - before
            self.bytes_moved += bytes_moved

    def close(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        gigabytes = self.bytes_moved / 1e9
        return {"peak_rss_mb": round(self.peak_rss / 1e6, 1), "cpu_s": round(self.cpu_s, 2),
                "gb_moved": round(gigabytes, 3), "cpu_s_per_gb": round(self.cpu_s / gigabytes, 2) if gigabytes else 0.0}
