"""benchmarks/bench_train.py (train_runner, torch_mirror, machine_probe): the nets it times are the project's, its `caffe time`
parsing and its BLAS and convolution reports read a real run, its CSV keeps older
rows; the CMake build's BLAS and convolution choices refuse what they cannot build."""
import csv
import re
import subprocess
import sys

import pytest

from benchmarks import bench_train, torch_mirror, train_runner
from nets.build import experiment_nets, phase_net
from runtime.caffe_env import REPO_ROOT, caffe_prefix, links_onednn


@pytest.mark.parametrize("net", train_runner.NETS)
def test_timing_net_is_the_train_net_with_input_layers(caffe, net, tmp_path):
    timing, roles = train_runner.caffe_timing_net(net, 2)
    train = phase_net(experiment_nets(net, "softmax", batch_size=2, train_source="unused",
                                      test_source="unused").train_val, 0)
    assert [(l.name, l.type) for l in timing.layer[1:]] == \
        [(l.name, l.type) for l in train.layer[1:]]
    assert timing.layer[0].type == "Input" and list(timing.layer[0].top) == ["data", "label"]
    graph = torch_mirror.layer_graph(timing)  # every layer has a PyTorch translation
    assert [entry["name"] for entry in graph] == [l.name for l in timing.layer]
    if net in ("toy", "cnn48"):  # small enough to instantiate here
        path = tmp_path / "net.prototxt"
        path.write_text(str(timing))
        built = caffe.Net(str(path), caffe.TRAIN)
        assert built.blobs["data"].data.shape == (2, *roles.input_shape)
        assert train_runner.caffe_flops(built) > 0


def test_layer_graph_refuses_an_untranslated_layer(caffe):
    timing, _ = train_runner.caffe_timing_net("toy", 1)
    timing.layer[2].type = "LRN"
    with pytest.raises(ValueError, match="LRN"):
        torch_mirror.layer_graph(timing)


def test_caffe_tool_run_parses_and_names_its_blas(caffe_bin, tmp_path):
    timing, _ = train_runner.caffe_timing_net("toy", 16)
    model = tmp_path / "toy.prototxt"
    model.write_text(str(timing))
    # caffe time's total has a resolution of 1 ms over all iterations: enough of them.
    ms, layers, blas, convolution = train_runner.run_caffe_tool(caffe_bin, model, 30,
                                                               train_runner.measurement_env(1))
    assert ms > 0
    assert {"conv1", "fc1", "loss"} <= set(layers)
    assert all(len(times) == 2 for times in layers.values())
    # The library the caffe process mapped, with its version and run-time kernel family.
    assert "openblas" in blas and "(" in blas, blas
    # What its convolutions ran on, read from the oneDNN library it loaded.
    if links_onednn(caffe_prefix()):
        assert re.match(r"oneDNN \d+\.\d+\.\d+ (avx|sse)", convolution), convolution
    else:
        assert convolution.startswith("im2col + GEMM"), convolution
    _, _, _, switched = train_runner.run_caffe_tool(
        caffe_bin, model, 2, dict(train_runner.measurement_env(1), CAFFE_CPU_CONVOLUTION="gemm"))
    assert switched.startswith("im2col + GEMM"), switched


def test_environment_twins_only_for_builds_with_onednn(caffe):
    builds = train_runner.parse_caffe_builds(
        [], ["gemm:CAFFE_CPU_CONVOLUTION=gemm", "avx2:DNNL_MAX_CPU_ISA=AVX2"])
    labels = [label for label, *_ in builds]
    if links_onednn(caffe_prefix()):
        assert labels == ["caffe", "caffe+gemm", "caffe+avx2"]
        assert [b[3] for b in builds] == [{}, {"CAFFE_CPU_CONVOLUTION": "gemm"},
                                          {"DNNL_MAX_CPU_ISA": "AVX2"}]
    else:
        assert labels == ["caffe"]
    with pytest.raises(train_runner.BenchmarkError, match="SUFFIX:VARIABLE=VALUE"):
        train_runner.parse_caffe_builds([], ["CAFFE_CPU_CONVOLUTION=gemm"])


def test_measurement_env_removes_the_kernel_pinning_variables(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env = train_runner.measurement_env(3)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"


def test_parse_caffe_time_without_a_total_fails():
    with pytest.raises(ValueError, match="Average Forward-Backward"):
        train_runner.parse_caffe_time("I1201 caffe.cpp:400] conv1\tforward: 1.0 ms.\n")


def test_append_rows_keeps_older_rows_under_a_wider_header(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("date,net,old_column\n2026-11-27T22:48Z,vgg16,x\n")
    train_runner.append_rows(path, [{"date": "2026-12-01T23:00Z", "net": "resnet",
                                    "framework": "pytorch"}])
    rows = list(csv.DictReader(path.open()))
    assert [(r["net"], r["old_column"], r["framework"]) for r in rows] == \
        [("vgg16", "x", ""), ("resnet", "", "pytorch")]


def _configure(tmp_path, *args):
    return subprocess.run(["cmake", "-S", str(REPO_ROOT), "-B", str(tmp_path / "build"), *args],
                          capture_output=True, text=True)


def test_cmake_refuses_an_unknown_blas(tmp_path):
    proc = _configure(tmp_path, "-DCAFFE_BLAS=atlas")
    assert proc.returncode != 0
    assert "CAFFE_BLAS='atlas'" in proc.stderr and "scipy-openblas32" in proc.stderr


def test_cmake_refuses_an_unknown_cpu_convolution(tmp_path):
    proc = _configure(tmp_path, "-DCAFFE_CPU_CONVOLUTION=winograd")
    assert proc.returncode != 0
    assert "CAFFE_CPU_CONVOLUTION='winograd'" in proc.stderr and "onednn or gemm" in proc.stderr


def test_cmake_scipy_openblas32_needs_the_wheel_folder(tmp_path):
    proc = _configure(tmp_path, "-DCAFFE_BLAS=scipy-openblas32",
                      f"-DCAFFE_SCIPY_OPENBLAS_DIR={tmp_path / 'missing'}")
    assert proc.returncode != 0
    assert "CAFFE_SCIPY_OPENBLAS_DIR" in proc.stderr and "libscipy_openblas.so" in proc.stderr


def test_gpu_math_must_be_fp32_or_tf32():
    with pytest.raises(SystemExit):
        bench_train.main(["--nets", "toy", "--gpu", "0", "--gpu-math", "fp16", "--no-save"])


def test_gpu_timing_on_a_cpu_only_caffe_says_so(caffe_bin, tmp_path):
    timing, _ = train_runner.caffe_timing_net("toy", 2)
    model = tmp_path / "toy.prototxt"
    model.write_text(str(timing))
    with pytest.raises(train_runner.BenchmarkError, match="Cannot use GPU in CPU-only Caffe"):
        train_runner.run_caffe_tool(caffe_bin, model, 1, train_runner.measurement_env(1), gpu=0)



def test_a_gpu_run_times_enough_iterations_after_a_warm_up():
    cpu = train_runner.TrainBenchOptions(nets=["resnet"], frameworks=["caffe-tool"])
    gpu = train_runner.TrainBenchOptions(nets=["resnet"], frameworks=["caffe-tool"], gpu=0,
                                         maths=["fp32", "tf32"])
    assert train_runner.timed_iterations(cpu, "resnet") == train_runner.DEFAULT_ITERS["resnet"]
    assert train_runner.timed_iterations(gpu, "resnet") >= 50
    assert train_runner.warmup_iterations(gpu) >= 5
    given = train_runner.TrainBenchOptions(nets=["resnet"], frameworks=[], gpu=0, iters=7,
                                           warmup=0)
    assert (train_runner.timed_iterations(given, "resnet"), train_runner.warmup_iterations(given)) \
        == (7, 0)
    # strict FP32 switches off TF32 in the project's Caffe and in cuDNN/cuBLAS themselves
    assert train_runner.GPU_MATH["fp32"] == {"NVIDIA_TF32_OVERRIDE": "0", "CAFFE_ALLOW_TF32": "0"}


def test_the_command_line_runs_caffe_and_pycaffe_through_its_workers(tmp_path):
    results = tmp_path / "train.csv"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_train.py"),
                           "--nets", "toy", "--frameworks", "caffe-tool,pycaffe", "--batch", "16",
                           "--iters", "30", "--repeats", "1", "--threads", "1", "--no-peak",
                           "--results", str(results)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(results.open()))
    assert [r["framework"] for r in rows] == ["caffe tool", "caffe pycaffe"]
    pycaffe = rows[1]
    assert len(pycaffe["ms_per_iter_all"].split()) == 30 and float(pycaffe["ms_per_iter_median"]) > 0
    assert "openblas" in pycaffe["blas"].lower(), pycaffe["blas"]


def test_the_command_line_refuses_a_zero_iteration_count():
    with pytest.raises(SystemExit):
        bench_train.main(["--nets", "toy", "--iters", "0", "--no-save"])


def test_the_pytorch_worker_starts_without_the_gpu_bundles_python(tmp_path, monkeypatch):
    # On the GPU machine bench_train.py runs in the bundle's python3.11 (PYTHONHOME, its site/ and
    # lib/ on the paths, FER_BUNDLE_ROOT naming them) and PyTorch in the machine's python3.12:
    # the worker must get neither the bundle's PYTHONHOME nor its folders, and still the project.
    bundle = tmp_path / "bundle"
    monkeypatch.setenv("FER_BUNDLE_ROOT", str(bundle))
    monkeypatch.setenv("PYTHONHOME", str(bundle / "python/usr"))
    monkeypatch.setenv("PYTHONPATH", f"{REPO_ROOT}:{bundle}/site:/elsewhere")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{bundle}/lib:/opt/torch/nvidia/cudnn/lib")
    seen = tmp_path / "worker-env.txt"
    fake_torch_python = tmp_path / "python3.12"  # records what it was started with, then fails
    fake_torch_python.write_text(f"#!/bin/sh\nenv > {seen}\nexit 3\n")
    fake_torch_python.chmod(0o755)
    options = train_runner.TrainBenchOptions(nets=["toy"], frameworks=["pytorch"], iters=1, warmup=0,
                                             repeats=1, threads=1, torch_python=str(fake_torch_python),
                                             measure_peak=False)
    with pytest.raises(train_runner.BenchmarkError, match="exit 3"):
        train_runner.run(options)
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert "PYTHONHOME" not in env
    assert env["PYTHONPATH"].split(":") == [str(REPO_ROOT), "/elsewhere"]
    assert env["LD_LIBRARY_PATH"] == "/opt/torch/nvidia/cudnn/lib"
