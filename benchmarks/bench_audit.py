"""Cost of the data-quality audit beside the whole preparation of a database.

    python benchmarks/bench_audit.py --dataset fer2013 --root ~/data/fer2013 [--size 48] [--workers 2]

Runs ``data_prep/prepare.py`` on the database (into a temporary folder, deleted
afterwards) and measures its CPU time (this process's children: the command
and its worker processes) and wall time. Then, in this one process, decodes
every image and measures the audit's own work: ``image_figures`` on every
decoded image (the per-image work the preparation workers do; decoding is
shared with the preparation and not counted) and ``build_audit`` (grouping
and checks). Prints the figures and the audit's share of the preparation's
CPU time, and appends them to benchmarks/audit.csv with the date, commit and
1-minute load average. CPU times depend much less than wall times on the other
load of a shared machine.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.results import append_rows
from data_prep.audit import build_audit, image_figures
from data_prep.labels import class_names
from data_prep.pipeline import decode_item
from data_prep.registry import DATASETS, default_options

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "audit.csv"


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=tuple(DATASETS))
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, wall0 = children_cpu(), time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "data_prep" / "prepare.py"), "--dataset", args.dataset,
                        "--root", str(args.root), "--size", str(args.size), "--out", str(Path(tmp) / "out"),
                        "--workers", str(args.workers), "--quiet"], check=True)
        prepare_cpu, prepare_wall = children_cpu() - cpu0, time.perf_counter() - wall0
    read = DATASETS[args.dataset].read(args.root, default_options(args.dataset, root=args.root))
    images = [decode_item(item) for item in read.items]
    start = time.process_time()
    figures = np.array([image_figures(image) for image in images])
    figures_cpu = time.process_time() - start
    start = time.process_time()
    usages = [item.usage or "all" for item in read.items]
    parts = {"split": {part: [i for i, u in enumerate(usages) if u == part] for part in set(usages)}}
    build_audit(parts, [item.label for item in read.items], class_names(read.num_classes), figures)
    aggregate_cpu = time.process_time() - start
    audit_cpu = figures_cpu + aggregate_cpu
    row = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
           "load_1min": round(os.getloadavg()[0], 2), "dataset": args.dataset, "images": len(images),
           "size": args.size, "workers": args.workers, "prepare_wall_s": round(prepare_wall, 2),
           "prepare_cpu_s": round(prepare_cpu, 2), "audit_figures_cpu_s": round(figures_cpu, 3),
           "audit_aggregate_cpu_s": round(aggregate_cpu, 3),
           "audit_us_per_image": round(1e6 * figures_cpu / len(images), 1),
           "audit_share_of_prepare_cpu": round(audit_cpu / prepare_cpu, 4)}
    for key, value in row.items():
        print(f"{key:28s} {value}")
    append_rows(RESULTS, row, [row])


if __name__ == "__main__":
    main()
