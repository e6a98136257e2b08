"""Person-independent K-fold cross-validation of one net and variant.

    python tools/crossval.py --data data/prepared/ckplus --net resnet --variant l2_center \
        [--max-folds N] [--iters N] [--weights W] [--solver-seed S] [--transferred-lr-mult R]
        [--snapshot-every K] [--gpu ID] [--runs-dir runs] [--name NAME]

For each fold of the prepared dataset: write that fold's nets and solver into
``<runs-dir>/<name>/fold_XX/``, run ``caffe train`` in its own process (log in
``train.log``), test the final snapshot on the fold's test LMDB (an image's
prediction is the mean softmax over its crops) and write ``predictions.json``
and ``result.json``. Finished folds are never redone; an interrupted fold
resumes from its newest valid snapshot (every --snapshot-every iterations),
or restarts cleanly if it has none. Connection-pruning variants (``*_cp``)
train twice per fold: unpruned, then pruned from those trained weights. At
the end, prints and writes (``summary.json``) the mean ± std of the fold
accuracies and the pooled confusion matrix, and draws ``confusion.png``,
``roc.png`` and ``training.png``. FER2013's official split
trains on Training, watches PublicTest and tests on PrivateTest.
"""
import argparse
from pathlib import Path

from experiments.running.crossval import print_summary, run_crossval
from tools.command import command_errors
from tools.renamed_flags import add_renamed_argument
from tools.training_args import add_training_arguments, refused_options_exit, training_options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path,
                        help="prepared dataset folder (written by data_prep/prepare.py)")
    add_renamed_argument(parser, "--max-folds", ("--folds",), type=int, default=None,
                         help="run only the first N folds (default: every fold of the prepared dataset; "
                              "prepare.py's --folds is how many folds the data is split into)")
    add_training_arguments(parser)
    parser.add_argument("--name", default=None,
                        help="run folder name (default: <dataset>_<net>_<variant>)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    kept = "the finished folds and the interrupted fold's newest snapshots in the run folder"
    with command_errors(__file__, argv, kept=kept), refused_options_exit():
        run_dir, summary = run_crossval(args.data, training_options(args), args.runs_dir,
                                        max_folds=args.max_folds, name=args.name, gpu=args.gpu)
    print_summary(run_dir.name, run_dir, summary)
    return summary


if __name__ == "__main__":
    main()
