"""Shared fixtures: pycaffe in CPU mode, seeded RNGs, the caffe tool, and a toy model trained
by the real pipeline (with its ONNX export) for the inference and packaging tests."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tools import prepare
from runtime.caffe_env import caffe_binary, import_caffe
from tools import crossval, export_onnx

SYNTHETIC_TOY_RUN = "synthetic_toy_l2"


@pytest.fixture(scope="session")
def caffe():
    module = import_caffe()
    module.set_mode_cpu()
    return module


@pytest.fixture(scope="session")
def caffe_bin():
    return caffe_binary()


@pytest.fixture(scope="session")
def fer_cache_dir():
    """The cache root scripts/install.sh uses (FER_CACHE_DIR, else $XDG_CACHE_HOME/fer-sparse)."""
    return Path(os.environ.get("FER_CACHE_DIR")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer-sparse")


@pytest.fixture
def rng():
    return np.random.default_rng(20190101)


@pytest.fixture(scope="session")
def synthetic_toy_run(tmp_path_factory):
    """A toy l2 model of the real pipeline: the synthetic dataset prepared by data_prep/prepare.py
    (its images kept with --root), one fold cross-validated by tools/crossval.py (60 iterations of
    a real `caffe train`). Returns its paths, predictions.json and the fold's test images."""
    root = tmp_path_factory.mktemp("synthetic_toy")
    prepare.main(["--dataset", "synthetic", "--root", str(root / "faces"), "--out", str(root / "data"),
                  "--size", "48", "--folds", "2", "--synthetic-subjects", "4", "--synthetic-images", "3",
                  "--workers", "1", "--quiet"])
    crossval.main(["--data", str(root / "data"), "--net", "toy", "--variant", "l2", "--max-folds", "1",
                   "--iters", "60", "--batch-size", "32", "--runs-dir", str(root / "runs")])
    run = root / "runs" / SYNTHETIC_TOY_RUN
    predictions = json.loads((run / "fold_00" / "predictions.json").read_text())
    return {"root": root, "run": run, "fold": run / "fold_00", "data": root / "data",
            "landmarks": root / "faces" / "landmarks.csv", "predictions": predictions,
            "sources": [p["source"] for p in predictions]}


@pytest.fixture(scope="session")
def synthetic_toy_onnx(synthetic_toy_run):
    """synthetic_toy_run's model exported by tools/export_onnx.py (its manifest in the metadata)."""
    return export_onnx.main(["--model", str(synthetic_toy_run["run"]),
                             "--out", str(synthetic_toy_run["root"] / "toy.onnx")])
