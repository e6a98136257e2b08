"""pytest plugin for scripts/gpu_check.sh: the project's tests with pycaffe on the GPU.

tests/conftest.py's session fixture ``caffe`` puts pycaffe in CPU mode; this
plugin's autouse session fixture takes that fixture and switches to GPU 0, so
every net those tests build runs its C++ layers on the GPU (Python layers
always run on the CPU, on data Caffe copies back and forth).
"""
import pytest


@pytest.fixture(scope="session", autouse=True)
def caffe_gpu_mode(caffe):
    caffe.set_device(0)
    caffe.set_mode_gpu()
    return caffe
