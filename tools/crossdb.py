"""Cross-database generalisation (the paper's Table 12): train on one database,
test on others.

    python tools/crossdb.py --train-data data/prepared/oulu \
        --test-data data/prepared/ckplus data/prepared/mmi --net resnet --variant l2_center \
        [--iters N] [--weights W] [--solver-seed S] [--snapshot-every K] [--gpu ID] [--runs-dir runs]
        [--name NAME]

The net is trained once on every image of the training database and tested on
every image of each test database, classes matched by name (a class the
training database lacks is left out and counted; a model is scored over the
test database's classes). FER2013's official split trains on Training
(watching PublicTest) and is tested on all its 35,887 images (--fer2013-test
private: PrivateTest alone; docs/recipe.md says why). Prints
each test's confusion matrix (rows true; Table 13 is FER2013 -> CK+). An
interrupted training resumes from its newest snapshot. See experiments/running/crossdb.py.
"""
import argparse
from pathlib import Path

from data_prep.prepared import PreparedDataset
from experiments.running.crossdb import (OFFICIAL_TEST_DEFAULT, OFFICIAL_TEST_SETS, print_confusions,
                                         run_crossdb)
from tools.command import command_errors
from tools.training_args import add_training_arguments, refused_options_exit, training_options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-data", required=True, type=Path, help="prepared training dataset")
    parser.add_argument("--test-data", required=True, type=Path, nargs="+",
                        help="prepared test datasets")
    parser.add_argument("--fer2013-test", choices=OFFICIAL_TEST_SETS, default=OFFICIAL_TEST_DEFAULT,
                        help="what a test database with an official split (FER2013) contributes: all "
                             "its images (default) or its PrivateTest part")
    add_training_arguments(parser)
    parser.add_argument("--name", default=None,
                        help="run folder name (default: crossdb_<train dataset>_<net>_<variant>)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    kept = "the finished folds and the interrupted fold's newest snapshots in the run folder"
    with command_errors(__file__, argv, kept=kept), refused_options_exit():
        tests = run_crossdb(args.train_data, args.test_data, training_options(args), args.runs_dir,
                            name=args.name, gpu=args.gpu, official_test=args.fer2013_test)
    print_confusions(tests, PreparedDataset.open(args.train_data).classes)
    return tests


if __name__ == "__main__":
    main()
