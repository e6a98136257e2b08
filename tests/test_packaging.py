"""pyproject.toml: the console commands in the wheel and in install.sh's venv, and the ONNX route
(`pip install ".[onnx]"` in a fresh venv, then `fer-predict --onnx`) with Caffe absent.

The ONNX route downloads its wheels from PyPI (cached in <FER cache>/pip, so a rerun is quick);
the model it runs is conftest's synthetic_toy_onnx: a toy net trained by the real pipeline
(prepare, crossval's `caffe train`) and exported by tools/export_onnx.py.
"""
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep.synthetic import draw_face, expression_parameters, make_subject
from runtime.caffe_env import REPO_ROOT

pytestmark = pytest.mark.slow

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
COMMANDS = PYPROJECT["project"]["scripts"]
INSTALL_VENV = REPO_ROOT / ".venv"
# What a project build reads (pyproject.toml's packages); the rest of the clone stays behind.
NOT_BUILT = (".git", ".venv", "runs", "data", "build", "*.egg-info", "__pycache__", "tests",
             "prototxt", "benchmarks", "caffe_build", "docs", "scripts")
FACES = 4


def clean_env(**extra):
    """The environment of a user who activated nothing: no PYTHONPATH, no virtualenv."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = "/usr/bin:/bin"
    return dict(env, **extra)


def source_copy(tmp_path):
    """The project's sources outside the clone: a build writes build/ and *.egg-info next to them."""
    target = tmp_path / "src"
    shutil.copytree(REPO_ROOT, target, ignore=shutil.ignore_patterns(*NOT_BUILT))
    return target


def test_every_tool_is_a_console_command():
    assert set(COMMANDS) == {"fer-prepare", "fer-crossval", "fer-crossdb", "fer-reproduce", "fer-report",
                             "fer-predict", "fer-export-onnx", "fer-audit-data", "fer-respond-ratio",
                             "fer-main-job", "fer-fetch-pretrained"}
    for name, target in COMMANDS.items():
        tool = name.removeprefix("fer-").replace("-", "_")
        assert target == f"tools.console:{tool}"
        source = (REPO_ROOT / "tools" / f"{tool}.py").read_text()
        # the command runs the tool's __main__ block, as `python tools/X.py` does
        assert "\ndef main(argv=None):" in source and '\nif __name__ == "__main__":' in source, tool


def test_wheel_lists_every_command_and_the_data_read_at_run_time(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "wheel"), str(source_copy(tmp_path))],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheel").glob("fer_sparse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        listed = archive.read(entry_points).decode()
    for name, target in COMMANDS.items():
        assert f"{name} = {target}" in listed
    assert "data_prep/default_template.json" in names
    for package in ("runtime", "caffe_layers", "nets", "data_prep", "data_prep/readers", "experiments",
                    "experiments/running", "experiments/paper", "experiments/analysis",
                    "experiments/reporting", "inference", "tools"):
        assert f"{package}/__init__.py" in names, package
    assert not any(n.startswith(("tests/", "prototxt/", "benchmarks/")) for n in names)


def test_install_venv_runs_every_command_without_activation(tmp_path):
    assert (INSTALL_VENV / "bin" / "python").exists(), "run `bash scripts/install.sh` first"
    for name in COMMANDS:
        command = INSTALL_VENV / "bin" / name
        assert command.is_file(), f"{command} missing: rerun `bash scripts/install.sh`"
        done = subprocess.run([str(command), "--help"], cwd=tmp_path, env=clean_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{name} --help: {done.stderr}"
        assert done.stdout.startswith(f"usage: {name} "), (name, done.stdout[:200])


def synthetic_photos(folder, count, size=96):
    """Generated faces of subjects the model never saw, one PNG each."""
    folder.mkdir(parents=True)
    for seed in range(count):
        rng = np.random.default_rng([77, seed])
        subject = make_subject(rng, size)
        image, _ = draw_face(rng, subject, expression_parameters(rng, seed % 6, subject), size)
        assert cv2.imwrite(str(folder / f"face{seed}.png"), image)
    return folder


def test_onnx_extra_in_a_fresh_venv_predicts_without_caffe(synthetic_toy_run, synthetic_toy_onnx, fer_cache_dir,
                                                            tmp_path):
    env = clean_env(PIP_CACHE_DIR=str(fer_cache_dir / "pip"))
    venv = tmp_path / "env"
    # The base interpreter: neither this venv's packages nor Debian's site-packages.
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{source_copy(tmp_path)}[onnx]"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert installed.returncode == 0, installed.stderr[-4000:]

    where = subprocess.run([str(python), "-c", "import inference, importlib.util, json\n"
                            "print(json.dumps([inference.__file__, importlib.util.find_spec('caffe') is None]))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    module_file, caffe_absent = json.loads(where.stdout.splitlines()[-1])
    assert Path(module_file).is_relative_to(venv), "the project must come from the venv, not the clone"
    assert caffe_absent, f"pycaffe is importable in {venv}: {where.stdout}"

    photos = synthetic_photos(tmp_path / "photos", FACES)
    out = tmp_path / "faces.jsonl"
    done = subprocess.run([str(venv / "bin" / "fer-predict"), "--onnx", str(synthetic_toy_onnx), "photos",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert sorted(Path(r["input"]).name for r in records) == sorted(p.name for p in photos.iterdir())
    faces = [r for r in records if r["status"] == "face"]
    assert len(faces) >= FACES - 1, records
    classes = json.loads((synthetic_toy_run["data"] / "manifest.json").read_text())["classes"]
    for record in faces:
        assert list(record["probabilities"]) == classes
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
