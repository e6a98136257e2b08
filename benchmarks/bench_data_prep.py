"""Benchmark of data_prep's alignment: aligned faces per second.

    python benchmarks/bench_data_prep.py [--images 400] [--workers 2] [--size 227] [--crops 1]

Cases (written to a temporary folder as PNG files first, so decoding counts):
  photo-256   256x256 photos, the face (skimage's astronaut, public domain)
              at a random roll, size (eyes 40-60 px apart) and place: HOG
              detection without upsampling, 68 landmarks, warp
  crop-48     48x48 pre-cropped faces: detection with two upsamplings
  synthetic-96  96x96 synthetic faces with known landmarks: no detection
Each case runs the same Pool pipeline prepare.py runs. "faces/s" counts the
whole run including starting the workers (each loads dlib's models);
"steady/s" leaves out everything before the first chunk came back. "cpu ms"
is the CPU time per face of --cpu-sample images run in this one process, and
"idle est/s" = workers x 1000 / cpu ms, what the workers would reach on idle
cores: on a shared machine the wall-clock rates fall with the load, the CPU
time much less. The table is printed and appended to benchmarks/data_prep.csv
with the date, commit and 1-minute load average.
"""
import argparse
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skimage_data

from benchmarks.results import append_rows, git_commit
from data_prep.face_template import load_template
from data_prep.items import Item
from data_prep.pipeline import PrepConfig, process_items
from data_prep.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "data_prep.csv"
FIELDS = ("date", "commit", "cpus", "load_1min", "case", "images", "workers", "size", "crops",
          "seconds", "faces_per_s", "steady_per_s", "detected", "fallbacks", "skipped", "cpu_ms_per_face",
          "idle_estimate_per_s")
ASTRONAUT_EYE_MIDPOINT = np.array([224.0, 101.75])
ASTRONAUT_EYE_DISTANCE = 44.0


def astronaut_photo(gray, rng, size, eye_distance, jitter):
    angle = math.radians(rng.uniform(-10, 10))
    scale = eye_distance / ASTRONAUT_EYE_DISTANCE
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = np.array([size / 2, size * 0.42]) + rng.uniform(-jitter, jitter, 2) * size
    matrix = np.hstack([linear, (target - linear @ ASTRONAUT_EYE_MIDPOINT)[:, np.newaxis]])
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(gray, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REFLECT)


def write_case(folder, case, count, rng):
    """PNG files of one case -> Items."""
    folder.mkdir(parents=True)
    gray = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    items = []
    if case == "synthetic-96":
        per_subject = max(1, math.ceil(count / 60))
        for n, (subject, label, index, image, marks) in enumerate(generate(10, 6, per_subject, 96, seed=1)):
            if n == count:
                break
            path = folder / f"{n:06d}.png"
            cv2.imwrite(str(path), image)
            items.append(Item(str(path), label, subject, str(path), landmarks=tuple(map(tuple, marks))))
        return items
    for n in range(count):
        if case == "photo-256":
            image = astronaut_photo(gray, rng, 256, rng.uniform(40, 60), 0.06)
        else:  # crop-48: the face box is the frame, as in FER2013 / CK+48
            image = astronaut_photo(gray, rng, 48, rng.uniform(17, 20), 0.03)
        path = folder / f"{n:06d}.png"
        cv2.imwrite(str(path), image)
        items.append(Item(str(path), 0, f"s{n}", str(path)))
    return items


def run_case(items, config, workers, chunk_size=8):
    started = time.perf_counter()
    first_chunk_at = None
    counts = {"detected": 0, "frame": 0, "known": 0, "skipped": 0}
    for result in process_items(items, config, workers=workers, chunk_size=chunk_size, progress=False):
        if first_chunk_at is None:
            first_chunk_at = time.perf_counter()
        if result.skip_reason:
            counts["skipped"] += 1
        else:
            counts[result.alignment] += 1
    ended = time.perf_counter()
    seconds = ended - started
    # results come back a chunk at a time: steady = the items after the first chunk
    steady = (len(items) - min(chunk_size, len(items))) / max(ended - first_chunk_at, 1e-9)
    return seconds, len(items) / seconds, steady, counts


def cpu_ms_per_face(items, config):
    """CPU time of one face in this process (models loaded first): less sensitive to a busy machine."""
    for _ in process_items(items[:1], config, workers=1, progress=False):
        pass
    started = time.process_time()
    for _ in process_items(items, config, workers=1, progress=False):
        pass
    return (time.process_time() - started) * 1000 / len(items)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="images per case (default 400)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--size", type=int, default=227, help="output side (default 227, the paper's)")
    parser.add_argument("--crops", type=int, default=1, help="crops per image (default 1)")
    parser.add_argument("--cases", nargs="+", default=["photo-256", "crop-48", "synthetic-96"],
                        choices=["photo-256", "crop-48", "synthetic-96"], help="cases to run")
    parser.add_argument("--cpu-sample", type=int, default=100,
                        help="images of each case timed in one process for CPU ms per face (default 100)")
    parser.add_argument("--no-record", action="store_true", help=f"do not append to {RESULTS}")
    args = parser.parse_args(argv)
    config = PrepConfig(template=load_template(), size=args.size, crops=args.crops)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            items = write_case(Path(tmp) / case, case, args.images, rng)
            seconds, rate, steady, counts = run_case(items, config, args.workers)
            cpu_ms = cpu_ms_per_face(items[:args.cpu_sample], config)
            rows.append({
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": git_commit(),
                "cpus": len(os.sched_getaffinity(0)), "load_1min": f"{os.getloadavg()[0]:.2f}", "case": case,
                "images": len(items), "workers": args.workers, "size": args.size, "crops": args.crops,
                "seconds": f"{seconds:.2f}", "faces_per_s": f"{rate:.1f}", "steady_per_s": f"{steady:.1f}",
                "detected": counts["detected"], "fallbacks": counts["frame"], "skipped": counts["skipped"],
                "cpu_ms_per_face": f"{cpu_ms:.2f}", "idle_estimate_per_s": f"{args.workers * 1000 / cpu_ms:.0f}"})
    print(f"{'case':<14}{'images':>7}{'workers':>8}{'seconds':>9}{'faces/s':>9}{'steady/s':>9}"
          f"{'detected':>9}{'fallback':>9}{'cpu ms':>8}{'idle est/s':>11}{'load':>6}")
    for row in rows:
        print(f"{row['case']:<14}{row['images']:>7}{row['workers']:>8}{row['seconds']:>9}{row['faces_per_s']:>9}"
              f"{row['steady_per_s']:>9}{row['detected']:>9}{row['fallbacks']:>9}{row['cpu_ms_per_face']:>8}"
              f"{row['idle_estimate_per_s']:>11}{row['load_1min']:>6}")
    if not args.no_record:
        append_rows(RESULTS, FIELDS, rows)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
