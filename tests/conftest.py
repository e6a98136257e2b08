"""Shared fixtures: pycaffe in CPU mode, seeded RNGs, the caffe tool."""
import numpy as np
import pytest

from runtime.caffe_env import caffe_binary, import_caffe


@pytest.fixture(scope="session")
def caffe():
    module = import_caffe()
    module.set_mode_cpu()
    return module


@pytest.fixture(scope="session")
def caffe_bin():
    return caffe_binary()


@pytest.fixture
def rng():
    return np.random.default_rng(20190101)
