"""Output of a comparison run: tables with edge/peer ratios, the goals of issue 9, JSON and PNG charts.

- one table per phase: system, MB/s, records/s, p50/p99/p999 produce→consume latency (ms),
  broker peak RSS (MB) and CPU (% of one core), drops; then one row per peer with the
  ratio edge/peer for every figure (throughput: > 1 is edge faster; latency, RSS, CPU:
  < 1 is edge lower) and the edge's share of the ``dd`` ceiling for the phase's mode;
- the goals of issue 9 with the measured value and met / not met;
- JSON at ``benchmarks/results/<date>.json`` (``<date>-quick.json`` for --quick);
- PNG charts next to it: throughput per phase and system, latency CDFs of the paced phases.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .systems.disk import ceiling_for

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ORDER = ("edge", "kafka", "nats")
FIGURES = (("mb_s", "MB/s", "{:,.1f}"), ("records_s", "rec/s", "{:,.0f}"), ("p50_ms", "p50 ms", "{:,.2f}"),
           ("p99_ms", "p99 ms", "{:,.2f}"), ("p999_ms", "p999 ms", "{:,.2f}"),
           ("broker_rss_mb", "RSS MB", "{:,.0f}"), ("broker_cpu_pct", "CPU %", "{:,.0f}"), ("drops", "drops", "{:,}"))


def _fmt(value, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def one_line(figures: dict) -> str:
    if "error" in figures:
        return "ERROR " + figures["error"].strip().splitlines()[-1][:200]
    p99 = figures["p99_ms"]
    return (f"{figures['mb_s']:,.1f} MB/s {figures['records_s']:,.0f} rec/s p99 {_fmt(p99, '{:.2f}')} ms "
            f"drops {figures['drops']} rss {figures['broker_rss_mb']:.0f} MB cpu {figures['broker_cpu_pct']:.0f}%")


def _ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def phase_table(key: str, phase: dict, disk: dict) -> list[str]:
    lines = [f"\n== {phase['workload']}: {phase['name']} [{phase['mode']}]"]
    header = f"  {'system':<12}" + "".join(f"{label:>11}" for _, label, _ in FIGURES)
    lines.append(header)
    systems = phase["systems"]
    for name in ORDER:
        if name not in systems:
            continue
        fig = systems[name]
        if "error" in fig:
            lines.append(f"  {name:<12}  {fig['error'].strip().splitlines()[-1][:110]}")
            continue
        lines.append(f"  {name:<12}" + "".join(f"{_fmt(fig.get(k), spec):>11}" for k, _, spec in FIGURES))
    edge = systems.get("edge", {})
    if "error" not in edge and edge:
        for peer in ORDER[1:]:
            other = systems.get(peer)
            if other and "error" not in other:
                row = "".join(f"{_ratio(edge.get(k), other.get(k)) if k != 'drops' else '':>11}" for k, _, _ in FIGURES)
                lines.append(f"  {'edge/' + peer:<12}" + row)
        reading = phase["workload"] == "replay_read"
        ceiling = ceiling_for(disk, phase["mode"], reading)
        if ceiling:
            what = "dd read (page cache)" if reading else (
                "dd conv=fdatasync" if phase["mode"] == "durable" else "dd page-cache write")
            lines.append(f"  disk ceiling: {what} {ceiling:,.0f} MB/s; edge = {edge['mb_s'] / ceiling:.0%} of it")
        if phase["name"].endswith("max rate"):
            sides = ", ".join(f"{n} {systems[n]['produce_mb_s']:,.1f} MB/s {systems[n]['produce_records_s']:,.0f} rec/s"
                              for n in ORDER if n in systems and "produce_mb_s" in systems[n])
            lines.append(f"  produce side (sent / producer time incl. flush): {sides}")
        if edge.get("fill_mb_s"):
            fills = ", ".join(f"{n} {systems[n]['fill_mb_s']:,.0f}" for n in ORDER
                              if n in systems and systems[n].get("fill_mb_s"))
            lines.append(f"  fill (1 MiB records, max rate, produce+flush) MB/s: {fills}")
    return lines


def _get(results: dict, key: str, system: str, figure: str):
    fig = results["phases"].get(key, {}).get("systems", {}).get(system, {})
    return None if "error" in fig else fig.get(figure)


def goals(results: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) for each goal of issue 9 that the run has figures for."""
    out = []

    def verdict(ok) -> str:
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    big = "raw_camera/6 x 3.75MB max rate/written"
    e, k = _get(results, big, "edge", "mb_s"), _get(results, big, "kafka", "mb_s")
    dd = results.get("disk", {}).get("page_cache_write_mb_s")
    if e is not None:
        ok = None if k is None else e >= 1.5 * k
        out.append(("large records: edge >= 1.5x Kafka MB/s", f"{e:,.0f} vs {_fmt(k, '{:,.0f}')} MB/s ({_ratio(e, k)})",
                    verdict(ok)))
        if dd:
            out.append(("large records: edge >= 80% of dd", f"{e:,.0f} of {dd:,.0f} MB/s ({e / dd:.0%})",
                        verdict(e >= 0.8 * dd)))
    small = "telemetry/100B max rate/written"
    e, k = _get(results, small, "edge", "records_s"), _get(results, small, "kafka", "records_s")
    if e is not None:
        out.append(("100-byte records: edge rec/s >= Kafka", f"{e:,.0f} vs {_fmt(k, '{:,.0f}')} ({_ratio(e, k)})",
                    verdict(None if k is None else e >= k)))
    for key in ("camera/8x30fps x 250KB/written", "mixed/camera+lidar+packets+telemetry/written"):
        e = _get(results, key, "edge", "p99_ms")
        peers = [v for v in (_get(results, key, p, "p99_ms") for p in ORDER[1:]) if v is not None]
        if e is not None:
            best = min(peers) if peers else None
            out.append((f"latency {key.split('/')[0]}: edge p99 <= 1/2 best peer",
                        f"{e:.2f} vs {_fmt(best, '{:.2f}')} ms", verdict(None if best is None else e <= best / 2)))
    mixed = "mixed/camera+lidar+packets+telemetry/written"
    e, k = _get(results, mixed, "edge", "broker_rss_mb"), _get(results, mixed, "kafka", "broker_rss_mb")
    if e is not None:
        out.append(("memory: edge RSS <= 1/10 Kafka JVM (mixed)", f"{e:,.0f} vs {_fmt(k, '{:,.0f}')} MB",
                    verdict(None if k is None else e <= k / 10)))
        drops = _get(results, mixed, "edge", "drops")
        out.append(("mixed workload with zero drops (edge)", f"{drops} drops", verdict(drops == 0)))
    return out


def print_report(results: dict) -> None:
    print(f"\n#### benchmarks ({'quick' if results['quick'] else 'full'} run, {results['started']}, "
          f"{results['machine']['cpus']} CPUs, {results['machine']['filesystem']}, {results['duration_s']:.0f}s)")
    machine = results["machine"]
    if "load_average_start" in machine:
        print(f"  load average (1/5/15 min) at start {machine['load_average_start']}, "
              f"at end {machine.get('load_average_end')}: above {machine['cpus']} the machine was shared")
    for key, describe in results["systems"].items():
        print(f"  {key}: {describe}")
    if results.get("disk"):
        print("  disk (dd, 1 MiB blocks, MB/s): " + ", ".join(f"{k} {v:,.0f}" for k, v in results["disk"].items()))
    for name, reason in results["missing"].items():
        print(f"  MISSING {name}: {reason}")
    print("  ratios: edge/peer per figure (throughput > 1: edge faster; latency, RSS, CPU < 1: edge lower)")
    for key, phase in results["phases"].items():
        for line in phase_table(key, phase, results.get("disk", {})):
            print(line)
    rows = goals(results)
    if rows:
        print("\n== goals (issue 9)")
        width = max(len(g) for g, _, _ in rows)
        for goal, measured, ok in rows:
            print(f"  {goal:<{width}}  {measured:<40} {ok}")


def save(results: dict, tag: str = "") -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{time.strftime('%Y-%m-%d')}{'-' + tag if tag else ''}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True, default=float))
    return path


def charts(results: dict, json_path: Path) -> list[Path]:
    """Throughput bars per phase and latency CDFs for phases with latency samples."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no charts (pip install matplotlib)")
        return []
    stem = json_path.stem
    phases = [(k, p) for k, p in results["phases"].items()]
    out = []
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(phases) * 3 + 1.5))
    labels, width = [], 0.8 / len(ORDER)
    for i, (_key, phase) in enumerate(phases):
        labels.append(f"{phase['workload']}: {phase['name']} [{phase['mode']}]")
        for j, name in enumerate(ORDER):
            fig_ = phase["systems"].get(name, {})
            if "mb_s" in fig_:
                ax.barh(i + j * width, fig_["mb_s"], width, color=f"C{j}", label=name if i == 0 else None)
                ax.text(fig_["mb_s"], i + j * width, f" {fig_['mb_s']:,.0f}", va="center", fontsize=7)
    ax.set_yticks([i + width for i in range(len(phases))], labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("MB/s delivered end to end (log scale)")
    ax.set_title(f"Throughput per workload ({stem})")
    handles, names = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, names, loc="lower right")
    fig.tight_layout()
    path = json_path.with_name(f"{stem}-throughput.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(path)

    with_latency = [(k, p) for k, p in phases if any(f.get("latency_ms_sorted") for f in p["systems"].values())
                    and p["workload"] not in ("replay_read",) and "max rate" not in p["name"]]
    if with_latency:
        cols = 3
        rows = (len(with_latency) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, (_key, phase) in zip(axes.flat, with_latency, strict=False):  # a grid may have spare axes
            for j, name in enumerate(ORDER):
                samples = phase["systems"].get(name, {}).get("latency_ms_sorted")
                if samples:
                    n = len(samples)
                    ax.plot(samples, [(i + 1) / n for i in range(n)], color=f"C{j}", label=name)
            ax.set_xscale("log")
            ax.set_title(f"{phase['workload']}: {phase['name']} [{phase['mode']}]", fontsize=8)
            ax.set_xlabel("produce→consume latency, ms (log)", fontsize=8)
            ax.set_ylabel("fraction of records", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(with_latency):]:
            ax.axis("off")
        fig.tight_layout()
        path = json_path.with_name(f"{stem}-latency-cdf.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
