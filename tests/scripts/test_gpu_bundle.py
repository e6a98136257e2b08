"""The GPU bundle (scripts/gpu/build_bundle.sh) runs the pipeline in a root that holds nothing but it.

The bundle is built (the CUDA Caffe comes from its cache, ~/.cache/fer-sparse/caffe-cuda-<key>)
and unpacked into an empty folder beside a copy of the repository and the few libraries every GPU
machine has (glibc, libstdc++, libgcc_s: the bundle leaves them out on purpose). Then, chrooted into
that folder in a private mount namespace, so that no host Python package and no /etc/matplotlibrc
can be seen, it prepares a FER2013 image export with data_prep/prepare.py, writes Table 3's report
with tools/reproduce.py from runs trained on the host with the CPU Caffe, and runs
tools/predict.py --onnx on a model exported from one of those runs. A package missing from the
bundle stops one of these at its import, and the test fails.

The bundle's Caffe is the CUDA build: without a GPU driver it cannot train, so the train stage is
checked on the GPU machine (scripts/gpu/reproduce_fer2013.sh), not here. Where nvcc is missing the
bundle cannot be built and the test fails saying so: it does not skip.

FER_GPU_BUNDLE=<fer-gpu-bundle.tar.xz> uses an archive already built instead of building one
(fer-gpu-landmarks.tar.xz beside it).
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runtime.caffe_env import REPO_ROOT
from tests.scripts.test_gpu_reproduction import fer2013_tarball

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BUILD = REPO_ROOT / "scripts" / "gpu" / "build_bundle.sh"
REPRODUCE = REPO_ROOT / "scripts" / "gpu" / "reproduce_fer2013.sh"
# What a bare GPU machine provides and the bundle leaves out (pack_bundle.SYSTEM_LIBS).
HOST_LIBS = ("ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
             "librt.so.1", "libresolv.so.2", "libutil.so.1", "libstdc++.so.6", "libgcc_s.so.1")
BUNDLE = "/bundle"
REPO = "/repo"
# The CUDA math libraries (cuBLAS, cuRAND, cuDNN) the bundle leaves to the GPU machine, which has
# them (bundle_env.sh finds them there); here: the ones build_bundle.sh unpacked from NVIDIA's
# wheels to build against. The CUDA Caffe links them, so even importing pycaffe needs them; the
# driver (libcuda) is loaded only by a CUDA call, which nothing here makes.
CUDA_LIBS = "/cuda-libs"


def cuda_libs_dir():
    work = Path(os.environ.get("FER_GPU_BUILD_DIR", "/tmp/caffe-cuda"))
    return Path(os.environ.get("FER_CUDA_LIBS_DIR") or work / "cuda-libs") / "lib"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    given = os.environ.get("FER_GPU_BUNDLE")
    if given:
        assert Path(given).is_file(), f"FER_GPU_BUNDLE={given} does not exist"
        return Path(given)
    assert shutil.which("nvcc"), "nvcc is not on PATH: the CUDA Caffe of the GPU bundle cannot be built here"
    out = tmp_path_factory.mktemp("gpu-bundle")
    result = subprocess.run(["bash", str(BUILD), str(out)], capture_output=True, text=True, timeout=5400)
    assert result.returncode == 0, f"build_bundle.sh failed:\n{result.stderr[-4000:]}"
    return out / "fer-gpu-bundle.tar.xz"


def bare_root(root, bundle):
    """The bundle, a copy of the repository's files, the host's glibc/libstdc++ and empty /tmp, /dev, /proc."""
    (root / BUNDLE[1:]).mkdir(parents=True)
    # The bundle and, beside it, the archive of dlib's 68-point landmark model (predict.py loads it).
    for archive in (bundle, bundle.parent / "fer-gpu-landmarks.tar.xz"):
        subprocess.run(["tar", "-xJf", str(archive), "-C", str(root / BUNDLE[1:])], check=True)
    tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        source = REPO_ROOT / name
        if source.is_file():
            (root / REPO[1:] / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / REPO[1:] / name)
    lib = root / "lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in HOST_LIBS:
        shutil.copy2(Path("/lib/x86_64-linux-gnu", name).resolve(), lib / name)
    (root / "lib64").mkdir()
    os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    for folder in ("tmp", "dev", "proc", "work", CUDA_LIBS[1:]):
        (root / folder).mkdir(exist_ok=True)


def in_root(root, *args, timeout=900, program=f"{BUNDLE}/python/usr/bin/python3.11"):
    """Runs the bundle's Python (or another ``program`` of the bundle) in the bare root, with the
    environment scripts/gpu/bundle_env.sh sets."""
    site = f"{BUNDLE}/site"
    env = {"PATH": "/nonexistent", "HOME": "/tmp", "PYTHONHOME": f"{BUNDLE}/python/usr",
           "PYTHONNOUSERSITE": "1", "PYTHONPATH": f"{REPO}:{BUNDLE}/caffe/python:{site}",
           "LD_LIBRARY_PATH": f"{BUNDLE}/lib:{BUNDLE}/caffe/lib:{CUDA_LIBS}",
           "MATPLOTLIBRC": f"{site}/matplotlib/mpl-data/matplotlibrc", "MPLBACKEND": "Agg",
           "FER_CAFFE_BIN": f"{BUNDLE}/caffe/bin/caffe", "GLOG_logtostderr": "1"}
    # Host tools by absolute path: the environment's PATH names nothing, inside or out.
    tools = {name: shutil.which(name) for name in ("unshare", "sh", "mount", "chroot")}
    assert all(tools.values()), f"the bare root needs these host tools: {tools}"
    libs = cuda_libs_dir()
    assert (libs / "libcurand.so.10").exists(), (
        f"{libs} has no CUDA 13 math libraries: scripts/gpu/build_bundle.sh unpacks them there "
        "(FER_CUDA_LIBS_DIR / FER_GPU_BUILD_DIR name another place)")
    mount = (f'{tools["mount"]} --rbind /dev "$0/dev" && {tools["mount"]} -t proc proc "$0/proc" && '
             f'{tools["mount"]} --bind -o ro {libs} "$0{CUDA_LIBS}" && '
             f'exec {tools["chroot"]} "$0" "$@"')
    command = [tools["unshare"], "--mount", "--fork", tools["sh"], "-c", mount, str(root), program, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def finished_runs(tmp_path):
    """Table 3's toy softmax and L2 cells, trained on the host with the CPU Caffe (smoke scale)."""
    work = tmp_path / "host"
    result = subprocess.run(["bash", str(REPRODUCE), "--device", "cpu", "--scale", "smoke", "--net", "toy",
                             "--fer2013", str(fer2013_tarball(tmp_path)), "--stages", "prepare,train",
                             "--out", str(work / "out"), "--work", str(work)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return work


def test_the_bundle_runs_prepare_report_and_predict_in_a_bare_root(bundle, tmp_path):
    root = tmp_path / "root"
    bare_root(root, bundle)
    host = finished_runs(tmp_path)

    # Nothing of the host's Python is visible: the standard library and every package come from the bundle.
    probe = in_root(root, "-c", "import sys, os, numpy, matplotlib, matplotlib.pyplot; "
                    "print(sys.prefix, numpy.__file__, matplotlib.matplotlib_fname(), os.path.exists('/etc'))")
    assert probe.returncode == 0, probe.stderr[-3000:]
    prefix, numpy_file, rc_file, has_etc = probe.stdout.split()
    assert prefix == f"{BUNDLE}/python/usr" and numpy_file.startswith(f"{BUNDLE}/site/")
    assert rc_file.startswith(f"{BUNDLE}/site/matplotlib/") and has_etc == "False"

    # Caffe's gtests of the cuDNN layers load there (they run on the GPU: scripts/gpu_check.sh).
    listed = in_root(root, "--gtest_list_tests", program=f"{BUNDLE}/caffe/bin/caffe-gtests")
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    cases = {line.rstrip(".") for line in listed.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"CuDNNConvolutionLayerTest/0", "CuDNNPoolingLayerTest/0", "CuDNNNeuronLayerTest/0",
            "CuDNNSoftmaxLayerTest/0", "EltwiseLayerTest/2", "InnerProductLayerTest/3"} <= cases, cases

    # 1. prepare: the FER2013 image export, as the reproduction script's prepare stage runs it.
    shutil.copytree(host / "fer2013", root / "work/fer2013")
    top = next(p.parent for p in (root / "work/fer2013").rglob("train") if p.is_dir())
    prepared = in_root(root, f"{REPO}/data_prep/prepare.py", "--dataset", "fer2013",
                       "--root", "/" + str(top.relative_to(root)), "--size", "48", "--workers", "2",
                       "--out", "/work/prepared", "--quiet")
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    manifest = json.loads((root / "work/prepared/manifest.json").read_text())
    assert manifest["dataset"] == "fer2013" and manifest["image_size"] == 48
    def items(prepared):  # the same images, labels and splits as the host's prepare
        return [(Path(i["source"]).name, i["label"], i["usage"]) for i in json.loads((prepared / "items.json").read_text())]
    assert items(root / "work/prepared") == items(host / "prepared")

    # 2. report: reproduce.py on the host's finished runs writes the table with statistics and plots.
    # The runs record their data folder's path: inside the root they keep the host's.
    for folder in ("prepared", "runs"):
        shutil.copytree(host / folder, root / str(host / folder)[1:], symlinks=True)
    report = in_root(root, f"{REPO}/tools/reproduce.py", "--table", "3", "--nets", "toy",
                     "--variants", "softmax", "l2", "--scale", "smoke", "--data", f"fer2013={host / 'prepared'}",
                     "--runs-dir", str(host / "runs"), "--out", "/work/table")
    assert report.returncode == 0, report.stderr[-3000:]
    table = json.loads((root / "work/table/table_3.json").read_text())
    assert {cell["column"] for cell in table["cells"]} == {"softmax", "l2"}
    assert all(cell["finished"] for cell in table["cells"])
    assert "McNemar" in (root / "work/table/table_3.md").read_text()

    # 3. predict --onnx: a model exported on the host from one of the runs, on a prepared image.
    run = next(p for p in sorted((host / "runs").iterdir()) if p.is_dir() and "softmax" in p.name)
    model = tmp_path / "model.onnx"
    export = subprocess.run([str(REPO_ROOT / ".venv/bin/python"), str(REPO_ROOT / "tools/export_onnx.py"),
                             "--run", str(run), "--out", str(model)], capture_output=True, text=True, timeout=600)
    assert export.returncode == 0, export.stderr[-3000:]
    shutil.copy2(model, root / "work/model.onnx")
    image = next((root / "work/fer2013").rglob("PrivateTest_*.png"))
    predicted = in_root(root, f"{REPO}/tools/predict.py", "--onnx", "/work/model.onnx",
                        "/" + str(image.relative_to(root)), "--fallback", "frame", "--out", "/work/predictions.jsonl",
                        "--quiet")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    records = [json.loads(line) for line in (root / "work/predictions.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["input"].endswith(image.name), records
    # No face in a synthetic image: the whole frame is classified, through onnxruntime.
    assert records[0]["status"] == "face" and records[0]["landmark_source"] == "frame", records
    assert abs(sum(records[0]["probabilities"].values()) - 1) < 1e-4, records
