"""Where the time goes: the harness's edge phases under py-spy, summarised per process role.

    python -m benchmarks.profile [--workloads camera,telemetry] [--quick] [--rate 100] [--out DIR]

Runs ``python -m benchmarks --systems edge`` on the chosen workloads under ``py-spy record
--subprocesses`` (every process: broker, producers, consumer, harness), then attributes each
sample to a role (the broker, a producer, the consumer) and prints, per role, its share of
all samples and the functions where its samples land (leaf frames, "self" time). Threads
parked in ``zmq.Poller.poll``, pyzmq's garbage-collector thread and condition waits are
left out of the per-function lists: py-spy reports them as active while they sleep in C
(so are the paced producers' ``time.sleep`` lines, which show as their own function).
The summary goes to ``<out>/profile-<date>.json`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PROCESS_FRAME = re.compile(r'process (\d+):"(?:[^"\\]|\\.)*";?')
PHASE_LINE = re.compile(r"^\s+\w+/[^:]+/(written|durable): ")  # the harness's one line per phase
PRIORITY = ("broker", "consumer", "producer", "harness", "other")
SLEEPING = ("Poller.poll", "garbage.py", "Condition.wait", "Event.wait", "select (selectors")


def role_of(stack: str) -> str:
    if "broker/server.py" in stack:
        return "broker"
    if "consumer_main" in stack:
        return "consumer"
    if "producer_main" in stack:
        return "producer"
    if "benchmarks/harness.py" in stack or "benchmarks/__main__.py" in stack:
        return "harness"
    return "other"


def summarise(raw_lines, top: int = 12) -> dict:
    """Per role: samples, share of all samples, and the top leaf functions (self samples)."""
    per_pid: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    roles: dict[str, str] = {}
    samples: collections.Counter = collections.Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        pids = PROCESS_FRAME.findall(stack)  # a command line may itself hold ';'
        pid = pids[-1] if pids else "?"
        frames = [f for f in PROCESS_FRAME.sub("", stack).split(";") if f]
        role = role_of(stack)
        if PRIORITY.index(role) < PRIORITY.index(roles.get(pid, "other")):
            roles[pid] = role  # a child imports the harness too: its most specific role wins
        samples[pid] += n
        if frames and not any(s in frames[-1] for s in SLEEPING):
            per_pid[pid][frames[-1]] += n
    total = max(1, sum(samples.values()))
    by_role: dict[str, dict] = {}
    for pid, n in samples.items():
        entry = by_role.setdefault(roles.get(pid, "other"),
                                   {"processes": 0, "samples": 0, "functions": collections.Counter()})
        entry["processes"] += 1
        entry["samples"] += n
        entry["functions"].update(per_pid[pid])
    out = {}
    for role, entry in sorted(by_role.items(), key=lambda kv: -kv[1]["samples"]):
        out[role] = {"processes": entry["processes"], "samples": entry["samples"],
                     "share_pct": round(100 * entry["samples"] / total, 1),
                     "top_self": [[f, c] for f, c in entry["functions"].most_common(top)]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="camera,telemetry")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "samples.txt"
        command = [py_spy, "record", "--subprocesses", "--nonblocking", "--rate", str(args.rate), "--format", "raw",
                   "--output", str(raw), "--", sys.executable, "-m", "benchmarks", "--systems", "edge",
                   "--workloads", args.workloads, "--no-charts", "--tag", "profiled"]
        if args.quick:
            command.append("--quick")
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        phases = [line.strip() for line in run.stdout.splitlines() if PHASE_LINE.match(line)]
        if run.returncode != 0 or not raw.exists():
            print(run.stdout[-2000:] + run.stderr[-2000:], file=sys.stderr)
            return 1
        summary = summarise(raw.read_text().splitlines())
    for stray in RESULTS.glob("*-profiled.json"):  # the harness's own results of the profiled run
        stray.unlink()
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "workloads": args.workloads, "quick": args.quick,
              "rate_hz": args.rate, "phases": phases, "roles": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"profile-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for line in phases:
        print(line)
    for role, entry in summary.items():
        print(f"{role}: {entry['share_pct']}% of samples ({entry['processes']} processes)")
        for function, count in entry["top_self"]:
            print(f"    {count:6d}  {function}")
    print(f"profile: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
