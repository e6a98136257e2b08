"""Caffe's own Google Test cases, compiled against an installed Caffe from the source and patches it
was built from.

Caffe's CMake builds every test into one test.testbin with the library; the project builds Caffe
without its tests (they double the build) and compiles only the test files of the layers its
patches change and its nets use, against the installed libcaffe. Two users:

- tests/caffe_build/test_gtests.py: the CPU build, CPU_TEST_SOURCES;
- scripts/gpu/build_bundle.sh: the CUDA build, CUDA_TEST_SOURCES, into the bundle as
  caffe/bin/caffe-gtests, which scripts/gpu_check.sh runs on the GPU with CUDA_GTEST_FILTER.

Only the standard library is imported: build_bundle.sh runs this with Debian's python3.
"""
import re
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PATCHES = Path(__file__).resolve().parent / "patches"
GTEST_MAIN = ("src/gtest/gtest-all.cpp", "src/caffe/test/test_caffe_main.cpp")
CPU_TEST_SOURCES = ("src/caffe/test/test_convolution_layer.cpp", "src/caffe/test/test_neuron_layer.cpp",
                    "src/caffe/test/test_eltwise_layer.cpp", "src/caffe/test/test_split_layer.cpp")
# The cuDNN layers (convolution, deconvolution, pooling, ReLU/PReLU and the other neurons, softmax,
# LRN) and the CUDA layers of the face ResNet (Eltwise, Split, InnerProduct on cuBLAS, Power,
# Concat, SoftmaxWithLoss), on the GPU.
CUDA_TEST_SOURCES = tuple(f"src/caffe/test/test_{name}.cpp" for name in (
    "convolution_layer", "deconvolution_layer", "pooling_layer", "neuron_layer", "softmax_layer",
    "lrn_layer", "eltwise_layer", "split_layer", "inner_product_layer", "power_layer", "concat_layer",
    "softmax_with_loss_layer"))
# The GPU instances only: the cuDNN cases (CuDNN*), the GPU-only ones (GPU*), and /2, /3 of the
# cases typed over TestDtypesAndDevices (CPU float, CPU double, GPU float, GPU double).
CUDA_GTEST_FILTER = "CuDNN*:GPU*:*/2.*:*/3.*"
# Libraries the test files call directly besides libcaffe's (CUDA builds add the runtime).
LINK_LIBRARIES = ("-lcaffe", "-lglog", "-lgflags", "-lprotobuf", "-lboost_system", "-lboost_thread",
                  "-lpthread")


class GtestBuildError(RuntimeError):
    """The tests could not be compiled or linked; the message holds the compiler's last lines."""


def patched_source(tarball_or_dir, root, cuda):
    """Caffe's source in ``root`` with the project's patches applied as CMakeLists.txt applies them:
    caffe_build/patches/*.patch in name order, then patches/cuda/*.patch for a CUDA build."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        # Patching a tree twice reverses what applies again (patch --batch assumes -R).
        raise GtestBuildError(f"{root} is not empty: patched_source needs a fresh folder")
    root.mkdir(parents=True, exist_ok=True)
    source = Path(tarball_or_dir)
    if source.is_dir():
        subprocess.run(["cp", "-a", f"{source}/.", str(root)], check=True)
    else:
        # The pinned release tarball (scripts/fetch_caffe_source.sh checks its hash) holds the
        # source tree at its top.
        with tarfile.open(source) as tar:
            tar.extractall(root)
    patches = sorted(PATCHES.glob("*.patch")) + (sorted((PATCHES / "cuda").glob("*.patch")) if cuda else [])
    for patch in patches:
        subprocess.run(["patch", "-p1", "-s", "--batch", "-i", str(patch)], cwd=root, check=True)
    return root


def _exported(prefix, key):
    text = (Path(prefix) / "share" / "Caffe" / "CaffeTargets.cmake").read_text()
    found = re.search(rf'{key} "([^"]*)"', text)
    return found.group(1).replace("${_IMPORT_PREFIX}", str(prefix)).split(";") if found else []


def compile_definitions(prefix):
    """The definitions libcaffe was built with (CPU_ONLY, USE_CUDNN, USE_OPENCV, ...), as
    CaffeTargets.cmake exports them."""
    return [f"-D{d}" for d in _exported(prefix, "INTERFACE_COMPILE_DEFINITIONS") if d]


def include_dirs(prefix):
    """The include folders libcaffe's users need (the BLAS's cblas.h, CUDA's and cuDNN's headers),
    as CaffeTargets.cmake exports them."""
    return [f"-I{d}" for d in dict.fromkeys(_exported(prefix, "INTERFACE_INCLUDE_DIRECTORIES"))
            if d and d != "/usr/include"]


def _library_dirs(prefix):
    """The library folders beside the exported include folders (CUDA's lib64, the folder of the
    cuBLAS/cuDNN libraries a CUDA build was linked against): the linker resolves libcaffe's own
    dependencies there (-rpath-link) and the CUDA runtime the test main calls (-L)."""
    dirs = []
    for flag in include_dirs(prefix):
        include = Path(flag[2:])
        for lib in (include.parent / "lib64", include.parent / "lib"):
            if lib.is_dir() and any(lib.glob("lib*.so*")) and lib != Path(prefix, "lib"):
                dirs += [f"-L{lib}", f"-Wl,-rpath-link,{lib}"]
    return dirs


def is_cuda_build(prefix):
    return "-DCPU_ONLY" not in compile_definitions(prefix)


def compile_gtests(prefix, source_root, sources, binary, jobs=2, optimise="-O1"):
    """Compiles gtest, Caffe's test main and ``sources`` (paths inside ``source_root``) against the
    Caffe installed in ``prefix`` into ``binary`` (written whole or not at all)."""
    prefix, source_root, binary = Path(prefix), Path(source_root), Path(binary)
    objects_dir = binary.parent / f".{binary.name}.objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    flags = [optimise, "-fopenmp", *compile_definitions(prefix), f"-I{prefix / 'include'}",
             *include_dirs(prefix), f"-I{source_root / 'include'}", f"-I{source_root / 'src'}"]

    def compile_one(source):
        target = objects_dir / (Path(source).stem + ".o")
        done = subprocess.run(["g++", *flags, "-c", str(source_root / source), "-o", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise GtestBuildError(f"g++ failed on {source}:\n{done.stderr[-3000:]}")
        return target

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        objects = list(pool.map(compile_one, (*GTEST_MAIN, *sources)))
    cuda = ["-lcudart"] if is_cuda_build(prefix) else []
    partial = binary.with_name(binary.name + ".partial")
    linked = subprocess.run(["g++", "-fopenmp", *map(str, objects), "-o", str(partial),
                             f"-L{prefix / 'lib'}", "-Wl,-rpath,$ORIGIN/../lib", f"-Wl,-rpath,{prefix / 'lib'}",
                             *_library_dirs(prefix), *LINK_LIBRARIES, *cuda],
                            capture_output=True, text=True)
    if linked.returncode != 0:
        raise GtestBuildError(f"linking {binary.name} failed:\n{linked.stderr[-3000:]}")
    partial.replace(binary)
    for obj in objects:
        obj.unlink()
    objects_dir.rmdir()
    return binary


def passed_count(output):
    """The number gtest's summary line gives as passed, or None without a summary."""
    found = re.search(r"\[  PASSED  \] (\d+) tests?", output)
    return int(found.group(1)) if found else None
