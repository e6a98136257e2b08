"""NetSpec block builders shared by the nets of nets.catalog.NETS.

Each builder adds layers to a ``caffe.NetSpec`` under explicit names (layer
name = top name, as Caffe's model zoo writes them) and returns the top it made,
so the architecture code reads like the nets it reproduces.
"""
import json

from runtime.caffe_env import import_caffe

TRAIN, TEST = 0, 1  # caffe_pb2.Phase

# The public models' convention: weights learn at the base rate with weight
# decay, biases at twice the rate without decay.
WEIGHT_BIAS = ({"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 2, "decay_mult": 0})
# The center-loss face ResNet's residual convolutions keep their zero biases.
WEIGHT_FROZEN_BIAS = ({"lr_mult": 1, "decay_mult": 1}, {"lr_mult": 0, "decay_mult": 0})
XAVIER = {"type": "xavier"}
ZERO = {"type": "constant", "value": 0}


def caffe_layers():
    """(caffe.layers, caffe.params): the NetSpec pseudo-modules."""
    caffe = import_caffe()
    return caffe.layers, caffe.params


def weight_bias(weight_decay_mult=1):
    """Param specs of a weight + bias layer, with the weight's decay multiplier."""
    weight, bias = WEIGHT_BIAS
    return [dict(weight, decay_mult=weight_decay_mult), dict(bias)]


def data_layer(source, batch_size, phase):
    """LMDB Data layer with tops (data, label); mirrored in TRAIN only.

    No crop_size: data_prep/ already cuts the paper's crop regions, and a
    larger LMDB must not be cropped silently (see ``input_size_check``).
    """
    L, P = caffe_layers()
    return L.Data(ntop=2, include={"phase": phase},
                  transform_param={"mirror": phase == TRAIN},
                  data_param={"source": str(source), "backend": P.Data.LMDB,
                              "batch_size": batch_size})


def input_size_check(n, bottom, side):
    """A Reshape to (N, 1, side, side): Caffe stops at net setup, in the layer
    named ``input_is_1x<side>x<side>``, when the LMDB's images have another
    size (otherwise every layer would silently size itself to the LMDB)."""
    L, _ = caffe_layers()
    name = f"input_is_1x{side}x{side}"
    n[name] = L.Reshape(bottom, shape={"dim": [0, 1, side, side]})
    return n[name]


def affine(n, name, bottom, scale=1.0, shift=0.0):
    """y = scale * x + shift (a Power layer, no parameters)."""
    L, _ = caffe_layers()
    options = {}
    if scale != 1.0:
        options["scale"] = scale
    if shift != 0.0:
        options["shift"] = shift
    n[name] = L.Power(bottom, **options)
    return n[name]


def conv(n, name, bottom, num_output, kernel_size, stride=1, pad=0, weight_filler=XAVIER,
         param=WEIGHT_BIAS):
    L, _ = caffe_layers()
    options = {"num_output": num_output, "kernel_size": kernel_size}
    if stride != 1:
        options["stride"] = stride
    if pad:
        options["pad"] = pad
    n[name] = L.Convolution(bottom, param=[dict(p) for p in param],
                            weight_filler=dict(weight_filler), bias_filler=dict(ZERO), **options)
    return n[name]


def relu(n, name, bottom):
    L, _ = caffe_layers()
    n[name] = L.ReLU(bottom, in_place=True)
    return n[name]


def prelu(n, name, bottom):
    L, _ = caffe_layers()
    n[name] = L.PReLU(bottom, in_place=True)
    return n[name]


def max_pool(n, name, bottom):
    L, P = caffe_layers()
    n[name] = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    return n[name]


def inner_product(n, name, bottom, num_output, weight_decay_mult=1):
    L, _ = caffe_layers()
    n[name] = L.InnerProduct(bottom, num_output=num_output, param=weight_bias(weight_decay_mult),
                             weight_filler=dict(XAVIER), bias_filler=dict(ZERO))
    return n[name]


def python_layer(module, layer, name, bottoms, param_str, **options):
    """A caffe_layers Python layer named ``name``; param_str is a dict written as
    sorted JSON, with the layer name added (Caffe does not tell Python layers
    their name, and their error messages quote it)."""
    L, _ = caffe_layers()
    return L.Python(*bottoms, name=name, python_param={
        "module": f"caffe_layers.{module}", "layer": layer,
        "param_str": json.dumps(dict(param_str, name=name), sort_keys=True)}, **options)


def masked_inner_product(n, name, bottom, num_output, prune_ratio, penalty, penalty_weight):
    """The connection-pruning (c.p.) replacement of an InnerProduct: same blobs."""
    n[name] = python_layer("pruning", "MaskedInnerProduct", name, [bottom], {
        "num_output": num_output, "prune_ratio": prune_ratio, "penalty": penalty,
        "penalty_weight": penalty_weight}, param=weight_bias())
    return n[name]


def normalized_inner_product(n, name, bottom, num_output):
    """NormFace's classifier: every class's weights normalised, no bias (caffe_layers/normface.py)."""
    n[name] = python_layer("normface", "NormalizedInnerProduct", name, [bottom],
                           {"num_output": num_output}, param=[{"lr_mult": 1, "decay_mult": 1}])
    return n[name]


def residual_unit(n, stage, unit, bottom, channels):
    """Two 3x3 convolutions + PReLU and a sum with the input (face ResNet naming).

    Unit u of stage s holds conv{s}_{2u-1}, conv{s}_{2u} and res{s}_{2u}.
    """
    L, P = caffe_layers()
    top = bottom
    for index in (2 * unit - 1, 2 * unit):
        top = conv(n, f"conv{stage}_{index}", top, channels, 3, pad=1,
                   weight_filler={"type": "gaussian", "std": 0.01}, param=WEIGHT_FROZEN_BIAS)
        top = prelu(n, f"relu{stage}_{index}", top)
    name = f"res{stage}_{2 * unit}"
    n[name] = L.Eltwise(bottom, top, operation=P.Eltwise.SUM)
    return n[name]
