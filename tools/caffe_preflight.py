"""The pre-flight of ``caffe train`` that .venv/bin/caffe runs before the real caffe.

    python tools/caffe_preflight.py train -solver prototxt/resnet_l2_solver.prototxt [caffe flags]

Takes caffe's own arguments; runtime/preflight.py does the checks. Exit status
0: let Caffe run (any note, such as the announcement of the initial test pass,
is printed to stderr first); 1: the training would fail, and the message says
why and what to do.
"""
import sys

from data_prep.prepared import prepare_command
from runtime.preflight import PreflightError, check_command


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        notes = check_command(argv, prepare_command=prepare_command)
    except PreflightError as error:
        print(f"caffe train: {error}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"caffe train: {note}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
