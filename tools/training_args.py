"""Command-line arguments of the training options (experiments.running.options), and the
tools' handling of a refused option.

Each flag, its help, type and choices come from the option's own definition;
an old spelling of a renamed flag still works and prints what replaced it
(tools/renamed_flags.py).
"""
import sys
from contextlib import contextmanager
from pathlib import Path

from experiments.running.options import OptionError, TrainingOptions, option_specs
from runtime.caffe_env import REPO_ROOT
from tools.renamed_flags import add_renamed_argument


def add_training_arguments(parser):
    for name, spec in option_specs().items():
        kwargs = {"dest": name, "help": spec.help, "type": spec.kind}
        if spec.choices:
            kwargs["choices"] = spec.choices
        if spec.required:
            kwargs["required"] = True
        else:
            kwargs["default"] = None
        add_renamed_argument(parser, spec.flag, spec.renamed_from, **kwargs)
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs",
                        help="where run folders go (default: <repo>/runs)")


def training_options(args):
    """TrainingOptions from parsed arguments (raises OptionError on a refused value)."""
    return TrainingOptions(**{name: getattr(args, name) for name in option_specs()})


@contextmanager
def refused_options_exit():
    """Turn an OptionError (a refused input, nothing done yet) into its message and exit status 2."""
    try:
        yield
    except OptionError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
