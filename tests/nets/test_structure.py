"""The catalog's nets and solvers as committed (resnet, vgg: test_generate checks the files
equal these texts) or written into run folders (toy, cnn48), parsed with caffe_pb2: every
variant's losses, coefficients, penalties, data layers, pretrained layer names and solver values.

Expectations are written out here from the paper (and docs/nets.md), not
derived from nets/, so that a wrong generator fails these tests.
"""
import json

import pytest
from google.protobuf import text_format

from nets import NETS, VARIANTS, file_names
from nets.experiment import COMMITTED_NETS, repo_files
from runtime.caffe_env import REPO_ROOT

TRAIN, TEST = 0, 1

# Per net: input side, class count, z blob, FC1 layer (V, its top is x), classifier (W).
NET_ROLES = {
    "toy": dict(size=48, classes=6, z="conv1", fc1="fc1", classifier="fc2_6cls"),
    "resnet": dict(size=112, classes=7, z="res5_6", fc1="fc5_5x5", classifier="fc6_7cls"),
    "vgg": dict(size=224, classes=7, z="fc6", fc1="fc7", classifier="fc8_7cls"),
}
HIDDEN = {
    "toy": ["conv1", "fc1"],
    # The 11 residual-unit outputs + fc5: 582,912 units at 112x112, the paper's count.
    "resnet": ["res2_2", "res3_2", "res3_4", "res4_2", "res4_4", "res4_6", "res4_8", "res4_10",
               "res5_2", "res5_4", "res5_6", "fc5_5x5"],
    "vgg": ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
            "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"],
}
# variant -> (p, bottoms: "x" | "zx" | "hidden", divided)
SPARSENESS = {
    "l2": (2, "x", False), "l1": (1, "x", False), "l2l2": (2, "zx", False),
    "l1l1": (1, "zx", False), "l2h_s": (2, "hidden", False), "l1h_s": (1, "hidden", False),
    "l2h_d": (2, "hidden", True), "l1h_d": (1, "hidden", True), "l2_center": (2, "x", False),
    "dropout_l2": (2, "x", False), "dropout_l2_center": (2, "x", False),
}
CENTER = {"center", "l2_center", "dropout_center", "dropout_l2_center", "w_l2_center",
          "v_l2_center"}
DROPOUT = {"dropout", "dropout_l2", "dropout_center", "dropout_l2_center"}
WEIGHT_L2 = {"w_l2": {"W"}, "v_l2": {"V"}, "vw_l2": {"V", "W"}, "w_l2_center": {"W"},
             "v_l2_center": {"V"}}
PRUNING = {"w_l1_cp": ("W", "l1"), "w_l2_cp": ("W", "l2"), "v_l1_cp": ("V", "l1"),
           "v_l2_cp": ("V", "l2")}
L2NORM = {"l2norm_a2": (2.0, False), "l2norm_a05": (0.5, False), "l2norm_adaptive": (1.0, True),
          "l2norm_normface": (1.0, True)}
NORMALIZED_CLASSIFIER = {"l2norm_normface"}   # NormFace: beside the paper's variants
PAPER_VARIANTS = {"softmax", *SPARSENESS, *CENTER, *DROPOUT, *WEIGHT_L2, *PRUNING, *L2NORM} - \
    NORMALIZED_CLASSIFIER

# The public center-loss face model (face_deploy.prototxt): conv name -> (outputs, pad).
FACE_RESNET_CONVS = {"conv1a": (32, 0), "conv1b": (64, 0), "conv2": (128, 0),
                     "conv3": (256, 0), "conv4": (512, 0)}
for _stage, _width, _count in ((2, 64, 2), (3, 128, 4), (4, 256, 10), (5, 512, 6)):
    FACE_RESNET_CONVS.update({f"conv{_stage}_{i}": (_width, 1) for i in range(1, _count + 1)})
VGG_CONVS = {f"conv{b}_{i}": w for b, w, n in ((1, 64, 2), (2, 128, 2), (3, 256, 3),
                                               (4, 512, 3), (5, 512, 3)) for i in range(1, n + 1)}


def parse(text, message):
    return text_format.Parse(text, message)


@pytest.fixture(scope="module")
def pb(caffe):
    return caffe.proto.caffe_pb2


@pytest.fixture(scope="module")
def committed(pb):
    """(net, variant) -> (train_val, deploy, solver) parsed from their repo-relative texts."""
    texts = repo_files()
    result = {}
    for net in NETS:
        for variant in VARIANTS:
            names = file_names(net, variant)
            result[net, variant] = (parse(texts[names["train_val"]], pb.NetParameter()),
                                    parse(texts[names["deploy"]], pb.NetParameter()),
                                    parse(texts[names["solver"]], pb.SolverParameter()))
    return result


def layers_by_name(net_param):
    return {layer.name: layer for layer in net_param.layer}


def producer(net_param, blob):
    """The layer that first writes ``blob`` (not an in-place one)."""
    for layer in net_param.layer:
        if blob in layer.top and blob not in layer.bottom:
            return layer
    raise AssertionError(f"no layer produces {blob}")


def python_params(layer):
    return json.loads(layer.python_param.param_str)


def test_every_paper_variant_is_generated():
    assert PAPER_VARIANTS <= set(VARIANTS)
    assert set(NETS) == {"toy", "resnet", "vgg", "cnn48"}  # cnn48: the CPU net, not in the paper
    for name, variant in VARIANTS.items():
        assert variant.paper, f"{name} names no table of the paper"


@pytest.mark.parametrize("net", sorted(NET_ROLES))
def test_data_layers(committed, net):
    for variant in VARIANTS:
        train_val = committed[net, variant][0]
        data = [layer for layer in train_val.layer if layer.type == "Data"]
        assert [layer.include[0].phase for layer in data] == [TRAIN, TEST]
        for layer in data:
            assert list(layer.top) == ["data", "label"]
            # No cropping: a wrong-sized LMDB must fail, not be cropped silently.
            assert not layer.transform_param.HasField("crop_size")
            assert not layer.transform_param.mean_value
            assert not layer.transform_param.HasField("scale")
            assert layer.transform_param.mirror == (layer.include[0].phase == TRAIN)
            assert layer.data_param.backend == 1  # LMDB
        assert data[0].data_param.batch_size == 64
        assert data[0].data_param.source == NETS[net].train_source
        assert data[1].data_param.source == NETS[net].test_source
        assert not data[0].data_param.source.startswith("/")


def test_input_normalisation_and_gray_replication(committed):
    for net, roles in NET_ROLES.items():
        side = roles["size"]
        check = layers_by_name(committed[net, "l2"][0])[f"input_is_1x{side}x{side}"]
        assert (check.type, list(check.bottom)) == ("Reshape", ["data"])
        assert list(check.reshape_param.shape.dim) == [0, 1, side, side]
        assert producer(committed[net, "l2"][0], "data_scaled" if net != "vgg" else "data_b") \
            .bottom[0] == check.top[0]

    layers = layers_by_name(committed["resnet", "l2"][0])
    assert layers["data_scaled"].power_param.scale == pytest.approx(1 / 128)
    assert layers["data_scaled"].power_param.shift == pytest.approx(-127.5 / 128)
    assert list(layers["data_3ch"].bottom) == ["data_scaled"] * 3
    assert list(layers["conv1a"].bottom) == ["data_3ch"]

    layers = layers_by_name(committed["vgg", "l2"][0])
    shifts = [layers[f"data_{c}"].power_param.shift for c in "bgr"]
    assert shifts == pytest.approx([-93.5940, -104.7624, -129.1863], abs=1e-4)
    assert all(layers[f"data_{c}"].power_param.scale == 1 for c in "bgr")
    assert list(layers["data_3ch"].bottom) == ["data_b", "data_g", "data_r"]
    assert list(layers["conv1_1"].bottom) == ["data_3ch"]

    layers = layers_by_name(committed["toy", "l2"][0])
    assert list(layers["conv1"].bottom) == ["data_scaled"]


def test_face_resnet_keeps_the_public_layer_names_and_shapes(committed):
    layers = layers_by_name(committed["resnet", "softmax"][0])
    for name, (outputs, pad) in FACE_RESNET_CONVS.items():
        conv = layers[name].convolution_param
        assert (conv.num_output, list(conv.kernel_size), list(conv.pad)) == \
            (outputs, [3], [pad] if pad else []), name
        assert conv.bias_term and len(layers[name].param) == 2
    prelus = [layer.name for layer in layers.values() if layer.type == "PReLU"]
    assert len(prelus) == len(FACE_RESNET_CONVS)
    sums = [layer.name for layer in layers.values() if layer.type == "Eltwise"]
    assert sums == HIDDEN["resnet"][:-1]
    # 112x112 gives a 5x5 map, not the public 5x4: fc5 is renamed so -weights skips it.
    assert "fc5" not in layers and layers["fc5_5x5"].inner_product_param.num_output == 512
    assert list(layers["fc5_5x5"].bottom) == ["res5_6"]


def test_vgg_keeps_the_vgg_face_layer_names_and_shapes(committed):
    layers = layers_by_name(committed["vgg", "softmax"][0])
    for name, width in VGG_CONVS.items():
        conv = layers[name].convolution_param
        assert (conv.num_output, list(conv.kernel_size), list(conv.pad)) == (width, [3], [1])
    assert [layers[f"pool{i}"].type for i in range(1, 6)] == ["Pooling"] * 5
    assert layers["fc6"].inner_product_param.num_output == 4096
    assert layers["fc7"].inner_product_param.num_output == 4096
    assert "fc8" not in layers  # VGG-Face's 2622-identity classifier must not load


def test_toy_net_is_section_3_2(committed):
    layers = layers_by_name(committed["toy", "softmax"][0])
    conv = layers["conv1"].convolution_param
    assert (conv.num_output, list(conv.kernel_size), list(conv.stride)) == (1, [9], [2])
    assert layers["fc1"].inner_product_param.num_output == 32
    assert layers["fc2_6cls"].inner_product_param.num_output == 6
    assert [layer.type for layer in layers.values()].count("InnerProduct") == 2
    assert [layer.type for layer in layers.values()].count("Convolution") == 1


@pytest.mark.parametrize("net", sorted(NET_ROLES))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_losses_and_penalties(committed, net, variant):
    roles = NET_ROLES[net]
    train_val = committed[net, variant][0]
    layers = layers_by_name(train_val)
    z, x, classifier = roles["z"], roles["fc1"], roles["classifier"]

    # Softmax loss and TEST accuracy on the classifier's logits.
    assert list(layers["loss"].bottom) == [classifier, "label"]
    assert layers["loss"].type == "SoftmaxWithLoss"
    assert list(layers["accuracy"].bottom) == [classifier, "label"]
    assert [rule.phase for rule in layers["accuracy"].include] == [TEST]
    assert producer(train_val, classifier).name == classifier
    assert layers[classifier].type in ("InnerProduct", "Python")

    # Exactly the loss terms of the variant, with the paper's weights.
    weighted = {layer.name: list(layer.loss_weight) for layer in train_val.layer if layer.loss_weight}
    expected = {}
    if variant in SPARSENESS:
        expected["sparseness_loss"] = [pytest.approx(1e-5)]
    if variant in CENTER:
        expected[f"center_loss_{roles['classes']}cls"] = [pytest.approx(8e-3)]
    assert weighted == expected

    if variant in SPARSENESS:
        p, where, divided = SPARSENESS[variant]
        layer = layers["sparseness_loss"]
        assert (layer.python_param.module, layer.python_param.layer) == \
            ("caffe_layers.sparseness", "FeatureSparsenessLoss")
        bottoms = {"x": [x], "zx": [z, x], "hidden": HIDDEN[net]}[where]
        assert list(layer.bottom) == bottoms
        params = python_params(layer)
        assert params["p"] == p and params["normalize"] == "batch"
        coefficient = 1 / len(bottoms) if divided else 1.0
        assert params["coefficients"] == pytest.approx([coefficient] * len(bottoms))
    if variant in CENTER:
        layer = layers[f"center_loss_{roles['classes']}cls"]
        assert (layer.python_param.module, layer.python_param.layer) == \
            ("caffe_layers.center_loss", "CenterLoss")
        assert list(layer.bottom) == [x, "label"]
        assert python_params(layer)["num_classes"] == roles["classes"]
        # Wen et al.'s released face-model configuration: xavier centers, decay_mult 2.
        assert python_params(layer)["center_filler"] == "xavier"
        assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(1, 2)]

    # Dropout 0.5 on the inputs of the last two FC layers; losses see the undropped x.
    dropouts = [layer for layer in train_val.layer if layer.type == "Dropout"]
    fc1_input, classifier_input = layers[x].bottom[0], layers[classifier].bottom[0]
    if variant in DROPOUT:
        assert [list(d.bottom) for d in dropouts] == [[z], [x]]
        assert all(d.dropout_param.dropout_ratio == pytest.approx(0.5) for d in dropouts)
        assert [fc1_input, classifier_input] == [d.top[0] for d in dropouts]
    else:
        assert not dropouts and fc1_input == z
        if variant not in L2NORM:
            assert classifier_input == x

    # Weight sparseness: Caffe weight decay 5e-4 * decay_mult = 5e-4 + 1e-5 on V and/or W.
    for role, name in (("V", x), ("W", classifier)):
        layer = layers[name]
        if role == PRUNING.get(variant, (None,))[0]:
            assert (layer.type, layer.python_param.module, layer.python_param.layer) == \
                ("Python", "caffe_layers.pruning", "MaskedInnerProduct")
            params = python_params(layer)
            assert params["prune_ratio"] == pytest.approx(0.3)
            assert params["penalty"] == PRUNING[variant][1]
            assert params["penalty_weight"] == pytest.approx(1e-5)
            expected_outputs = roles["classes"] if role == "W" else \
                {"toy": 32, "resnet": 512, "vgg": 4096}[net]
            assert params["num_output"] == expected_outputs
        elif role == "W" and variant in NORMALIZED_CLASSIFIER:
            assert (layer.type, layer.python_param.module, layer.python_param.layer) == \
                ("Python", "caffe_layers.normface", "NormalizedInnerProduct")
            assert python_params(layer)["num_output"] == roles["classes"]
            assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(1, 1)]   # no bias
            continue
        else:
            assert layer.type == "InnerProduct"
        decay = 1 + 1e-5 / 5e-4 if role in WEIGHT_L2.get(variant, ()) else 1
        assert [(p.lr_mult, p.decay_mult) for p in layer.param] == \
            [(1, pytest.approx(decay)), (2, 0)]

    # L2 feature normalisation between x and the classifier.
    norms = [layer for layer in train_val.layer if layer.python_param.layer == "L2Normalize"]
    if variant in L2NORM:
        alpha, learn = L2NORM[variant]
        (norm,) = norms
        assert list(norm.bottom) == [x] and classifier_input == norm.top[0] != x
        params = python_params(norm)
        assert params["alpha"] == pytest.approx(alpha)
        assert params.get("learn_alpha", False) == learn
        assert len(norm.param) == (1 if learn else 0)
    else:
        assert not norms


@pytest.mark.parametrize("net", sorted(NET_ROLES))
def test_deploy_nets_are_the_test_net_without_losses(committed, net):
    roles = NET_ROLES[net]
    for variant in VARIANTS:
        train_val, deploy, _ = committed[net, variant]
        first, last = deploy.layer[0], deploy.layer[-1]
        assert (first.type, list(first.top)) == ("Input", ["data"])
        assert list(first.input_param.shape[0].dim) == [1, 1, roles["size"], roles["size"]]
        assert (last.type, list(last.bottom), list(last.top)) == \
            ("Softmax", [roles["classifier"]], ["prob"])
        test_layers = {layer.name: layer for layer in train_val.layer
                       if not layer.include or layer.include[0].phase == TEST}
        for layer in deploy.layer[1:-1]:
            assert "label" not in layer.bottom and not layer.loss_weight and not layer.include
            assert layer == test_layers[layer.name], f"{net}_{variant}: {layer.name} differs"
        kept = {layer.name for layer in deploy.layer}
        dropped = {name for name, layer in test_layers.items() if name not in kept}
        assert {"loss", "accuracy"} <= dropped
        assert dropped == {name for name, layer in test_layers.items()
                           if layer.loss_weight or "label" in layer.bottom}


@pytest.mark.parametrize("net", sorted(NET_ROLES))
def test_solvers_have_the_paper_hyperparameters(committed, net):
    for variant in VARIANTS:
        solver = committed[net, variant][2]
        assert solver.type == "SGD"
        assert solver.base_lr == pytest.approx(1e-2)
        assert solver.momentum == pytest.approx(0.9)
        assert solver.weight_decay == pytest.approx(5e-4)
        assert (solver.lr_policy, solver.stepsize) == ("step", 4000)
        assert solver.gamma == pytest.approx(0.1)
        assert solver.HasField("random_seed")
        assert not solver.HasField("solver_mode")  # CPU unless `caffe train -gpu`
        names = file_names(net, variant)
        assert solver.net == f"prototxt/{names['train_val']}"
        if net in COMMITTED_NETS:
            assert (REPO_ROOT / solver.net).is_file()
        assert solver.snapshot_prefix.startswith(f"runs/{net}_{variant}/")
        assert len(solver.test_iter) == 1 and solver.test_interval > 0
        assert solver.max_iter > solver.stepsize
