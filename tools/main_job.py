"""The project's main job, end to end on the embedded synthetic dataset.

    python tools/main_job.py [--out runs/main] [--iters 300] [--folds 3] [--variants softmax l2 l2_center]

Generates and prepares the synthetic dataset, cross-validates the toy network
with each variant under `caffe train`, computes RespondRatio (Eq. 13) and
writes a Markdown report beside the paper's numbers (experiments/running/main_job.py),
ending with tools/predict.py applied to generated faces of an unseen subject
with the last variant's model (inference/report_example.py). Every step reuses
what a previous run finished. Prints where the report is.
"""
import argparse
from pathlib import Path

from experiments.running.main_job import MainJob, run_main_job
from experiments.running.options import TrainingOptions
from inference.report_example import predict_example_markdown, write_example_faces
from runtime.caffe_env import REPO_ROOT
from tools.command import command_errors
from tools.training_args import refused_options_exit


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "main",
                        help="folder for the prepared data, the runs and the report (default runs/main)")
    parser.add_argument("--folds", type=int, default=3,
                        help="person-independent folds the synthetic data is split into (default 3), "
                             "as data_prep/prepare.py's --folds")
    parser.add_argument("--subjects", type=int, default=10, help="synthetic subjects (default 10)")
    parser.add_argument("--images", type=int, default=8,
                        help="synthetic images per subject and expression (default 8)")
    parser.add_argument("--iters", type=int, default=300, help="training iterations per fold (default 300)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64, the paper's)")
    parser.add_argument("--variants", nargs="+", default=["softmax", "l2", "l2_center"],
                        help="toy-net variants to compare (default: softmax l2 l2_center)")
    return parser.parse_args(argv)


def predict_example(run_dirs, out):
    return predict_example_markdown(run_dirs[-1], write_example_faces(out / "example_faces"))


def main(argv=None):
    args = parse_args(argv)
    with refused_options_exit():
        # Every variant's options checked before the dataset is prepared.
        for variant in args.variants:
            TrainingOptions(net="toy", variant=variant, iters=args.iters, batch_size=args.batch_size)
    with command_errors(__file__, argv, kept=f"the prepared dataset (if it was finished), the finished "
                        f"folds and the newest snapshots under {args.out}"):
        return run_main_job(MainJob(out=args.out, folds=args.folds, subjects=args.subjects,
                                    images=args.images, iters=args.iters, batch_size=args.batch_size,
                                    variants=tuple(args.variants)),
                            extra_sections=[predict_example])


if __name__ == "__main__":
    main()
