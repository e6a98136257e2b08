"""The project's main job, end to end on the embedded synthetic dataset.

    python tools/main_job.py [--out runs/main] [--iters 300] [--folds 3] [--variants softmax l2 l2_center]

1. generate the synthetic, licence-free expression dataset and prepare it
   (alignment, crops, gray-level normalisation, person-independent folds,
   LMDBs) with data_prep/prepare.py;
2. cross-validate the paper's toy network (Section 3.2) with each variant
   under `caffe train` (tools/crossval.py);
3. RespondRatio (Eq. 13) of each trained toy network (tools/respond_ratio.py);
4. a Markdown report beside the paper's numbers (tools/report.py).

Every step reuses what a previous run finished, so a second run only redoes
what is missing. Prints where the report is.
"""
import argparse
import time
from pathlib import Path

from data_prep import prepare
from runtime.caffe_env import REPO_ROOT
from tools import crossval, report, respond_ratio
from tools.runs import read_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "main",
                        help="folder for the prepared data, the runs and the report (default runs/main)")
    parser.add_argument("--folds", type=int, default=3, help="person-independent folds (default 3)")
    parser.add_argument("--subjects", type=int, default=10, help="synthetic subjects (default 10)")
    parser.add_argument("--images", type=int, default=8,
                        help="synthetic images per subject and expression (default 8)")
    parser.add_argument("--iters", type=int, default=300, help="training iterations per fold (default 300)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64, the paper's)")
    parser.add_argument("--variants", nargs="+", default=["softmax", "l2", "l2_center"],
                        help="toy-net variants to compare (default: softmax l2 l2_center)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    data_dir = args.out / "synthetic"
    if (data_dir / "manifest.json").is_file():
        print(f"[1/4] prepared dataset: reusing {data_dir}")
    else:
        print(f"[1/4] generating and preparing the synthetic dataset into {data_dir}")
        args.out.mkdir(parents=True, exist_ok=True)
        prepare.main(["--dataset", "synthetic", "--out", str(data_dir), "--folds", str(args.folds),
                      "--synthetic-subjects", str(args.subjects),
                      "--synthetic-images", str(args.images)])
    manifest = read_json(data_dir / "manifest.json")

    runs_dir = args.out / "runs"
    run_dirs = []
    for index, variant in enumerate(args.variants):
        print(f"[2/4] cross-validation {index + 1}/{len(args.variants)}: toy net, {variant}")
        crossval.main(["--data", str(data_dir), "--net", "toy", "--variant", variant,
                       "--iters", str(args.iters), "--batch-size", str(args.batch_size),
                       "--runs-dir", str(runs_dir)])
        run_dirs.append(runs_dir / f"{manifest['dataset']}_toy_{variant}")

    print("[3/4] RespondRatio (Eq. 13) of the trained toy networks")
    respond_ratio.main([str(d) for d in run_dirs])

    print("[4/4] report")
    report.build_report(run_dirs, args.out / "report.md",
                        title="Main job: toy network on the synthetic dataset")
    print(f"done in {time.time() - started:.0f} s. Report: {args.out / 'report.md'}")
    return args.out / "report.md"


if __name__ == "__main__":
    main()
