"""What every command line does with the libraries' typed errors and with Ctrl-C.

A library raises a typed error whose message says what is wrong and what to do;
a command prints it as "<tool>: error: <message>" and exits with status 1.
Ctrl-C stops a long command with one line saying what was kept and the exact
command that resumes it, and exit status 130 (128 + SIGINT), as shells do.
"""
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

from data_prep.audit import AuditError
from data_prep.items import DatasetLayoutError
from data_prep.pipeline import ImageError
from data_prep.prepared import PrepareError, PreparedDatasetError
from experiments.errors import ExperimentError

INTERRUPTED = 130
# Errors of the libraries that refuse a run or stop it: each message is complete.
LIBRARY_ERRORS = (ExperimentError, PreparedDatasetError, PrepareError, DatasetLayoutError, ImageError,
                  AuditError)


def resume_command(tool, argv=None):
    """The command line that runs ``tool`` (a path under tools/) again with the same arguments."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"tools/{Path(tool).name}", *map(str, argv)])


@contextmanager
def command_errors(tool, argv=None, kept=None, errors=LIBRARY_ERRORS):
    """Run a command's body: ``errors`` become "<tool>: error: ..." and exit status 1; Ctrl-C
    becomes one line naming what was ``kept`` (None: nothing) and the resuming command, and
    exit status 130."""
    name = Path(tool).name
    try:
        yield
    except errors as error:
        # SystemExit with a message: Python prints it to stderr and exits with status 1.
        raise SystemExit(f"{name}: error: {error}") from None
    except KeyboardInterrupt:
        # An object the interrupt cut short in its constructor (a tqdm bar, say) fails again in
        # its __del__ at exit, printing a traceback that says nothing about the run: silence those.
        sys.unraisablehook = _ignore
        what = f"kept {kept}" if kept else "nothing was kept"
        print(f"\n{name}: interrupted (Ctrl-C); {what}. Resume with: {resume_command(tool, argv)}",
              file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None


def _ignore(unraisable):
    """sys.unraisablehook after Ctrl-C: teardown errors of half-built objects are not reported."""
