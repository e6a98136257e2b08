"""A Markdown report of run folders, our numbers beside the paper's.

    python tools/report.py runs/ckplus_resnet_l2_center runs/ckplus_resnet_softmax ... \
        [--out report.md] [--title TITLE]

Sections: accuracies beside the paper's Tables 3, 5, 6 and 7; sensitivity,
specificity and AUC beside Table 4; the cross-database matrix beside Table 12;
RespondRatio beside Table 2; the protocol checks; the runs' plots
(experiments/reporting/report.py). A glob such as runs/* also matches
folders that are not runs: the main job's folder and a folder of run folders
stand for the runs they hold, anything else is skipped, each with a line that
says so; the command fails only when no run folder is left.
"""
import argparse
import sys
from pathlib import Path

from experiments.reporting.common import split_run_folders
from experiments.reporting.report import build_report
from tools.command import command_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path (default: report.md beside the first path given)")
    parser.add_argument("--title", default="Results beside the paper")
    args = parser.parse_args(argv)
    runs, expanded, skipped = split_run_folders(args.runs)
    for folder, found in expanded:
        print(f"{folder}: not a run folder; reporting the {len(found)} run folder(s) it holds "
              f"({', '.join(str(run) for run in found)})")
    if skipped:
        print(f"skipped {len(skipped)} of {len(args.runs)} path(s), neither run folders nor folders of runs:")
        for path, reason in skipped:
            print(f"  {path}: {reason}")
    if not runs:
        parser.error("none of the paths is or holds a run folder (a folder with config.json, written by "
                     "tools/crossval.py, tools/crossdb.py or tools/reproduce.py); pass run folders")
    out = args.out or args.runs[0].parent / "report.md"
    with command_errors(__file__, argv):
        build_report(runs, out, args.title)
    print(f"report: {out}")
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
