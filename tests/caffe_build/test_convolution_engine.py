"""Which code runs Caffe's CPU convolutions (patch 0107, CMakeLists.txt
CAFFE_CPU_CONVOLUTION): oneDNN in the default build, with kernels chosen at run
time, Caffe's im2col + GEMM with CAFFE_CPU_CONVOLUTION=gemm, a clear error for
anything else; and the GEMM path and oneDNN's AVX2 kernels match the numpy
references of tests/caffe_build/test_speed_patches.py too (the default path runs them
in the main test process)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.caffe_env import REPO_ROOT, caffe_prefix, links_onednn

ONEDNN_LOG = "CPU convolutions run on oneDNN"
NUMPY_REFERENCE_TESTS = Path(__file__).with_name("test_speed_patches.py")


def conv_model(tmp_path):
    path = tmp_path / "conv.prototxt"
    path.write_text("""
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.1 } } }
""")
    return path


def caffe_time(caffe_bin, model, **env):
    """`caffe time` on ``model`` with glog's INFO lines on stderr: (exit code, log)."""
    environment = {k: v for k, v in os.environ.items() if k != "CAFFE_CPU_CONVOLUTION"}
    environment.update(GLOG_minloglevel="0", GLOG_logtostderr="1", **env)
    proc = subprocess.run([str(caffe_bin), "time", "-model", str(model), "-iterations", "1"],
                          capture_output=True, text=True, env=environment, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(bool(os.environ.get("FER_CAFFE_PREFIX")),
                    reason="FER_CAFFE_PREFIX names a Caffe that scripts/install.sh did not build")
def test_install_builds_caffe_with_the_convolutions_asked_for():
    asked = os.environ.get("FER_CAFFE_CPU_CONVOLUTION", "onednn")  # install.sh's default
    assert links_onednn(caffe_prefix()) == (asked == "onednn"), (
        f"{caffe_prefix()} was built by scripts/install.sh with CAFFE_CPU_CONVOLUTION={asked}, "
        "yet its libcaffe does the opposite about oneDNN")


def test_convolutions_run_on_onednn_unless_switched_to_gemm(caffe_bin, tmp_path):
    model = conv_model(tmp_path)
    code, log = caffe_time(caffe_bin, model)
    assert code == 0, log[-2000:]
    assert (ONEDNN_LOG in log) == links_onednn(caffe_prefix()), log[-2000:]
    code, log = caffe_time(caffe_bin, model, CAFFE_CPU_CONVOLUTION="gemm")
    assert code == 0, log[-2000:]
    assert ONEDNN_LOG not in log


def test_onednn_picks_its_kernels_at_run_time(caffe_bin, tmp_path):
    # One build, every x86-64 processor: oneDNN's kernels are chosen when a process starts,
    # and DNNL_MAX_CPU_ISA caps them, here at what an AVX2-only machine (AMD Zen 3) has.
    if not links_onednn(caffe_prefix()):
        pytest.skip("this Caffe was built with CAFFE_CPU_CONVOLUTION=gemm")
    code, log = caffe_time(caffe_bin, conv_model(tmp_path), DNNL_MAX_CPU_ISA="AVX2")
    assert code == 0, log[-2000:]
    assert re.search(ONEDNN_LOG + r" [0-9.]+ \(avx2\)", log), log[-2000:]


def test_an_unknown_convolution_choice_is_refused_by_name(caffe_bin, tmp_path):
    code, log = caffe_time(caffe_bin, conv_model(tmp_path), CAFFE_CPU_CONVOLUTION="fastest")
    assert code != 0
    assert "CAFFE_CPU_CONVOLUTION='fastest'" in log and "gemm" in log, log[-2000:]


# The other convolution code a process can run: Caffe's im2col + GEMM, and oneDNN's AVX2
# kernels (what an AVX2-only machine runs; this machine may have AVX-512).
OTHER_PATHS = {"gemm": {"CAFFE_CPU_CONVOLUTION": "gemm"},
               "onednn-avx2": {"DNNL_MAX_CPU_ISA": "AVX2"}}


@pytest.mark.parametrize("path", OTHER_PATHS)
def test_the_other_convolution_paths_match_numpy_as_well(path):
    # Both variables are read once per process: the reference tests run in one of their own.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(NUMPY_REFERENCE_TESTS), "-k", "convolution"]
    env = dict(os.environ, **OTHER_PATHS[path])
    collected = subprocess.run(command + ["--collect-only"], capture_output=True, text=True,
                               env=env, cwd=REPO_ROOT, timeout=300)
    wanted = re.search(r"(\d+)(?:/\d+)? tests? collected", collected.stdout)
    assert wanted and int(wanted.group(1)) >= 8, collected.stdout[-2000:]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(rf"\b{wanted.group(1)} passed", proc.stdout), proc.stdout[-2000:]
