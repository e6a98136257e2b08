"""Class probabilities from an exported ONNX model with onnxruntime: no Caffe needed.

Imports only numpy, onnxruntime, the standard library and inference.onnx_metadata, so that a machine
with ``pip install -r requirements-onnx.txt`` and no Caffe runs it. The model
is one written by inference.onnx_export: input ``data`` (N x 1 x S x S raw
gray, 0-255, the Caffe deploy net's input), output ``prob`` (N x K softmax).
"""
import json
from pathlib import Path

import numpy as np
import onnxruntime

from inference.onnx_metadata import METADATA_KEY


class OnnxModelError(ValueError):
    """An ONNX file that is missing, unreadable, or not shaped like an exported classifier."""


class OnnxClassifier:
    """An exported classifier: ``probabilities(batch)`` for N x 1 x S x S gray batches.

    Attributes: ``input_size`` (S), ``num_classes`` (K), ``metadata`` (the dict
    stored at export, {} if none), ``class_names`` (the class names recorded in
    the metadata, or None when the export recorded none).
    """

    def __init__(self, path, threads=None):
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"error: ONNX model {self.path} does not exist; write one with "
                                 "`python tools/export_onnx.py`")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own, version-dependent exception types
            raise OnnxModelError(f"error: {self.path} is not a loadable ONNX model ({exc})") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise OnnxModelError(f"error: {self.path} has {len(inputs)} inputs and {len(outputs)} "
                                 "outputs; an exported classifier has one of each (data -> prob)")
        self._input, self._output = inputs[0].name, outputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 1 or shape[2] != shape[3] or not isinstance(shape[2], int):
            raise OnnxModelError(f"error: {self.path} takes input of shape {shape}; an exported "
                                 "classifier takes N x 1 x S x S gray images")
        self.input_size = int(shape[2])
        classes = outputs[0].shape[-1]
        self.num_classes = int(classes) if isinstance(classes, int) else None
        self.metadata = self._read_metadata()
        self.class_names = self._class_names()

    def _read_metadata(self):
        stored = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if stored is None:
            return {}
        try:
            return json.loads(stored)
        except ValueError as exc:
            raise OnnxModelError(f"error: {self.path}: metadata {METADATA_KEY!r} is not JSON ({exc})") from exc

    def _class_names(self):
        names = self.metadata.get("class_names")
        if names is None:
            names = self.metadata.get("manifest", {}).get("classes")
        if names is None:
            return None
        names = list(names)
        if self.num_classes is not None and len(names) != self.num_classes:
            raise OnnxModelError(f"error: {self.path}: its metadata names {len(names)} classes, "
                                 f"the model outputs {self.num_classes}")
        return names

    def probabilities(self, batch):
        """(N, K) float64 softmax of a float32/uint8 (N, 1, S, S) batch of raw gray values (0-255)."""
        batch = np.asarray(batch)
        expected = (1, self.input_size, self.input_size)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"{self.path}: batch has shape {batch.shape}, the model takes "
                             f"(N, {', '.join(map(str, expected))})")
        if batch.dtype not in (np.float32, np.uint8):
            raise ValueError(f"{self.path}: batch has dtype {batch.dtype}; pass float32 or uint8 "
                             "raw gray values (0-255)")
        feed = np.ascontiguousarray(batch, dtype=np.float32)
        (prob,) = self.session.run([self._output], {self._input: feed})
        return prob.astype(np.float64)
