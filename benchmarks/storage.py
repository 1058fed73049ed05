"""Storage engine benchmark: append and read rates next to the disk's own ``dd`` figure,
and recovery time of a 2 GiB partition after a SIGKILL.

    python -m benchmarks.storage [--quick]

Prints, in one run: dd page-cache write MB/s on the same filesystem; append MB/s for
1 MiB and 64 KiB records (one record per batch, as drivers send frames); records/s for
100-byte records in batches of 1,000 (append of pre-built batches, and encode + append);
sequential read MB/s from the page cache; recovery time after a kill. Ratios to dd given.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from broker.records import encode_batch
from broker.storage import Storage
from broker.topic_config import TopicConfig

from .common import dd_write_mb_s, print_table, save_results, work_dir

MiB = 1024 * 1024


def append_rate(path, record_size: int, total_bytes: int) -> float:
    storage = Storage(path)
    storage.create_topic("bench", TopicConfig(flush="os"))
    log = storage.log("bench", 0)
    batch = encode_batch([os.urandom(record_size)], time.time_ns())
    n = max(1, total_bytes // record_size)
    started = time.perf_counter()
    for _ in range(n):
        log.append(batch)
    elapsed = time.perf_counter() - started
    storage.close()
    return n * len(batch) / elapsed / 1e6


def small_record_rates(path, batches: int) -> tuple[float, float]:
    storage = Storage(path)
    storage.create_topic("small", TopicConfig(flush="os"))
    log = storage.log("small", 0)
    values = [os.urandom(100) for _ in range(1000)]
    batch = encode_batch(values, time.time_ns())
    started = time.perf_counter()
    for _ in range(batches):
        log.append(batch)
    append_only = batches * 1000 / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(batches):
        log.append(encode_batch(values, time.time_ns()))
    with_encode = batches * 1000 / (time.perf_counter() - started)
    storage.close()
    return append_only, with_encode


def read_rate(path, total_bytes: int) -> float:
    storage = Storage(path)
    storage.create_topic("read", TopicConfig(flush="os"))
    log = storage.log("read", 0)
    batch = encode_batch([os.urandom(MiB)], 1)
    for _ in range(total_bytes // MiB):
        log.append(batch)
    best = 0.0
    for _ in range(3):  # page cache warm after the first pass
        offset, read = 0, 0
        started = time.perf_counter()
        while offset < log.next_offset:
            data = log.read(offset, 8 * MiB)
            read += len(data)
            offset += len(data) // len(batch)
        best = max(best, read / (time.perf_counter() - started) / 1e6)
    storage.close()
    return best


_KILL_WRITER = """
import os, sys, time
from broker.records import encode_batch
from broker.storage import Storage
from broker.topic_config import TopicConfig
s = Storage(sys.argv[1])
s.create_topic("big", TopicConfig(flush="os"))
log = s.log("big", 0)
batch = encode_batch([os.urandom(1024 * 1024)], 1)
for i in range(int(sys.argv[2])):
    log.append(batch)
    if i % 256 == 0:
        log.flush(); s.checkpoint_recovery_points()
print("done", flush=True)
time.sleep(60)
"""


def recovery_time(path, total_bytes: int) -> tuple[float, int]:
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(path), str(total_bytes // MiB)],
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.perf_counter()
    storage = Storage(path)
    elapsed = time.perf_counter() - started
    report = storage.recovery_reports[0]
    storage.close()
    return elapsed, report.scanned_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 MiB instead of 2 GiB")
    args = parser.parse_args()
    total = (512 if args.quick else 2048) * MiB
    base = work_dir("storage")

    dd = dd_write_mb_s(base, total // MiB)
    big = append_rate(work_dir("storage/1m"), MiB, total)
    mid = append_rate(work_dir("storage/64k"), 64 * 1024, total // 2)
    small_append, small_encode = small_record_rates(work_dir("storage/small"), 1000 if args.quick else 3000)
    read = read_rate(work_dir("storage/read"), total // 2)
    rec_s, scanned = recovery_time(work_dir("storage/recovery"), total)
    work_dir("storage")

    rows = [
        ("dd page-cache write", f"{dd:,.0f} MB/s", "ceiling"),
        ("append 1 MiB records", f"{big:,.0f} MB/s", f"{big / dd:.0%} of dd (goal >= 90%)"),
        ("append 64 KiB records", f"{mid:,.0f} MB/s", f"{mid / dd:.0%} of dd"),
        ("append 100 B x 1000/batch", f"{small_append:,.0f} rec/s", "goal >= 2,000,000"),
        ("encode+append 100 B x 1000", f"{small_encode:,.0f} rec/s", "client-side encode included"),
        ("sequential read (cache)", f"{read:,.0f} MB/s", "goal >= 2,000"),
        (f"recovery {total // MiB} MiB after kill", f"{rec_s:.3f} s", f"scanned {scanned / MiB:.0f} MiB (goal <= 1 s)"),
    ]
    print_table("storage engine (one process, page cache)", rows)
    path = save_results("storage", {
        "dd_mb_s": dd, "append_1mib_mb_s": big, "append_64kib_mb_s": mid,
        "append_100b_rec_s": small_append, "encode_append_100b_rec_s": small_encode,
        "read_mb_s": read, "recovery_s": rec_s, "recovery_scanned_bytes": scanned,
        "total_bytes": total,
    })
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
