"""Class probabilities from a Caffe deploy net and caffemodel with pycaffe.

The same small interface as inference.onnx_runtime.OnnxClassifier:
``input_size``, ``num_classes`` and ``probabilities(batch)`` for N x 1 x S x S
batches of raw gray values (0-255; the net normalises them itself). The
probabilities are the float64 softmax of the net's logits blob (the input of
its ``prob`` layer), computed as experiments.running.evaluation computes them, so that
a prediction and the cross-validation's scores of the same crops agree.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments.running.evaluation import softmax
from runtime.caffe_env import import_caffe
from runtime.prototxt import PrototxtError, read_net


class DeployNetError(ValueError):
    """A deploy net or caffemodel that cannot be used; the message names the file."""


def deploy_input_size(deploy):
    """Side S of the N x 1 x S x S ``data`` input of a deploy prototxt (read without building the net)."""
    deploy = Path(deploy)
    if not deploy.is_file():
        raise DeployNetError(f"error: deploy net {deploy} does not exist")
    try:
        net_param = read_net(deploy)
    except PrototxtError as exc:
        raise DeployNetError(f"error: {deploy} is not a Caffe prototxt ({exc.reason})") from None
    for layer in net_param.layer:
        if layer.type == "Input" and "data" in layer.top:
            dims = list(layer.input_param.shape[0].dim) if layer.input_param.shape else []
            if len(dims) != 4 or dims[1] != 1 or dims[2] != dims[3]:
                raise DeployNetError(f"error: {deploy}'s data input has shape {dims}; a deploy net of this "
                                     "project takes N x 1 x S x S gray images")
            return int(dims[2])
    raise DeployNetError(f"error: {deploy} has no Input layer with top \"data\"; pass a deploy net "
                         "(<net>_<variant>_deploy.prototxt), not a train/val net")


def _logits_blob(net_param, deploy):
    for layer in net_param.layer:
        if layer.type == "Softmax" and "prob" in layer.top:
            return layer.bottom[0]
    raise DeployNetError(f"error: {deploy} has no Softmax layer with top \"prob\"; pass a deploy net "
                         "written by nets/ (nets.build.deploy_from_test)")


def gpu_problem(gpu):
    """None if pycaffe can run on GPU ``gpu``, else what goes wrong (probed in a child process:
    a CPU-only Caffe or a missing device aborts the process that asks)."""
    code = f"import caffe; caffe.set_device({int(gpu)}); caffe.set_mode_gpu(); caffe.Net"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "GLOG_minloglevel": "0"})
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("***")]
    return lines[-1].split("] ", 1)[-1] if lines else f"exit status {done.returncode}"


class CaffeClassifier:
    """A deploy net with trained weights; ``gpu``: device id, None for the CPU."""

    def __init__(self, deploy, weights, gpu=None):
        caffe = import_caffe()
        self.deploy, self.weights = Path(deploy), Path(weights)
        self.input_size = deploy_input_size(self.deploy)
        if not self.weights.is_file():
            raise DeployNetError(f"error: caffemodel {self.weights} does not exist")
        net_param = read_net(self.deploy)
        self._logits = _logits_blob(net_param, self.deploy)
        if gpu is None:
            caffe.set_mode_cpu()
        else:
            problem = gpu_problem(gpu)
            if problem is not None:
                raise DeployNetError(f"error: Caffe cannot use GPU {gpu} ({problem}); run on the CPU "
                                     "(leave out --gpu) or use a Caffe built with CUDA")
            caffe.set_device(int(gpu))
            caffe.set_mode_gpu()
        try:
            self.net = caffe.Net(str(self.deploy), caffe.TEST, weights=str(self.weights))
        except Exception as exc:  # pycaffe raises RuntimeError, or glog aborts for a layer mismatch
            raise DeployNetError(f"error: Caffe cannot load {self.weights} into {self.deploy} ({exc}); the "
                                 "caffemodel must come from training this net") from exc
        self.num_classes = int(self.net.blobs[self._logits].data.reshape(self.net.blobs["data"].num, -1).shape[1])

    def probabilities(self, batch):
        """(N, K) float64 softmax of an (N, 1, S, S) batch of raw gray values (0-255)."""
        batch = np.asarray(batch)
        expected = (1, self.input_size, self.input_size)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"{self.deploy}: batch has shape {batch.shape}, the net takes "
                             f"(N, {', '.join(map(str, expected))})")
        data = self.net.blobs["data"]
        if data.data.shape[0] != len(batch):
            data.reshape(len(batch), *expected)
            self.net.reshape()
        data.data[...] = batch
        self.net.forward()
        logits = self.net.blobs[self._logits].data.reshape(len(batch), -1).astype(np.float64)
        return softmax(logits)
