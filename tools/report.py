"""A Markdown report of run folders, our numbers beside the paper's.

    python tools/report.py runs/ckplus_resnet_l2_center runs/ckplus_resnet_softmax ... \
        [--out report.md] [--title TITLE]

Sections: accuracies beside the paper's Tables 3, 5, 6 and 7; sensitivity,
specificity and AUC beside Table 4; the cross-database matrix beside Table 12;
RespondRatio beside Table 2; the runs' plots (experiments/reporting/report.py).
"""
import argparse
from pathlib import Path

from experiments.reporting.report import build_report
from tools.command import command_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path (default: report.md beside the first run folder)")
    parser.add_argument("--title", default="Results beside the paper")
    args = parser.parse_args(argv)
    out = args.out or args.runs[0].parent / "report.md"
    with command_errors(__file__, argv):
        build_report(args.runs, out, args.title)
    print(f"report: {out}")
    return out


if __name__ == "__main__":
    main()
