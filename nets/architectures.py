"""The three trunks (the paper's MI: everything before FC1) and their shapes.

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
# The public model's input is 112x96, so its fc5 was trained on a 5x4 map.
RESNET_PUBLIC_FC5_MAP = (5, 4)
# VGG-16: (block, channels, convolutions).
VGG_BLOCKS = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))
VGG_PUBLIC_FC6_MAP = (7, 7)  # 224x224 input
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
    """Side of the face ResNet's last map (res5_6) for a square input."""
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


def renamed_if_mismatched(name, side, public_map):
    """Keep a pretrained FC layer's name only where its weights fit; Caffe
    copies weights by layer name and aborts on a shape mismatch."""
    return name if (side, side) == public_map else f"{name}_{side}x{side}"


def toy_trunk(n, data, input_size):
    side = toy_map_size(input_size)
    _check_size("toy", input_size, side, 1)
    x = blocks.affine(n, "data_scaled", data, scale=FACE_RESNET_SCALE,
                      shift=-FACE_RESNET_MEAN * FACE_RESNET_SCALE)
    x = blocks.conv(n, "conv1", x, 1, 9, stride=2)
    z = blocks.relu(n, "relu_conv1", x)
    return Trunk(z=z, z_blob="conv1", z_shape=(1, side, side), hidden=(("conv1", z),),
                 fc1_layer="fc1", fc1_outputs=32, fc1_relu="relu_fc1", classifier_base="fc2",
                 conv_layer="conv1")


def resnet_trunk(n, data, input_size):
    side = resnet_map_size(input_size)
    _check_size("resnet", input_size, side, 1)
    L, _ = blocks.caffe_layers()
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
    return Trunk(z=x, z_blob="res5_6", z_shape=(512, side, side), hidden=tuple(hidden),
                 fc1_layer=renamed_if_mismatched("fc5", side, RESNET_PUBLIC_FC5_MAP),
                 fc1_outputs=512, fc1_relu=None, classifier_base="fc6")


def vgg_trunk(n, data, input_size):
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
    fc6 = renamed_if_mismatched("fc6", side, VGG_PUBLIC_FC6_MAP)
    z = blocks.relu(n, "relu6", blocks.inner_product(n, fc6, x, 4096))
    hidden.append((fc6, z))
    return Trunk(z=z, z_blob=fc6, z_shape=(4096,), hidden=tuple(hidden),
                 fc1_layer="fc7", fc1_outputs=4096, fc1_relu="relu7", classifier_base="fc8")


TRUNKS = {"toy": toy_trunk, "resnet": resnet_trunk, "vgg": vgg_trunk}
