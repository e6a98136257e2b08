"""The trunks (the paper's MI: everything before FC1) and their shapes.

A trunk turns the 1-channel gray input (raw 0-255 values) into z, the
input of FC1, and lists the hidden layers whose outputs the hidden-unit
sparseness variants penalise. Input normalisation and the gray -> 3-channel
replication live inside the net, so train, test and deploy nets share them.
"""
import math
from dataclasses import dataclass

from nets import blocks

# The center-loss face ResNet: (stage, channels of its transition conv,
# residual units after its pooling). conv1a/conv1b precede stage 2.
RESNET_STAGES = ((2, 64, 1), (3, 128, 2), (4, 256, 5), (5, 512, 3))
# The public model's input is 112x96 (height x width), so its fc5 was trained
# on a 5x4 map (512 x 10240 weights).
RESNET_PUBLIC_INPUT = (112, 96)
RESNET_PUBLIC_FC5_MAP = (5, 4)
# Input geometries of the face ResNet (docs/nets.md): "square" runs the whole
# square LMDB image (112x112: the paper's hidden-unit count, fc5 renamed and
# re-initialised); "public" cuts the middle 96 columns of a 112x112 image
# inside the net, the public model's 112x96, so fc5 keeps its name and loads.
GEOMETRIES = ("square", "public")
# VGG-16: (block, channels, convolutions).
VGG_BLOCKS = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))
VGG_PUBLIC_FC6_MAP = (7, 7)  # 224x224 input
# The small CPU net (not in the paper): (block, channels) of its 3x3 conv + pool blocks.
CNN48_BLOCKS = ((1, 32), (2, 64), (3, 128))
# VGG-Face's per-channel means (B, G, R) of its 0-255 input.
VGG_FACE_MEAN_BGR = (93.5940, 104.7624, 129.1863)
# The face ResNet's input normalisation: (x - 127.5) / 128.
FACE_RESNET_SCALE = 1 / 128
FACE_RESNET_MEAN = 127.5


@dataclass(frozen=True)
class Trunk:
    z: object            # the NetSpec top of z
    z_blob: str
    z_shape: tuple       # z's shape without the batch axis
    hidden: tuple        # (blob name, top) of every hidden layer up to and including z
    fc1_layer: str       # FC1 (weights V); its output is x
    fc1_outputs: int
    fc1_relu: str        # name of the ReLU after FC1, or None
    classifier_base: str  # the classifier is named "<base>_<K>cls"
    conv_layer: str = None  # the toy net's convolution (for Eq. 13)


def _conv_out(size, kernel, stride=1, pad=0):
    return (size + 2 * pad - kernel) // stride + 1


def _pool_out(size):
    # Caffe rounds pooling output sizes up.
    return math.ceil((size - 2) / 2) + 1


def _check_size(net, input_size, side, minimum):
    if side < minimum:
        raise ValueError(f"input_size {input_size} is too small for the {net} net "
                         f"(its last feature map would be {side}x{side})")


def resnet_map_size(input_size):
    """Side of the face ResNet's last map (res5_6) for an input side (height or width)."""
    side = _conv_out(_conv_out(input_size, 3), 3)      # conv1a, conv1b
    side = _pool_out(side)                               # pool1b
    for _ in ("conv2", "conv3", "conv4"):
        side = _pool_out(_conv_out(side, 3))
    return side


def vgg_map_size(input_size):
    side = input_size
    for _ in VGG_BLOCKS:
        side = _pool_out(side)
    return side


def toy_map_size(input_size):
    return _conv_out(input_size, 9, stride=2)


def renamed_if_mismatched(name, map_shape, public_map):
    """Keep a pretrained FC layer's name only where its weights fit; Caffe
    copies weights by layer name and aborts on a shape mismatch."""
    height, width = map_shape
    return name if (height, width) == tuple(public_map) else f"{name}_{height}x{width}"


def check_geometry(net, geometry, input_size):
    """Raise ValueError unless ``geometry`` is one ``net`` has at ``input_size``."""
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; choose one of {', '.join(GEOMETRIES)}")
    if geometry == "public":
        if net != "resnet":
            raise ValueError(f"geometry 'public' is the face ResNet's 112x96; the {net} net has "
                             "only 'square' (VGG-Face's own input is already the square 224x224)")
        if input_size != RESNET_PUBLIC_INPUT[0]:
            raise ValueError(f"geometry 'public' cuts 112x96 out of 112x112 images; input_size "
                             f"must be 112, got {input_size} (prepare the data with --size 112)")


def _public_resnet_crop(n, data):
    """The middle 96 columns of the 112x112 input: the public model's 112x96."""
    L, _ = blocks.caffe_layers()
    height, width = RESNET_PUBLIC_INPUT
    left = (height - width) // 2
    n["data_left"], n[f"data_{height}x{width}"], n["data_right"] = L.Slice(
        data, ntop=3, name=f"crop_{height}x{width}",
        slice_param={"axis": 3, "slice_point": [left, left + width]})
    # Unconsumed tops would become net outputs (printed every display, returned by
    # pycaffe's forward): the Silence layer consumes the two side strips.
    n["data_sides_unused"] = L.Silence(n["data_left"], n["data_right"], ntop=0)
    return n[f"data_{height}x{width}"]


def toy_trunk(n, data, input_size, geometry="square"):
    side = toy_map_size(input_size)
    _check_size("toy", input_size, side, 1)
    x = blocks.affine(n, "data_scaled", data, scale=FACE_RESNET_SCALE,
                      shift=-FACE_RESNET_MEAN * FACE_RESNET_SCALE)
    x = blocks.conv(n, "conv1", x, 1, 9, stride=2)
    z = blocks.relu(n, "relu_conv1", x)
    return Trunk(z=z, z_blob="conv1", z_shape=(1, side, side), hidden=(("conv1", z),),
                 fc1_layer="fc1", fc1_outputs=32, fc1_relu="relu_fc1", classifier_base="fc2",
                 conv_layer="conv1")


def resnet_trunk(n, data, input_size, geometry="square"):
    side = resnet_map_size(input_size)
    _check_size("resnet", input_size, side, 1)
    map_shape = (side, side)
    L, _ = blocks.caffe_layers()
    if geometry == "public":
        data = _public_resnet_crop(n, data)
        map_shape = tuple(resnet_map_size(length) for length in RESNET_PUBLIC_INPUT)
    x = blocks.affine(n, "data_scaled", data, scale=FACE_RESNET_SCALE,
                      shift=-FACE_RESNET_MEAN * FACE_RESNET_SCALE)
    n["data_3ch"] = L.Concat(x, x, x)  # gray replicated into the three colour channels
    x = blocks.prelu(n, "relu1a", blocks.conv(n, "conv1a", n["data_3ch"], 32, 3))
    x = blocks.prelu(n, "relu1b", blocks.conv(n, "conv1b", x, 64, 3))
    x = blocks.max_pool(n, "pool1b", x)
    hidden = []
    for stage, channels, units in RESNET_STAGES:
        if stage > 2:
            x = blocks.conv(n, f"conv{stage - 1}", x, channels, 3)
            x = blocks.prelu(n, f"relu{stage - 1}", x)
            x = blocks.max_pool(n, f"pool{stage - 1}", x)
        for unit in range(1, units + 1):
            x = blocks.residual_unit(n, stage, unit, x, channels)
            hidden.append((f"res{stage}_{2 * unit}", x))
    return Trunk(z=x, z_blob="res5_6", z_shape=(512, *map_shape), hidden=tuple(hidden),
                 fc1_layer=renamed_if_mismatched("fc5", map_shape, RESNET_PUBLIC_FC5_MAP),
                 fc1_outputs=512, fc1_relu=None, classifier_base="fc6")


def vgg_trunk(n, data, input_size, geometry="square"):
    side = vgg_map_size(input_size)
    _check_size("vgg", input_size, side, 1)
    L, _ = blocks.caffe_layers()
    channels = [blocks.affine(n, f"data_{c}", data, shift=-mean)
                for c, mean in zip("bgr", VGG_FACE_MEAN_BGR)]
    n["data_3ch"] = L.Concat(*channels)  # gray as B, G, R, each minus VGG-Face's mean
    x = n["data_3ch"]
    hidden = []
    for block, width, convs in VGG_BLOCKS:
        for index in range(1, convs + 1):
            name = f"conv{block}_{index}"
            x = blocks.relu(n, f"relu{block}_{index}", blocks.conv(n, name, x, width, 3, pad=1))
            hidden.append((name, x))
        x = blocks.max_pool(n, f"pool{block}", x)
    fc6 = renamed_if_mismatched("fc6", (side, side), VGG_PUBLIC_FC6_MAP)
    z = blocks.relu(n, "relu6", blocks.inner_product(n, fc6, x, 4096))
    hidden.append((fc6, z))
    return Trunk(z=z, z_blob=fc6, z_shape=(4096,), hidden=tuple(hidden),
                 fc1_layer="fc7", fc1_outputs=4096, fc1_relu="relu7", classifier_base="fc8")


def cnn48_map_size(input_size):
    side = input_size
    for _ in CNN48_BLOCKS:
        side = _pool_out(side)
    return side


def cnn48_trunk(n, data, input_size, geometry="square"):
    """A small CNN trained from scratch on 48x48 gray faces: what a 2-core CPU can train on
    FER2013 in minutes (the paper's nets need a GPU and a pretrained face model)."""
    side = cnn48_map_size(input_size)
    _check_size("cnn48", input_size, side, 1)
    x = blocks.affine(n, "data_scaled", data, scale=FACE_RESNET_SCALE,
                      shift=-FACE_RESNET_MEAN * FACE_RESNET_SCALE)
    hidden = []
    for block, width in CNN48_BLOCKS:
        name = f"conv{block}"
        x = blocks.relu(n, f"relu{block}", blocks.conv(n, name, x, width, 3, pad=1))
        hidden.append((name, x))
        x = blocks.max_pool(n, f"pool{block}", x)
    last = f"pool{CNN48_BLOCKS[-1][0]}"
    hidden.append((last, x))
    return Trunk(z=x, z_blob=last, z_shape=(CNN48_BLOCKS[-1][1], side, side), hidden=tuple(hidden),
                 fc1_layer="fc4", fc1_outputs=256, fc1_relu="relu_fc4", classifier_base="fc5")


TRUNKS = {"toy": toy_trunk, "resnet": resnet_trunk, "vgg": vgg_trunk, "cnn48": cnn48_trunk}
