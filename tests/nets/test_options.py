"""The training options of nets/: one build per experiment, weight decay that
follows the solver, Eq. 8's transferred learning rate, the center-loss update
rate and initialisation (through real SGDSolver steps), the face ResNet's
public input geometry (against the public model's layer shapes), and the test
pass sized from the caller's record count.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format

import nets.build
import nets.experiment
from data_prep.lmdb_io import write_lmdb
from nets import deploy_net, roles, train_val_net, write_experiment
from nets.pretrained import compare_weights

def layers_by_name(net_param):
    return {layer.name: layer for layer in net_param.layer}


def parse(path, message):
    return text_format.Parse(path.read_text(), message)


def test_an_experiment_builds_its_nets_once_and_its_solver_once(monkeypatch, tmp_path):
    calls = {"build": 0, "solver": 0}
    build, make_solver = nets.build._build, nets.experiment.solver

    def counted_build(*args, **kwargs):
        calls["build"] += 1
        return build(*args, **kwargs)

    def counted_solver(*args, **kwargs):
        calls["solver"] += 1
        return make_solver(*args, **kwargs)

    monkeypatch.setattr(nets.build, "_build", counted_build)
    monkeypatch.setattr(nets.experiment, "solver", counted_solver)
    paths = write_experiment(tmp_path, "resnet", "l2_center", max_iter=10)
    assert calls == {"build": 1, "solver": 1}
    assert paths["roles"].fc1_layer == "fc5_5x5" and paths["max_iter"] == 10


@pytest.mark.parametrize("weight_decay", [5e-4, 1e-3, 2e-5])
def test_weight_sparseness_penalty_follows_a_weight_decay_override(caffe, tmp_path, weight_decay):
    pb = caffe.proto.caffe_pb2
    paths = write_experiment(tmp_path, "toy", "vw_l2", weight_decay=weight_decay)
    solver = parse(paths["solver"], pb.SolverParameter())
    assert solver.weight_decay == pytest.approx(weight_decay)
    layers = layers_by_name(parse(paths["train_val"], pb.NetParameter()))
    # docs/nets.md: V and W get weight_decay + 1e-5 (the weight-sparseness lambda), the rest
    # weight_decay; biases none.
    for name in ("fc1", "fc2_6cls"):
        weight, bias = layers[name].param
        assert solver.weight_decay * weight.decay_mult == pytest.approx(weight_decay + 1e-5,
                                                                         rel=1e-6)
        assert bias.decay_mult == 0
    assert layers["conv1"].param[0].decay_mult == 1


def test_weight_sparseness_without_weight_decay_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="weight_decay 0 leaves no L2 weight decay"):
        write_experiment(tmp_path, "toy", "w_l2", weight_decay=0)
    write_experiment(tmp_path, "toy", "l2", weight_decay=0)  # no weight sparseness: fine


def test_transferred_lr_mult_scales_the_trunk_only():
    default = layers_by_name(train_val_net("resnet", "l2_center"))
    scaled = layers_by_name(train_val_net("resnet", "l2_center", transferred_lr_mult=0.1))
    trunk = [name for name, layer in default.items()
             if layer.type in ("Convolution", "PReLU")]
    assert len(trunk) == 2 * 27  # 27 convolutions, each with its PReLU
    for name in trunk:
        before = [p.lr_mult for p in default[name].param] or [1.0]  # PReLU: Caffe's default 1
        after = [p.lr_mult for p in scaled[name].param]
        assert after == pytest.approx([0.1 * value for value in before]), name
    for name in ("fc5_5x5", "fc6_7cls", "center_loss_7cls"):  # MII and the centers keep theirs
        assert scaled[name].param == default[name].param
    # The default writes no PReLU param at all: the committed nets are unchanged by the option.
    assert not default["relu1a"].param
    with pytest.raises(ValueError, match="transferred_lr_mult must be a number >= 0"):
        train_val_net("toy", "l2", transferred_lr_mult=-1)
    with pytest.raises(ValueError, match="unknown net option.*'transfered_lr_mult'"):
        train_val_net("toy", "l2", transfered_lr_mult=0.1)


def center_records(rng, n, num_classes=6, size=48):
    for i in range(n):
        image = rng.integers(0, 255, (size, size)).astype(np.uint8)
        yield f"{i:07d}_00", image, i % num_classes


def sgd_solver(caffe, tmp_path, rng, variant, **options):
    """A caffe.SGDSolver on the toy net with momentum 0, so one step is lr * lr_mult * diff."""
    write_lmdb(tmp_path / "train_lmdb", center_records(rng, 24))
    paths = write_experiment(tmp_path / "run", "toy", variant, num_classes=6,
                             train_source=tmp_path / "train_lmdb",
                             test_source=tmp_path / "train_lmdb", batch_size=12,
                             test_batch_size=12, max_iter=10, momentum=0.0,
                             test_initialization=False, test_interval=1000, snapshot=0,
                             **options)
    return caffe.SGDSolver(str(paths["solver"]))


def expected_center_step(centers, x, labels, rate):
    """Wen et al.'s update c_j -= rate * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)."""
    expected = centers.copy()
    for j in range(centers.shape[0]):
        members = labels == j
        delta = (centers[j] - x[members]).sum(axis=0) / (1 + members.sum())
        expected[j] -= rate * delta
    return expected


def test_center_update_rate_and_initialisation_through_a_solver_step(caffe, tmp_path, rng):
    solver = sgd_solver(caffe, tmp_path, rng, "center", center_lr_mult=3.0,
                        center_filler="gaussian", center_filler_std=0.5, center_decay_mult=0.0)
    centers_blob = solver.net.params["center_loss_6cls"][0]
    start = centers_blob.data.copy()
    # center_filler_std 0.5: gaussian centers, not zeros.
    assert start.shape == (6, 32) and np.abs(start).min() > 0
    assert start.std() == pytest.approx(0.5, rel=0.3)
    solver.step(1)
    x = solver.net.blobs["fc1"].data.reshape(12, -1).astype(np.float64)
    labels = solver.net.blobs["label"].data.astype(int)
    base_lr = 0.01
    assert centers_blob.data == pytest.approx(
        expected_center_step(start, x, labels, base_lr * 3.0), rel=1e-4, abs=1e-7)
    # The default would have moved them three times less: the option is what acts.
    assert not np.allclose(centers_blob.data,
                           expected_center_step(start, x, labels, base_lr), atol=1e-6)


def test_center_defaults_are_the_released_face_configuration(caffe, tmp_path, rng):
    # Wen et al.'s released face model trains its centers with center_filler xavier,
    # lr_mult 1 and decay_mult 2 beside loss_weight 0.008 (issue 22, item 5).
    solver = sgd_solver(caffe, tmp_path, rng, "center")
    layer = layers_by_name(train_val_net("toy", "center"))["center_loss_6cls"]
    assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(1, 2)]
    assert layer.loss_weight == [pytest.approx(0.008)]
    settings = json.loads(layer.python_param.param_str)
    assert settings["center_filler"] == "xavier" and "center_filler_std" not in settings
    centers = solver.net.params["center_loss_6cls"][0]
    start = centers.data.copy().astype(np.float64)
    bound = np.sqrt(3.0 / 32)
    assert np.abs(start).max() <= bound and start.var() == pytest.approx(1 / 32, rel=0.35)
    solver.step(1)
    x = solver.net.blobs["fc1"].data.reshape(12, -1).astype(np.float64)
    labels = solver.net.blobs["label"].data.astype(int)
    # One SGD step with momentum 0: Wen's update plus the weight decay 5e-4 * 2 on the centers.
    decayed = start - 0.01 * 5e-4 * 2 * start
    assert centers.data == pytest.approx(
        expected_center_step(start, x, labels, 0.01) - start + decayed, rel=1e-4, abs=1e-7)


def test_zero_centers_without_decay_stay_an_option(caffe, tmp_path, rng):
    solver = sgd_solver(caffe, tmp_path, rng, "center", center_filler="zeros", center_decay_mult=0.0)
    centers = solver.net.params["center_loss_6cls"][0]
    assert not centers.data.any()
    solver.step(1)
    x = solver.net.blobs["fc1"].data.reshape(12, -1).astype(np.float64)
    labels = solver.net.blobs["label"].data.astype(int)
    assert centers.data == pytest.approx(
        expected_center_step(np.zeros((6, 32)), x, labels, 0.01), rel=1e-4, abs=1e-7)


def test_a_center_std_is_refused_without_the_gaussian_filler():
    with pytest.raises(ValueError, match="the std is the gaussian filler's alone"):
        train_val_net("toy", "center", center_filler_std=0.5)
    with pytest.raises(ValueError, match="center_filler must be one of zeros, gaussian, xavier"):
        train_val_net("toy", "center", center_filler="uniform")


@pytest.mark.parametrize("normalization,factor", [("batch", 1.0), ("sum", 12.0)])
def test_sparseness_normalization_sum_is_the_batch_times_the_mean(caffe, tmp_path, rng,
                                                                   normalization, factor):
    # Eq. 4 summed over the batch ("sum") against Caffe's averaged form ("batch"):
    # the same penalty and gradient, N = 12 times larger (issue 22, item 2).
    solver = sgd_solver(caffe, tmp_path, rng, "l2", sparseness_normalization=normalization)
    layer = layers_by_name(train_val_net("toy", "l2", sparseness_normalization=normalization))
    settings = json.loads(layer["sparseness_loss"].python_param.param_str)
    assert settings["normalize"] == {"batch": "batch", "sum": "none"}[normalization]
    net = solver.net
    net.forward()
    x = net.blobs["fc1"].data.reshape(12, -1).astype(np.float64)
    assert net.blobs["sparseness_loss"].data[0] == pytest.approx(
        factor * 0.5 * np.sum(x ** 2) / 12, rel=1e-5)
    with pytest.raises(ValueError, match="sparseness_normalization must be one of batch, sum"):
        train_val_net("toy", "l2", sparseness_normalization="mean")


def test_a_frozen_trunk_does_not_move_in_a_solver_step(caffe, tmp_path, rng):
    solver = sgd_solver(caffe, tmp_path, rng, "softmax", transferred_lr_mult=0.0)
    conv, fc1 = (solver.net.params[name][0].data.copy() for name in ("conv1", "fc1"))
    solver.step(1)
    assert np.array_equal(solver.net.params["conv1"][0].data, conv)
    assert not np.array_equal(solver.net.params["fc1"][0].data, fc1)


# The public center-loss face model (face_model.caffemodel with face_deploy.prototxt): input
# 1x3x112x96, every learnable layer's blob shapes. fc5 sees a 512x5x4 map; fc6 classifies
# CASIA-WebFace's 10,572 identities.
def public_face_resnet_shapes():
    shapes = {}
    previous = 3
    for name, channels in (("conv1a", 32), ("conv1b", 64)):
        shapes[name] = [(channels, previous, 3, 3), (channels,)]
        shapes[f"relu{name[4:]}"] = [(channels,)]
        previous = channels
    for stage, channels, units in ((2, 64, 1), (3, 128, 2), (4, 256, 5), (5, 512, 3)):
        if stage > 2:
            shapes[f"conv{stage - 1}"] = [(channels, previous, 3, 3), (channels,)]
            shapes[f"relu{stage - 1}"] = [(channels,)]
        for index in range(1, 2 * units + 1):
            shapes[f"conv{stage}_{index}"] = [(channels, channels, 3, 3), (channels,)]
            shapes[f"relu{stage}_{index}"] = [(channels,)]
        previous = channels
    shapes["fc5"] = [(512, 512 * 5 * 4), (512,)]
    shapes["fc6"] = [(10572, 512), (10572,)]
    return shapes


def project_shapes(caffe, tmp_path, **options):
    path = tmp_path / "deploy.prototxt"
    path.write_text(text_format.MessageToString(deploy_net("resnet", "l2_center", **options)))
    net = caffe.Net(str(path), caffe.TEST)
    return net, {name: [blob.data.shape for blob in blobs] for name, blobs in net.params.items()}


def test_public_geometry_loads_every_pretrained_layer_including_fc5(caffe, tmp_path, rng):
    public = public_face_resnet_shapes()
    net, shapes = project_shapes(caffe, tmp_path, geometry="public")
    loaded, initialised = compare_weights(public, shapes, "face_model.caffemodel")
    assert set(loaded) == set(public) - {"fc6"} and "fc5" in loaded
    assert initialised == ["fc6_7cls"]
    # The net takes the same 112x112 gray images and runs the middle 96 columns.
    assert net.blobs["data"].data.shape == (1, 1, 112, 112)
    net.blobs["data"].data[...] = rng.integers(0, 256, (1, 1, 112, 112))
    net.forward()
    assert np.array_equal(net.blobs["data_112x96"].data, net.blobs["data"].data[..., 8:104])
    assert net.blobs["res5_6"].data.shape == (1, 512, 5, 4)
    r = roles("resnet", geometry="public")
    # docs/nets.md: fewer hidden units than the paper's 582,912 at 112x96.
    assert sum(net.blobs[name].data[0].size for name in r.hidden_blobs) == 490240
    assert (r.fc1_layer, r.z_shape, r.hidden_blobs[-1], r.geometry) == \
        ("fc5", (512, 5, 4), "fc5", "public")


def test_square_geometry_reinitialises_fc5_under_its_own_name(caffe, tmp_path):
    public = public_face_resnet_shapes()
    _, shapes = project_shapes(caffe, tmp_path)
    loaded, initialised = compare_weights(public, shapes, "face_model.caffemodel")
    assert set(loaded) == set(public) - {"fc5", "fc6"}
    assert sorted(initialised) == ["fc5_5x5", "fc6_7cls"]
    assert shapes["fc5_5x5"][0] == (512, 512 * 5 * 5)


def test_geometry_errors_name_the_choices():
    with pytest.raises(ValueError, match="unknown geometry 'wide'.*square, public"):
        roles("resnet", geometry="wide")
    with pytest.raises(ValueError, match="the vgg net has only 'square'"):
        train_val_net("vgg", "l2", geometry="public")
    with pytest.raises(ValueError, match="input_size must be 112, got 120"):
        roles("resnet", input_size=120, geometry="public")


def test_test_pass_comes_from_the_callers_record_count(caffe, tmp_path):
    assert write_experiment(tmp_path / "a", "toy", "l2", test_records=101,
                            test_batch_size=10)["test_iter"] == 11
    assert write_experiment(tmp_path / "b", "toy", "l2", test_records=3589)["test_iter"] == 72
    assert write_experiment(tmp_path / "c", "toy", "l2")["test_iter"] == 72  # DEFAULT_TEST_ITER
    assert write_experiment(tmp_path / "d", "toy", "l2", test_records=5,
                            test_iter=9)["test_iter"] == 9  # an explicit test_iter wins
    with pytest.raises(ValueError, match="test_records must be a positive record count"):
        write_experiment(tmp_path / "e", "toy", "l2", test_records=0)


def test_nets_do_not_open_lmdbs():
    code = ("import sys, nets, nets.experiment, nets.generate; "
            "print('lmdb' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "False"
