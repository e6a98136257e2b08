"""The command line of scripts/gpu/session.sh: one GPU session, the check and Table 3's reproduction.

    GPU machine, first call:  scripts/gpu/session.sh --fer2013 FER2013.tar.xz [--check-budget-s 240] [--wait-s 300]
    GPU machine, later calls: scripts/gpu/session.sh --collect [--wait-s N]

Each call ends with <out>/gpu_session.tar.gz (default $OUT): the check's logs, the reproduction's log,
stages.json, table and the runs' logs. docs/docker.md ("A GPU session") gives the calls in order.
--device cpu runs it here without the GPU check (the reproduction at --scale smoke): not a result.
"""
import argparse
import os
import sys
from pathlib import Path

from experiments.running.gpu_session import Session, SessionError, SessionOptions


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="session.sh", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--fer2013", type=Path, help="tar (or .tar.xz) of the FER2013 image folder")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/fer-gpu-session")),
                        help="where gpu_session.tar.gz goes (default $OUT or /tmp/fer-gpu-session)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fer-gpu-session-work"),
                        help="the unpacked bundle, the check's logs, the reproduction (kept across calls)")
    parser.add_argument("--device", default="gpu", help="gpu (default) or cpu (no check; smoke scale)")
    parser.add_argument("--check-budget-s", type=int, default=240,
                        help="seconds for scripts/gpu_check.sh, its unpacking included (default 240; "
                        "0: no check)")
    parser.add_argument("--wait-s", type=int, default=300,
                        help="seconds this call waits for the reproduction before packing (default 300)")
    parser.add_argument("--collect", action="store_true",
                        help="start nothing: wait for the running reproduction, then pack")
    parser.add_argument("--scale", default="paper", help="the reproduction's scale on the GPU (default paper)")
    parser.add_argument("--net", default="resnet", help="the reproduction's net (default resnet)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = SessionOptions(out=args.out, work=args.work, fer2013=args.fer2013, device=args.device,
                             check_budget_s=args.check_budget_s, wait_s=args.wait_s,
                             collect_only=args.collect, scale=args.scale, net=args.net)
    try:
        Session(options).run()
    except SessionError as error:
        print(f"session: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
