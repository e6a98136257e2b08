"""RespondRatio (the paper's Eq. 13, Table 2) of trained toy networks.

    python tools/respond_ratio.py runs/mmi_toy_l2 [runs/mmi_toy_l2norm_a2 ...] [--data PREPARED]

Writes ``respond_ratio.json`` into each run folder and prints the ratios; the
definition, the face parts and how crops are handled: experiments/analysis/respond_ratio.py.
"""
import argparse
from pathlib import Path

from experiments.paper.paper_results import TABLE2_PARTS
from experiments.analysis.respond_ratio import run_respond_ratio
from tools.command import command_errors


def print_ratios(run_dir, result):
    print(f"{Path(run_dir).name}: RespondRatio (Eq. 13)")
    print(f"  {'expression':>10} " + " ".join(f"{p:>10}" for p in TABLE2_PARTS))
    for name, values in result["ratios"].items():
        print(f"  {name:>10} " + " ".join(f"{values[p]:10.3f}" for p in TABLE2_PARTS))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="crossval run folders of the toy net")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared dataset (default: the one the run was trained on)")
    args = parser.parse_args(argv)
    with command_errors(__file__, argv, kept="the ratios of the runs printed above"):
        for run_dir in args.runs:
            print_ratios(run_dir, run_respond_ratio(run_dir, args.data))


if __name__ == "__main__":
    main()
