"""Camera encode/decode benchmark: what one camera driver costs per frame.

    python benchmarks/camera_encode.py [--seconds 3] [--quality 90] [--json]

Measures, for about ``--seconds`` per case on the calling thread:

- the synthetic camera's render rate at 1280x720 (``SimCameraSource``, unpaced);
- ``encode_frame`` of 1280x720 sim frames as JPEG at ``--quality`` (default 90): frames/s,
  MB/s of raw BGR in (2.76 MB a frame), MB/s of JPEG out, and the mean JPEG size; the
  same for PNG (compression 1) and ``bgr8`` (zero-copy view);
- ``decode_frame`` of those JPEGs (what a reader or the dashboard pays);
- decoding the real footage (``../shared/data/car-detection.mp4``, 768x432 H.264,
  377 frames) through ``VideoFileSource`` with ``rate="max"``: frames/s and the multiple of
  its recorded 12.5 fps.

MB is 10^6 bytes. A 30 fps 720p camera needs 30 JPEG encodes a second on the publish
thread; the "x 30 fps" column is the headroom. OpenCV's own thread count is printed
(JPEG/PNG encode is single-threaded; FFmpeg decode may use several threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from drivers.camera.encoding import decode_frame, encode_frame  # noqa: E402
from drivers.camera.sim import SimCameraSource  # noqa: E402
from drivers.camera.sources import VideoFileSource  # noqa: E402

SHARED_DATA = Path(os.environ.get("EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
FOOTAGE = SHARED_DATA / "car-detection.mp4"
WIDTH, HEIGHT, CAMERA_FPS = 1280, 720, 30
DISTINCT_FRAMES = 30  # cycled through, so the encoder does not see one image over and over


def repeat(seconds: float, work: Callable[[int], int]) -> tuple[int, float]:
    """Call ``work(i)`` (returning frames done) until ``seconds`` pass; (frames, elapsed)."""
    work(0)  # warm up
    frames, i, started = 0, 1, time.perf_counter()
    while True:
        frames += work(i)
        i += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and i > 2:
            return frames, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each case")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if not FOOTAGE.is_file():
        print(f"footage not found: {FOOTAGE} (set EDGE_SHARED_DATA)", file=sys.stderr)
        return 1
    logging.disable(logging.INFO)  # the sources log every open

    sim = SimCameraSource(fps=CAMERA_FPS, width=WIDTH, height=HEIGHT, rate="max")
    frames = [next(sim).image for _ in range(DISTINCT_FRAMES)]
    raw_bytes = frames[0].nbytes
    results: dict[str, dict[str, float]] = {}

    def record(name: str, done: int, elapsed: float, bytes_in: float, bytes_out: float, need_fps: float) -> None:
        fps = done / elapsed
        results[name] = {"frames_per_s": round(fps, 1), "mb_in_per_s": round(fps * bytes_in / 1e6, 1),
                         "mb_out_per_s": round(fps * bytes_out / 1e6, 1), "x_needed": round(fps / need_fps, 1)}

    done, elapsed = repeat(args.seconds, lambda i: (sim.render(i / CAMERA_FPS, i, time.time_ns()), 1)[1])
    record("sim render 1280x720", done, elapsed, 0, raw_bytes, CAMERA_FPS)

    encoded: dict[str, list] = {}
    for encoding in ("jpeg", "png", "bgr8"):
        values = encoded[encoding] = [encode_frame(f, encoding, args.quality)[0] for f in frames]
        mean_size = sum(v.nbytes for v in values) / len(values)
        done, elapsed = repeat(args.seconds, lambda i, e=encoding: (
            encode_frame(frames[i % DISTINCT_FRAMES], e, args.quality), 1)[1])
        setting = f" q{args.quality}" if encoding == "jpeg" else " c1" if encoding == "png" else ""
        label = f"encode {encoding}{setting}"
        record(label, done, elapsed, raw_bytes, mean_size, CAMERA_FPS)
        results[label]["mean_size_kb"] = round(mean_size / 1e3, 1)

    results["encode bgr8"]["zero_copy"] = True  # a memoryview of the image: no byte moves

    with VideoFileSource(FOOTAGE, rate="max") as source:
        footage = [frame.image for frame, _ in zip(source, range(DISTINCT_FRAMES), strict=False)]  # the first N
    footage_jpeg_bytes = sum(encode_frame(f, "jpeg", args.quality)[0].nbytes for f in footage) / len(footage)
    done, elapsed = repeat(args.seconds,
                           lambda i: (encode_frame(footage[i % DISTINCT_FRAMES], "jpeg", args.quality), 1)[1])
    label = f"encode jpeg q{args.quality}, real footage 768x432"
    record(label, done, elapsed, footage[0].nbytes, footage_jpeg_bytes, CAMERA_FPS)
    results[label]["mean_size_kb"] = round(footage_jpeg_bytes / 1e3, 1)

    headers = {"encoding": "jpeg", "width": str(WIDTH), "height": str(HEIGHT)}
    jpegs = encoded["jpeg"]
    done, elapsed = repeat(args.seconds, lambda i: (decode_frame(jpegs[i % DISTINCT_FRAMES], headers), 1)[1])
    record(f"decode jpeg q{args.quality}", done, elapsed, sum(v.nbytes for v in jpegs) / len(jpegs), raw_bytes,
           CAMERA_FPS)

    def play_footage(_: int) -> int:
        with VideoFileSource(FOOTAGE, rate="max") as source:
            return sum(1 for _ in source)

    mp4_frame_bytes = 768 * 432 * 3
    done, elapsed = repeat(args.seconds, play_footage)
    record("decode mp4 768x432 H.264 (file source)", done, elapsed, FOOTAGE.stat().st_size / 377, mp4_frame_bytes,
           12.5)

    print(f"\nCamera encode/decode — OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads, "
          f"{os.cpu_count()} CPUs; {WIDTH}x{HEIGHT} sim frames ({raw_bytes / 1e6:.2f} MB raw)\n")
    width = max(len(name) for name in results)
    print(f"  {'case':<{width}}  {'frames/s':>9}  {'MB/s in':>8}  {'MB/s out':>8}  {'x needed':>8}  {'size':>9}")
    def mb(row: dict, key: str) -> str:
        return "-" if row.get("zero_copy") or not row[key] else f"{row[key]:,.1f}"

    for name, row in results.items():
        size = f"{row['mean_size_kb']:.0f} kB" if "mean_size_kb" in row else ""
        print(f"  {name:<{width}}  {row['frames_per_s']:>9,.1f}  {mb(row, 'mb_in_per_s'):>8}  "
              f"{mb(row, 'mb_out_per_s'):>8}  {row['x_needed']:>7,}x  {size:>9}")
    print("\n  x needed: against a 30 fps camera, or the recording's 12.5 fps for the mp4 decode;"
          "\n  bgr8 is a zero-copy view (no bytes move), so it has no MB/s")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
