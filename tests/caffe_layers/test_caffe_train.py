"""The layers under plain `caffe train`: softmax + feature sparseness (two bottoms) + center loss,
then fine-tuning with a MaskedInnerProduct that loads the trained InnerProduct by name."""
import os
import re
import subprocess

import numpy as np
import pytest

from data_prep.lmdb_io import write_lmdb
from runtime.caffe_env import import_caffe

pytestmark = pytest.mark.slow  # real `caffe train` runs

CLASSES, SIZE, BATCH = 3, 8, 16


def class_band_images(rng, count):
    """Class k brightens its own band of rows: separable by one hidden layer."""
    for i in range(count):
        label = i % CLASSES
        image = rng.integers(0, 70, size=(SIZE, SIZE))
        image[label * 3:label * 3 + 2, :] += 170
        yield f"{i:06d}", image.astype(np.uint8), label


def train_net(lmdb_path, classifier):
    return f'''
layer {{ name: "data" type: "Data" top: "data" top: "label"
  data_param {{ source: "{lmdb_path}" backend: LMDB batch_size: {BATCH} }}
  transform_param {{ scale: 0.00390625 }} }}
layer {{ name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1"
  inner_product_param {{ num_output: 16 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "fc1" top: "fc1" }}
{classifier}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc2" bottom: "label" top: "loss" }}
layer {{ name: "sparsity" type: "Python" bottom: "data" bottom: "fc1" top: "sparsity"
  python_param {{ module: "caffe_layers.sparseness" layer: "FeatureSparsenessLoss"
                  param_str: '{{"p": 2, "coefficients": [1.0, 1.0], "name": "sparsity"}}' }}
  loss_weight: 1e-3 }}
layer {{ name: "center" type: "Python" bottom: "fc1" bottom: "label" top: "center"
  python_param {{ module: "caffe_layers.center_loss" layer: "CenterLoss"
                  param_str: '{{"num_classes": {CLASSES}, "name": "center"}}' }}
  param {{ lr_mult: 1 decay_mult: 0 }}
  loss_weight: 8e-3 }}
'''


PLAIN_FC2 = ('layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" '
             f'inner_product_param {{ num_output: {CLASSES} weight_filler {{ type: "xavier" }} }} }}')
MASKED_FC2 = ('layer { name: "fc2" type: "Python" bottom: "fc1" top: "fc2" '
              'python_param { module: "caffe_layers.pruning" layer: "MaskedInnerProduct" '
              f'param_str: \'{{"num_output": {CLASSES}, "penalty": "l2", "name": "fc2"}}\' }} }}')


def solver(net_path, prefix, iterations, base_lr=0.05):
    return (f'net: "{net_path}"\nbase_lr: {base_lr}\nmomentum: 0.9\nweight_decay: 5e-4\n'
            f'lr_policy: "fixed"\nmax_iter: {iterations}\ndisplay: 1\nsnapshot: 0\n'
            f'snapshot_prefix: "{prefix}"\nsnapshot_after_train: true\n'
            'solver_mode: CPU\nrandom_seed: 7\n')


def caffe_train(caffe_bin, folder, name, net_text, iterations, weights=None, base_lr=0.05):
    (folder / f"{name}_net.prototxt").write_text(net_text)
    (folder / f"{name}_solver.prototxt").write_text(
        solver(folder / f"{name}_net.prototxt", folder / name, iterations, base_lr))
    args = [str(caffe_bin), "train", "-solver", str(folder / f"{name}_solver.prototxt")]
    if weights:
        args += ["-weights", str(weights)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0"))


def run_train(caffe_bin, folder, name, classifier, iterations, weights=None):
    proc = caffe_train(caffe_bin, folder, name, train_net(folder / "train_lmdb", classifier),
                       iterations, weights)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stderr
    losses = [float(v) for v in re.findall(r"Iteration \d+ .*?, loss = ([-+.\deE]+\d)", log)]
    outputs = {key: [float(v) for v in
                     re.findall(rf"Train net output #\d+: {key} = ([-+.\deE]+\d)", log)]
               for key in ("loss", "sparsity", "center")}
    assert len(losses) == iterations, log[-3000:]
    return losses, outputs, folder / f"{name}_iter_{iterations}.caffemodel"


def model_blobs(path):
    net = import_caffe().proto.caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    return {layer.name: [np.array(b.data, dtype=np.float32).reshape(tuple(b.shape.dim))
                         for b in layer.blobs] for layer in net.layer if layer.blobs}


@pytest.fixture(scope="module")
def trained(caffe_bin, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    write_lmdb(folder / "train_lmdb", class_band_images(np.random.default_rng(3), 96))
    return folder, run_train(caffe_bin, folder, "stage1", PLAIN_FC2, 60)


def test_caffe_train_with_sparseness_and_center_loss_learns(trained):
    _, (losses, outputs, model) = trained
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert np.mean(outputs["loss"][-5:]) < 0.5 * np.mean(outputs["loss"][:5])
    for key in ("sparsity", "center"):
        assert len(outputs[key]) == 60 and np.all(np.isfinite(outputs[key])), key
        assert outputs[key][-1] > 0
    blobs = model_blobs(model)
    centers = blobs["center"][0]
    assert centers.shape == (CLASSES, 16)
    assert np.all(np.abs(centers).sum(axis=1) > 0)
    # The centers were learned (they started at 0) and are distinct per class.
    assert np.linalg.norm(centers[0] - centers[1]) > 0.1


def test_fine_tuning_with_masked_inner_product_loads_and_prunes(caffe_bin, trained):
    folder, (_, _, stage1_model) = trained
    losses, _, model = run_train(caffe_bin, folder, "stage2", MASKED_FC2, 20, weights=stage1_model)
    pretrained = model_blobs(stage1_model)["fc2"][0]
    pruned = model_blobs(model)["fc2"][0]
    assert pruned.shape == pretrained.shape == (CLASSES, 16)
    smallest = np.argsort(np.abs(pretrained).ravel())[:round(0.3 * pretrained.size)]
    zeros = np.flatnonzero(pruned.ravel() == 0)
    np.testing.assert_array_equal(np.sort(zeros), np.sort(smallest))
    # Starting from the trained net, pruning 30 % of fc2 keeps the loss low.
    assert np.mean(losses[-5:]) < 0.5 * np.log(CLASSES), losses


def test_caffe_train_shows_a_param_str_error(caffe_bin, trained):
    folder, _ = trained
    net_text = train_net(folder / "train_lmdb", PLAIN_FC2).replace('"p": 2', '"p": 3')
    proc = caffe_train(caffe_bin, folder, "bad_param", net_text, 5)
    assert proc.returncode != 0
    assert ('LayerParamError: caffe_layers.sparseness.FeatureSparsenessLoss layer "sparsity"'
            in proc.stderr), proc.stderr[-3000:]
    assert "key 'p' has the invalid value 3; expected 1 or 2" in proc.stderr


def test_diverging_caffe_train_stops_at_the_first_non_finite_feature(caffe_bin, trained):
    folder, _ = trained
    proc = caffe_train(caffe_bin, folder, "diverge", train_net(folder / "train_lmdb", PLAIN_FC2),
                       20, base_lr=1e30)
    assert proc.returncode != 0
    assert re.search(r'NonFiniteInputError: caffe_layers\.\w+\.\w+ layer "(sparsity|center)" '
                     r'.*bottom\[\d\].* holds \d+ NaN and \d+ Inf', proc.stderr), proc.stderr[-3000:]
    assert not (folder / "diverge_iter_20.caffemodel").exists()
