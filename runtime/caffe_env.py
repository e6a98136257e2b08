"""Locating and checking the project's Caffe.

scripts/install.sh builds Caffe and writes ``.venv/bin/caffe`` (a wrapper that
sets the PYTHONPATH of caffe's embedded interpreter) and a ``.pth`` file that
makes ``import caffe`` work in ``.venv/bin/python``. Everything that runs Caffe
goes through this module so that a missing or broken install produces one
message that says what to run.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = ("run `bash scripts/install.sh` in {repo} (it builds Caffe and .venv/), "
                "then use .venv/bin/python and .venv/bin/caffe, or `source .venv/bin/activate`")


class CaffeNotAvailable(RuntimeError):
    """Caffe (pycaffe or the caffe tool) is missing or does not run."""


def _hint():
    return INSTALL_HINT.format(repo=REPO_ROOT)


def import_caffe():
    """Return the pycaffe module, or raise CaffeNotAvailable saying what to run."""
    # pycaffe logs every layer it builds at INFO level; keep the console for
    # results unless the user asked for glog's output. glog reads the variable
    # when pycaffe loads it, so it is set for the import only and child
    # processes (caffe train) keep their full logs.
    previous = os.environ.get("GLOG_minloglevel")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        caffe = importlib.import_module("caffe")
    except ImportError as exc:
        raise CaffeNotAvailable(
            f"pycaffe cannot be imported by {sys.executable} ({exc}); {_hint()}") from exc
    finally:
        if previous is None:
            os.environ.pop("GLOG_minloglevel", None)
        else:
            os.environ["GLOG_minloglevel"] = previous
    if not hasattr(caffe, "Net") or not hasattr(caffe, "Layer"):
        raise CaffeNotAvailable(
            f"the 'caffe' module at {getattr(caffe, '__file__', '?')} is not pycaffe; {_hint()}")
    return caffe


def caffe_binary():
    """Path of the caffe tool to run: $FER_CAFFE_BIN, else the repo's .venv/bin/caffe."""
    path = Path(os.environ.get("FER_CAFFE_BIN") or REPO_ROOT / ".venv" / "bin" / "caffe")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise CaffeNotAvailable(f"the caffe tool {path} does not exist; {_hint()}")
    return path


def check_caffe_binary(path=None):
    """Run ``caffe --version``; return the version line or raise CaffeNotAvailable."""
    path = Path(path) if path else caffe_binary()
    try:
        proc = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise CaffeNotAvailable(f"the caffe tool {path} cannot be started ({exc}); {_hint()}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CaffeNotAvailable(
            f"the caffe tool {path} is broken (exit {proc.returncode}: {detail[0]}); {_hint()}")
    return proc.stdout.strip() or proc.stderr.strip()


def caffe_prefix():
    """The install prefix of the pycaffe that import_caffe() loads (holds bin/, lib/, python/)."""
    return Path(import_caffe().__file__).resolve().parents[2]


def links_onednn(prefix):
    """Whether the libcaffe in ``prefix`` was built with USE_DNNL (CMakeLists.txt
    CAFFE_CPU_CONVOLUTION=onednn): its dynamic section names libdnnl."""
    libraries = sorted(Path(prefix, "lib").glob("libcaffe.so*"))
    if not libraries:
        raise CaffeNotAvailable(f"no lib/libcaffe.so* in {prefix}; {_hint()}")
    return b"libdnnl.so" in libraries[-1].read_bytes()
