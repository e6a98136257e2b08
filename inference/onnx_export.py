"""A Caffe deploy net + caffemodel as an ONNX model: the one module that writes the project's .onnx files.

The graph is built with ``onnx.helper`` and checked with ``onnx.checker``
(full check, with shape inference). The layer mapping is written here because
no maintained Caffe-to-ONNX converter handles the project's nets: the two on
PyPI stop at the Python layers and are unmaintained (docs/inference.md, "ONNX
export"). Mapping, per Caffe layer type (TEST phase):

    Input            graph input ``data`` (N x C x H x W, N free)
    Reshape          Reshape (Caffe's 0 = copy a dim, -1 = infer, like ONNX's)
    Power            Mul / Add / Pow: (shift + scale * x) ^ power
    Concat           Concat
    Convolution      Conv (pad, stride, dilation, group, bias)
    ReLU / PReLU     Relu or LeakyRelu / PRelu (slopes per channel or shared)
    Eltwise          Add (with Mul by coeffs) / Mul / Max
    Pooling          MaxPool / AveragePool with Caffe's ceil-rounded output size
    InnerProduct     Flatten + Gemm
    Dropout          Identity (Caffe scales at training time, not in TEST)
    Softmax          Softmax
    Python           caffe_layers.pruning.MaskedInnerProduct: Flatten + Gemm with the
                     masked weights; caffe_layers.l2_norm.L2Normalize: alpha * x /
                     sqrt(sum(x^2) + eps), alpha fixed or read from the caffemodel;
                     caffe_layers.normface.NormalizedInnerProduct: Flatten + Gemm with
                     each class's weights normalised at export, no bias

Every ONNX tensor is named after the Caffe blob it holds; an in-place layer's
result (Caffe reuses the blob name) is named ``<blob>/<layer>``. The graph's
outputs are the deploy net's output blobs (``prob``). A JSON metadata dict is
stored under metadata_props[METADATA_KEY].
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from caffe_layers import functional
from caffe_layers.params import REQUIRED
from data_prep.prepared import MANIFEST
from experiments.running.run_folder import TrainedModelError, trained_model
from inference.onnx_metadata import METADATA_KEY
from nets.blocks import TEST
from nets.build import phase_net
from runtime.caffe_env import import_caffe
from runtime.files import read_json
from runtime.prototxt import PrototxtError, read_net

OPSET = 17
INPUT = "data"

# Layer types that only make sense with labels or gradients; a deploy net
# (nets.build.deploy_from_test) has none of them.
TRAINING_ONLY_TYPES = {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData",
                       "Accuracy", "Silence", "HDF5Output"}
# The project's training-only Python layers (losses): module -> layer classes.
TRAINING_ONLY_PYTHON = {("caffe_layers.sparseness", "FeatureSparsenessLoss"),
                        ("caffe_layers.center_loss", "CenterLoss")}
L2_NORMALIZE = ("caffe_layers.l2_norm", "L2Normalize")
MASKED_INNER_PRODUCT = ("caffe_layers.pruning", "MaskedInnerProduct")
NORMALIZED_INNER_PRODUCT = ("caffe_layers.normface", "NormalizedInnerProduct")
EXPORTED_PYTHON = (L2_NORMALIZE, MASKED_INNER_PRODUCT, NORMALIZED_INNER_PRODUCT)


class OnnxExportError(ValueError):
    """A deploy net or caffemodel that cannot be exported; the message names the file and layer."""


def read_net_param(deploy_prototxt):
    """The TEST-phase NetParameter of a prototxt file."""
    path = Path(deploy_prototxt)
    if not path.is_file():
        raise OnnxExportError(f"error: deploy net {path} does not exist")
    try:
        net_param = read_net(path)
    except PrototxtError as exc:
        raise OnnxExportError(f"error: {path} is not a Caffe prototxt ({exc.reason})") from exc
    return phase_net(net_param, TEST)


def read_caffemodel(caffemodel):
    """{layer name: [float32 arrays]} of a .caffemodel (arrays flat when the file uses legacy shapes)."""
    caffe_pb2 = import_caffe().proto.caffe_pb2
    path = Path(caffemodel)
    if not path.is_file():
        raise OnnxExportError(f"error: caffemodel {path} does not exist")
    weights = caffe_pb2.NetParameter()
    try:
        weights.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError differs between backends
        raise OnnxExportError(f"error: {path} is not a Caffe model file ({exc})") from exc
    layers = list(weights.layer) or list(weights.layers)  # V1 files keep them in `layers`
    blobs = {}
    for layer in layers:
        if layer.blobs:
            blobs[layer.name] = [_blob_array(blob) for blob in layer.blobs]
    return blobs


def _blob_array(blob):
    data = np.asarray(blob.data, dtype=np.float32)
    if blob.HasField("shape"):
        return data.reshape([int(d) for d in blob.shape.dim])
    return data


def _python_kind(layer):
    return (layer.python_param.module, layer.python_param.layer)


def python_layer_schema(layer):
    """The param_str schema (caffe_layers.params.Param per key) of an exported Python layer:
    its defaults are the layer module's own, never copied here."""
    # Imported on use: the layer modules load pycaffe, which check_layers does not need.
    from caffe_layers import l2_norm, normface, pruning
    schemas = {L2_NORMALIZE: l2_norm.SCHEMA, MASKED_INNER_PRODUCT: pruning.SCHEMA,
               NORMALIZED_INNER_PRODUCT: normface.SCHEMA}
    return schemas[_python_kind(layer)]


def python_layer_params(layer):
    """{key: value} of a Python layer's param_str, the keys it leaves out at their schema defaults."""
    defaults = {key: spec.default for key, spec in python_layer_schema(layer).items()
                if spec.default is not REQUIRED}
    given = json.loads(layer.python_param.param_str or "{}")
    return {**defaults, **given}


def check_layers(net_param, source):
    """Raise OnnxExportError for the first training-only or unsupported layer of ``net_param``."""
    for layer in net_param.layer:
        kind = layer.type
        if kind == "Python":
            kind = f"Python {layer.python_param.module}.{layer.python_param.layer}"
        training = (layer.type in TRAINING_ONLY_TYPES or layer.type.endswith("Loss")
                    or any(weight != 0 for weight in layer.loss_weight)
                    or (layer.type == "Python" and _python_kind(layer) in TRAINING_ONLY_PYTHON))
        if training:
            raise OnnxExportError(
                f"error: {source}: layer {layer.name!r} ({kind}) is a training-only layer; export a "
                "deploy net (the *_deploy.prototxt that nets/ writes beside the train/val net), "
                "which has no data, label or loss layers")
        supported = (layer.type in _CONVERTERS or (layer.type == "Python" and _python_kind(layer)
                                                   in EXPORTED_PYTHON))
        if not supported:
            raise OnnxExportError(
                f"error: {source}: layer {layer.name!r} has type {kind}, which the ONNX export does "
                f"not map; supported: {', '.join(sorted(_CONVERTERS))}, Python "
                + ", ".join(".".join(kind) for kind in EXPORTED_PYTHON))


class _Graph:
    """The ONNX graph under construction: nodes, initializers, and the current tensor of each blob."""

    def __init__(self, shapes):
        self.shapes = shapes          # Caffe blob name -> shape (batch 1), from the instantiated net
        self.nodes = []
        self.initializers = []
        self.current = {}             # Caffe blob name -> the ONNX tensor that holds it now
        self.used_names = set()

    def input(self, blob):
        return self.current[blob]

    def output(self, blob, layer):
        """The ONNX name for ``layer``'s top ``blob``."""
        name = blob if blob not in self.used_names else f"{blob}/{layer}"
        self.used_names.add(name)
        self.current[blob] = name
        return name

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        self.used_names.add(name)
        return name

    def node(self, op, inputs, outputs, name, **attributes):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attributes))


def _params(layer, weights, count, source):
    """The caffemodel's blobs of ``layer``: exactly ``count`` of them, or a clear error."""
    blobs = weights.get(layer.name)
    if blobs is None:
        raise OnnxExportError(f"error: {source}: the caffemodel has no weights for layer "
                              f"{layer.name!r} ({layer.type}); was it trained with this deploy net?")
    if len(blobs) != count:
        raise OnnxExportError(f"error: {source}: layer {layer.name!r} has {len(blobs)} blobs in the "
                              f"caffemodel, the deploy net needs {count}")
    return blobs


def _shaped(array, shape, layer, source):
    if array.size != int(np.prod(shape)):
        raise OnnxExportError(f"error: {source}: layer {layer.name!r} has a weight blob of shape "
                              f"{list(array.shape)} in the caffemodel, the deploy net needs {list(shape)}")
    return array.reshape(shape)


def _spatial(values, single, default):
    """Caffe's repeated (kernel_size / pad / stride) or *_h/*_w fields as [h, w]."""
    if single is not None:
        return list(single)
    if len(values) == 0:
        return [default, default]
    if len(values) == 1:
        return [int(values[0])] * 2
    return [int(v) for v in values[:2]]


def _convert_input(g, layer, weights, source):
    shape = g.shapes[layer.top[0]]
    g.output(layer.top[0], layer.name)
    return helper.make_tensor_value_info(layer.top[0], TensorProto.FLOAT, ["N", *shape[1:]])


def _convert_reshape(g, layer, weights, source):
    param = layer.reshape_param
    if param.axis != 0 or param.num_axes != -1:
        raise OnnxExportError(f"error: {source}: Reshape layer {layer.name!r} uses axis/num_axes, "
                              "which the ONNX export does not map")
    shape = g.constant(f"{layer.name}/shape", np.array(list(param.shape.dim), dtype=np.int64))
    bottom = g.input(layer.bottom[0])
    g.node("Reshape", [bottom, shape], [g.output(layer.top[0], layer.name)], layer.name)


def _convert_power(g, layer, weights, source):
    param = layer.power_param
    tensor = g.input(layer.bottom[0])
    steps = []
    if param.scale != 1:
        steps.append(("Mul", param.scale))
    if param.shift != 0:
        steps.append(("Add", param.shift))
    if param.power != 1:
        steps.append(("Pow", param.power))
    if not steps:
        steps.append(("Identity", None))
    for index, (op, value) in enumerate(steps):
        last = index == len(steps) - 1
        out = g.output(layer.top[0], layer.name) if last else f"{layer.name}/{op.lower()}"
        inputs = [tensor]
        if value is not None:
            inputs.append(g.constant(f"{layer.name}/{op.lower()}_by", np.array(value, dtype=np.float32)))
        g.node(op, inputs, [out], f"{layer.name}/{op.lower()}" if not last else layer.name)
        tensor = out


def _convert_concat(g, layer, weights, source):
    param = layer.concat_param
    axis = param.axis if param.HasField("axis") or not param.HasField("concat_dim") else param.concat_dim
    bottoms = [g.input(b) for b in layer.bottom]
    g.node("Concat", bottoms, [g.output(layer.top[0], layer.name)], layer.name, axis=int(axis))


def _convert_convolution(g, layer, weights, source):
    p = layer.convolution_param
    kernel = _spatial(p.kernel_size, [p.kernel_h, p.kernel_w] if p.kernel_h else None, 1)
    pad = _spatial(p.pad, [p.pad_h, p.pad_w] if p.pad_h or p.pad_w else None, 0)
    stride = _spatial(p.stride, [p.stride_h, p.stride_w] if p.stride_h else None, 1)
    dilation = _spatial(p.dilation, None, 1)
    bottom_shape = g.shapes[layer.bottom[0]]
    if len(bottom_shape) != 4 or p.axis != 1:
        raise OnnxExportError(f"error: {source}: Convolution layer {layer.name!r} is not a 2-D "
                              "convolution over axis 1; the ONNX export maps only those")
    blobs = _params(layer, weights, 2 if p.bias_term else 1, source)
    w_shape = [p.num_output, bottom_shape[1] // p.group, *kernel]
    inputs = [g.input(layer.bottom[0]),
              g.constant(f"{layer.name}/W", _shaped(blobs[0], w_shape, layer, source))]
    if p.bias_term:
        inputs.append(g.constant(f"{layer.name}/b", _shaped(blobs[1], [p.num_output], layer, source)))
    g.node("Conv", inputs, [g.output(layer.top[0], layer.name)], layer.name,
           kernel_shape=kernel, pads=[pad[0], pad[1], pad[0], pad[1]], strides=stride,
           dilations=dilation, group=int(p.group))


def _convert_relu(g, layer, weights, source):
    bottom = g.input(layer.bottom[0])
    slope = layer.relu_param.negative_slope
    out = g.output(layer.top[0], layer.name)
    if slope == 0:
        g.node("Relu", [bottom], [out], layer.name)
    else:
        g.node("LeakyRelu", [bottom], [out], layer.name, alpha=float(slope))


def _convert_prelu(g, layer, weights, source):
    bottom_shape = g.shapes[layer.bottom[0]]
    (slopes,) = _params(layer, weights, 1, source)
    if layer.prelu_param.channel_shared:
        slope = _shaped(slopes, [1], layer, source)
    else:
        # Slopes per channel (axis 1), broadcast over the axes after it.
        slope = _shaped(slopes, [bottom_shape[1]] + [1] * (len(bottom_shape) - 2), layer, source)
    bottom = g.input(layer.bottom[0])
    g.node("PRelu", [bottom, g.constant(f"{layer.name}/slope", slope)],
           [g.output(layer.top[0], layer.name)], layer.name)


def _convert_eltwise(g, layer, weights, source):
    p = layer.eltwise_param
    bottoms = [g.input(b) for b in layer.bottom]
    out_name = layer.top[0]
    if p.operation == p.PROD:
        op = "Mul"
    elif p.operation == p.MAX:
        op = "Max"
    else:
        op = "Add"
        if len(p.coeff) not in (0, len(bottoms)):
            raise OnnxExportError(f"error: {source}: Eltwise layer {layer.name!r} has "
                                  f"{len(p.coeff)} coeffs for {len(bottoms)} bottoms")
        if any(c != 1 for c in p.coeff):
            scaled = []
            for index, (bottom, coeff) in enumerate(zip(bottoms, p.coeff)):
                name = f"{layer.name}/scaled_{index}"
                g.node("Mul", [bottom, g.constant(f"{name}_by", np.array(coeff, dtype=np.float32))],
                       [name], name)
                scaled.append(name)
            bottoms = scaled
    # ONNX's Add and Mul take two inputs; Max takes any number.
    tensor = bottoms[0]
    if op == "Max":
        g.node("Max", bottoms, [g.output(out_name, layer.name)], layer.name)
        return
    for index, bottom in enumerate(bottoms[1:], start=1):
        last = index == len(bottoms) - 1
        out = g.output(out_name, layer.name) if last else f"{layer.name}/partial_{index}"
        g.node(op, [tensor, bottom], [out], layer.name if last else out)
        tensor = out


def caffe_pooled_size(size, kernel, pad, stride):
    """Caffe's pooling output size: ceil-rounded, and the last window must start inside the image
    or its left padding (pooling_layer.cpp)."""
    pooled = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def _convert_pooling(g, layer, weights, source):
    p = layer.pooling_param
    shape = g.shapes[layer.bottom[0]]
    height, width = shape[2], shape[3]
    if p.global_pooling:
        kernel, pad, stride = [height, width], [0, 0], [1, 1]
    else:
        kernel = _spatial([p.kernel_size] if p.HasField("kernel_size") else [],
                          [p.kernel_h, p.kernel_w] if p.kernel_h else None, 1)
        pad = _spatial([p.pad] if p.HasField("pad") else [],
                       [p.pad_h, p.pad_w] if p.pad_h or p.pad_w else None, 0)
        stride = _spatial([p.stride] if p.HasField("stride") else [],
                          [p.stride_h, p.stride_w] if p.stride_h else None, 1)
    pooled = [caffe_pooled_size(s, k, q, t) for s, k, q, t in zip((height, width), kernel, pad, stride)]
    # ONNX rounds down; the end padding that makes ONNX's floor give Caffe's size covers the
    # windows Caffe lets hang over the image's bottom/right edge.
    end_pad = [(n - 1) * t + k - s - q for n, t, k, s, q in zip(pooled, stride, kernel, (height, width), pad)]
    end_pad = [max(e, 0) for e in end_pad]
    bottom = g.input(layer.bottom[0])
    out = g.output(layer.top[0], layer.name)
    pads = [pad[0], pad[1], end_pad[0], end_pad[1]]
    if p.pool == p.MAX:
        # Max pooling ignores ONNX padding, as Caffe clips its windows to the image.
        g.node("MaxPool", [bottom], [out], layer.name, kernel_shape=kernel, pads=pads, strides=stride)
    elif p.pool == p.AVE:
        # Caffe divides by the window clipped to the padded image (not beyond it): equal to
        # ONNX's count_include_pad only when no window overhangs the padded image.
        if any(e > q for e, q in zip(end_pad, pad)):
            raise OnnxExportError(f"error: {source}: AVE Pooling layer {layer.name!r} has windows "
                                  "past the padded image (Caffe's ceil rounding), which ONNX's "
                                  "AveragePool cannot divide as Caffe does")
        g.node("AveragePool", [bottom], [out], layer.name, kernel_shape=kernel, pads=pads,
               strides=stride, count_include_pad=1)
    else:
        raise OnnxExportError(f"error: {source}: Pooling layer {layer.name!r} uses STOCHASTIC "
                              "pooling, which the ONNX export does not map")


def _gemm(g, layer, weights_matrix, bias, axis, transposed, source):
    """Flatten from ``axis`` and multiply: Caffe's InnerProduct, top = x W^T + b."""
    bottom = g.input(layer.bottom[0])
    flat = f"{layer.name}/flat"
    g.node("Flatten", [bottom], [flat], flat, axis=int(axis))
    inputs = [flat, g.constant(f"{layer.name}/W", weights_matrix)]
    if bias is not None:
        inputs.append(g.constant(f"{layer.name}/b", bias))
    g.node("Gemm", inputs, [g.output(layer.top[0], layer.name)], layer.name,
           transB=0 if transposed else 1)


def _convert_inner_product(g, layer, weights, source):
    p = layer.inner_product_param
    shape = g.shapes[layer.bottom[0]]
    if p.axis != 1:
        raise OnnxExportError(f"error: {source}: InnerProduct layer {layer.name!r} uses axis "
                              f"{p.axis}; the ONNX export maps axis 1 only")
    inputs = int(np.prod(shape[1:]))
    blobs = _params(layer, weights, 2 if p.bias_term else 1, source)
    w_shape = [inputs, p.num_output] if p.transpose else [p.num_output, inputs]
    matrix = _shaped(blobs[0], w_shape, layer, source)
    bias = _shaped(blobs[1], [p.num_output], layer, source) if p.bias_term else None
    _gemm(g, layer, matrix, bias, 1, p.transpose, source)


def _convert_masked_inner_product(g, layer, weights, source):
    params = python_layer_params(layer)
    inputs = int(np.prod(g.shapes[layer.bottom[0]][1:]))
    num_output = int(params["num_output"])
    blobs = _params(layer, weights, 2 if params["bias_term"] else 1, source)
    matrix = _shaped(blobs[0], [num_output, inputs], layer, source).copy()
    # The layer masks the loaded weights at its first forward (a trained model's pruned weights
    # are already exact zeros, so this changes nothing there); the same mask is applied here.
    matrix[~functional.magnitude_mask(matrix, params["prune_ratio"])] = 0.0
    bias = _shaped(blobs[1], [num_output], layer, source) if params["bias_term"] else None
    _gemm(g, layer, matrix, bias, 1, False, source)


def _convert_l2_normalize(g, layer, weights, source):
    params = python_layer_params(layer)
    if params["learn_alpha"]:
        (alpha,) = _params(layer, weights, 1, source)
        alpha = float(_shaped(alpha, [1], layer, source)[0])
    else:
        alpha = float(params["alpha"])
    name = layer.name
    bottom = g.input(layer.bottom[0])
    shape = g.shapes[layer.bottom[0]]
    features = bottom
    if len(shape) != 2:  # normalised over everything but N, as the layer flattens
        features = f"{name}/flat"
        g.node("Flatten", [bottom], [features], features, axis=1)
    squared = f"{name}/squared_norm"
    g.node("ReduceSumSquare", [features], [squared], squared, axes=[1], keepdims=1)
    padded = f"{name}/squared_norm_eps"
    g.node("Add", [squared, g.constant(f"{name}/eps", np.array(params["eps"], dtype=np.float32))],
           [padded], padded)
    norm = f"{name}/norm"
    g.node("Sqrt", [padded], [norm], norm)
    inverse = f"{name}/inv_norm"
    g.node("Reciprocal", [norm], [inverse], inverse)
    unit = f"{name}/unit"
    g.node("Mul", [features, inverse], [unit], unit)
    alpha_name = g.constant(f"{name}/alpha", np.array(alpha, dtype=np.float32))
    if len(shape) == 2:
        g.node("Mul", [unit, alpha_name], [g.output(layer.top[0], name)], name)
    else:
        scaled = f"{name}/scaled"
        g.node("Mul", [unit, alpha_name], [scaled], scaled)
        back = g.constant(f"{name}/shape", np.array([0, *shape[1:]], dtype=np.int64))
        g.node("Reshape", [scaled, back], [g.output(layer.top[0], name)], name)


def _convert_normalized_inner_product(g, layer, weights, source):
    params = python_layer_params(layer)
    inputs = int(np.prod(g.shapes[layer.bottom[0]][1:]))
    (matrix,) = _params(layer, weights, 1, source)
    matrix = _shaped(matrix, [int(params["num_output"]), inputs], layer, source)
    unit, _ = functional.normalized_rows(matrix, params["eps"])   # the layer's own normalisation
    _gemm(g, layer, unit, None, 1, False, source)


def _convert_python(g, layer, weights, source):
    kind = _python_kind(layer)
    if kind == L2_NORMALIZE:
        _convert_l2_normalize(g, layer, weights, source)
    elif kind == NORMALIZED_INNER_PRODUCT:
        _convert_normalized_inner_product(g, layer, weights, source)
    else:
        _convert_masked_inner_product(g, layer, weights, source)


def _convert_dropout(g, layer, weights, source):
    bottom = g.input(layer.bottom[0])
    g.node("Identity", [bottom], [g.output(layer.top[0], layer.name)], layer.name)


def _convert_softmax(g, layer, weights, source):
    bottom = g.input(layer.bottom[0])
    g.node("Softmax", [bottom], [g.output(layer.top[0], layer.name)], layer.name,
           axis=int(layer.softmax_param.axis))


_CONVERTERS = {
    "Input": _convert_input, "Reshape": _convert_reshape, "Power": _convert_power,
    "Concat": _convert_concat, "Convolution": _convert_convolution, "ReLU": _convert_relu,
    "PReLU": _convert_prelu, "Eltwise": _convert_eltwise, "Pooling": _convert_pooling,
    "InnerProduct": _convert_inner_product, "Python": _convert_python,
    "Dropout": _convert_dropout, "Softmax": _convert_softmax,
}


def _blob_shapes(deploy_prototxt):
    """Every blob's shape at batch 1, from Caffe's own shape computation of the deploy net."""
    caffe = import_caffe()
    net = caffe.Net(str(deploy_prototxt), caffe.TEST)
    return {name: list(blob.data.shape) for name, blob in net.blobs.items()}, list(net.outputs)


def build_model(net_param, weights, shapes, outputs, source, metadata=None):
    """The checked ONNX ModelProto of ``net_param`` with ``weights`` ({layer: [arrays]})."""
    check_layers(net_param, source)
    g = _Graph(shapes)
    graph_inputs = []
    for layer in net_param.layer:
        value_info = _CONVERTERS[layer.type](g, layer, weights, source)
        if layer.type == "Input":
            graph_inputs.append(value_info)
    if [i.name for i in graph_inputs] != [INPUT]:
        raise OnnxExportError(f"error: {source}: the deploy net must have one Input layer with top "
                              f"{INPUT!r} (nets/ writes it so); it has {[i.name for i in graph_inputs]}")
    graph_outputs = [helper.make_tensor_value_info(g.current[blob], TensorProto.FLOAT,
                                                   ["N", *shapes[blob][1:]]) for blob in outputs]
    graph = helper.make_graph(g.nodes, net_param.name or "caffe_net", graph_inputs, graph_outputs,
                              initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fer-sparse inference.onnx_export")
    if metadata is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(deploy_prototxt, caffemodel, out_path, metadata=None):
    """Write the ONNX model of ``deploy_prototxt`` with the weights of ``caffemodel``; return its path.

    ``metadata`` (a JSON-able dict, e.g. the run config and the prepared
    dataset's manifest) is stored under metadata_props[METADATA_KEY]; read it
    back with read_metadata().
    """
    deploy_prototxt, out_path = Path(deploy_prototxt), Path(out_path)
    net_param = read_net_param(deploy_prototxt)
    check_layers(net_param, deploy_prototxt)  # before the slow part: reading the weights
    if metadata is not None:
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise OnnxExportError(f"error: the metadata for {out_path} is not JSON-able ({exc})") from exc
    weights = read_caffemodel(caffemodel)
    shapes, outputs = _blob_shapes(deploy_prototxt)
    model = build_model(net_param, weights, shapes, outputs,
                        f"{deploy_prototxt} with {Path(caffemodel).name}", metadata)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its final name and renamed into place: a reader never sees half a model.
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def read_metadata(onnx_path):
    """The metadata dict that export_onnx stored in ``onnx_path`` ({} when it stored none)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}


# Manifest keys left out of a model's metadata: bookkeeping of the prepared items (the duplicate
# groups alone are ~300 kB for FER2013), not needed to preprocess a new image.
MANIFEST_KEYS_LEFT_OUT = ("skipped", "fallbacks", "counts", "splits", "duplicates")


def run_export_inputs(run_dir, fold=None):
    """(deploy prototxt, caffemodel, metadata) of a crossval/crossdb run folder's fold.

    The metadata holds the run's config, the fold, the class names and the
    prepared dataset's manifest (less MANIFEST_KEYS_LEFT_OUT), so that a
    predictor can preprocess exactly as data_prep did.
    """
    try:
        found = trained_model(run_dir, fold)
    except TrainedModelError as exc:
        raise OnnxExportError(str(exc)) from None
    run_dir, fold_dir, config, deploy, weights = (found.run_dir, found.fold_dir, found.config,
                                                  found.deploy, found.weights)
    manifest_path = Path(config["data"]) / MANIFEST
    if not manifest_path.is_file():
        raise OnnxExportError(f"error: {manifest_path} (the run's prepared dataset, config.json's "
                              "\"data\") is missing; the model's preprocessing cannot be recorded. "
                              "Put the prepared dataset back there or export the deploy net and its caffemodel alone")
    manifest = read_json(manifest_path)
    metadata = {
        "class_names": list(manifest["classes"]),
        "run": {"folder": run_dir.name, "fold": fold_dir.name, "config": config,
                "weights": weights.name},
        "manifest": {k: v for k, v in manifest.items() if k not in MANIFEST_KEYS_LEFT_OUT},
    }
    return deploy, weights, metadata


def export_run(run_dir, out_path, fold=None):
    """Export a run folder's trained fold (see run_export_inputs); return the ONNX path."""
    deploy, weights, metadata = run_export_inputs(run_dir, fold)
    return export_onnx(deploy, weights, out_path, metadata)
