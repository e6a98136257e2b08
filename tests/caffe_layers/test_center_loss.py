"""CenterLoss in real Caffe nets: loss, feature gradient, Wen et al.'s center update, solver step, save/reload."""
import numpy as np
import pytest

from caffe_layers.params import LayerInputError
from tests.layer_gradcheck import (analytic_gradients, check_gradients, fill_inputs, input_layer,
                                   make_net, python_layer)

CENTERS = ("param", "center", 0)


def expected_loss(features, labels, centers):
    rows = features.reshape(len(labels), -1).astype(np.float64)
    return sum(np.sum((row - centers[int(y)]) ** 2) for row, y in zip(rows, labels)) / (2 * len(labels))


def wen_update(features, labels, centers):
    """Δc_j = sum_{y_i = j} (c_j - x_i) / (1 + n_j), class by class."""
    rows = features.reshape(len(labels), -1).astype(np.float64)
    update = np.zeros(centers.shape)
    for j in range(len(centers)):
        members = rows[labels == j]
        if len(members):
            update[j] = (centers[j] - members).sum(axis=0) / (1 + len(members))
    return update


def center_layer(num_classes, loss_weight=1.0, extra="", **params):
    return python_layer("center", "center_loss", "CenterLoss", ["x", "label"], ["center_loss"],
                        {"num_classes": num_classes, **params}, loss_weight, extra)


def center_net(caffe, path, feature_shape, label_shape, num_classes, loss_weight=1.0, **params):
    return make_net(caffe, path, input_layer({"x": feature_shape, "label": label_shape}),
                    center_layer(num_classes, loss_weight, **params))


def batch(rng, feature_shape, label_shape, classes):
    features = rng.normal(size=feature_shape).astype(np.float32)
    labels = rng.choice(classes, size=feature_shape[0]).astype(np.float32)
    return features, labels.reshape(label_shape)


@pytest.mark.parametrize("feature_shape,label_shape", [((6, 4), (6,)), ((5, 3, 1, 1), (5, 1, 1, 1)),
                                                       ((64, 512), (64,))])
def test_forward_matches_formula_and_follows_a_reshape(caffe, tmp_path, rng, feature_shape,
                                                       label_shape):
    net = center_net(caffe, tmp_path / "net.prototxt", feature_shape, label_shape, 5)
    dim = int(np.prod(feature_shape[1:]))
    assert net.params["center"][0].data.shape == (5, dim)
    centers = rng.normal(size=(5, dim)).astype(np.float32)
    net.params["center"][0].data[...] = centers
    for num in (feature_shape[0], 9):  # then reshaped to batch 9
        features, labels = batch(rng, (num,) + feature_shape[1:], (num,) + label_shape[1:], 5)
        fill_inputs(net, {"x": features, "label": labels})
        loss = net.forward()["center_loss"][0]
        assert loss == pytest.approx(expected_loss(features, labels.ravel(), centers), rel=1e-5)


def test_center_filler(caffe, tmp_path):
    zeros = center_net(caffe, tmp_path / "zeros.prototxt", (4, 64), (4,), 7)
    assert np.all(zeros.params["center"][0].data == 0)
    gauss = [center_net(caffe, tmp_path / f"g{i}.prototxt", (4, 64), (4,), 7,
                        center_filler_std=0.5, seed=3).params["center"][0].data.copy()
             for i in range(2)]
    np.testing.assert_array_equal(gauss[0], gauss[1])
    assert gauss[0].std() == pytest.approx(0.5, rel=0.1)
    explicit = center_net(caffe, tmp_path / "ge.prototxt", (4, 64), (4,), 7, center_filler="gaussian",
                          center_filler_std=0.5, seed=3).params["center"][0].data
    np.testing.assert_array_equal(explicit, gauss[0])


def test_xavier_center_filler_is_caffes_xavier_over_the_feature_size(caffe, tmp_path):
    # Caffe's XavierFiller (variance_norm FAN_IN) on a (classes, D) blob: U(-a, a),
    # a = sqrt(3 / D), so the variance is 1 / D.
    dim = 512
    centers = [center_net(caffe, tmp_path / f"x{i}.prototxt", (4, dim), (4,), 10,
                          center_filler="xavier", seed=seed).params["center"][0].data.copy()
               for i, seed in enumerate((5, 5, 6))]
    bound = np.sqrt(3.0 / dim)
    assert centers[0].shape == (10, dim)
    assert np.abs(centers[0]).max() <= bound and np.abs(centers[0]).max() > 0.95 * bound
    assert centers[0].var() == pytest.approx(1.0 / dim, rel=0.1)
    assert abs(centers[0].mean()) < 0.1 * bound
    np.testing.assert_array_equal(centers[0], centers[1])  # seeded
    assert not np.array_equal(centers[0], centers[2])


def test_a_gaussian_center_filler_without_a_std_is_refused(caffe, tmp_path):
    with pytest.raises(Exception, match="center_filler_std > 0"):
        center_net(caffe, tmp_path / "bad.prototxt", (4, 8), (4,), 3, center_filler="gaussian")
    with pytest.raises(Exception, match="center_filler.*invalid value 'uniform'"):
        center_net(caffe, tmp_path / "bad2.prototxt", (4, 8), (4,), 3, center_filler="uniform")


def test_feature_gradient_matches_formula_and_central_differences(caffe, tmp_path, rng):
    net = center_net(caffe, tmp_path / "net.prototxt", (5, 3, 1, 1), (5,), 4, loss_weight=0.6)
    centers = rng.normal(size=(4, 3)).astype(np.float32)
    net.params["center"][0].data[...] = centers
    features, labels = batch(rng, (5, 3, 1, 1), (5,), [0, 1, 3])
    fill_inputs(net, {"x": features, "label": labels})
    diffs = analytic_gradients(net, [("blob", "x"), ("blob", "label")])
    expected = 0.6 * (features.reshape(5, 3) - centers[labels.astype(int)]) / 5
    np.testing.assert_allclose(diffs[("blob", "x")].reshape(5, 3), expected, rtol=1e-5, atol=1e-7)
    assert np.all(diffs[("blob", "label")] == 0)  # labels get no gradient
    assert check_gradients(net, [("blob", "x")], {"center_loss": 0.6}) == 15


def test_center_diff_is_wens_update_unscaled_and_accumulated(caffe, tmp_path, rng):
    nets = {weight: center_net(caffe, tmp_path / f"net{weight}.prototxt", (8, 6), (8,), 5,
                               loss_weight=weight) for weight in (1.0, 3.7)}
    centers = rng.normal(size=(5, 6)).astype(np.float32)
    features, labels = batch(rng, (8, 6), (8,), [0, 2, 3])  # classes 1 and 4 absent
    expected = wen_update(features, labels, centers)
    diffs = {}
    for weight, net in nets.items():
        net.params["center"][0].data[...] = centers
        fill_inputs(net, {"x": features, "label": labels})
        diffs[weight] = analytic_gradients(net, [CENTERS, ("blob", "x")])
        np.testing.assert_allclose(diffs[weight][CENTERS], expected, rtol=1e-5, atol=1e-6)
        assert np.all(diffs[weight][CENTERS][[1, 4]] == 0)
        net.backward()  # a second backward (iter_size 2) adds to the center diff
        np.testing.assert_allclose(net.params["center"][0].diff, 2 * expected, rtol=1e-5, atol=1e-6)
    # The loss weight scales the feature gradient, never the center update.
    np.testing.assert_allclose(diffs[3.7][("blob", "x")], 3.7 * diffs[1.0][("blob", "x")], rtol=1e-6)
    np.testing.assert_array_equal(diffs[3.7][CENTERS], diffs[1.0][CENTERS])


@pytest.mark.parametrize("lr_mult", [1.0, 0.5])
def test_solver_step_is_the_textbook_center_update(caffe, tmp_path, rng, lr_mult):
    net_path = tmp_path / "net.prototxt"
    make_net(caffe, net_path, input_layer({"x": (8, 6), "label": (8,)}),
             center_layer(5, 8e-3, extra=f"param {{ lr_mult: {lr_mult} decay_mult: 0 }}"),
             force_backward=False)
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(
        f'net: "{net_path}"\nbase_lr: 0.5\nlr_policy: "fixed"\nmomentum: 0\nweight_decay: 0.1\n'
        'max_iter: 10\ndisplay: 0\nsnapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\n')
    solver = caffe.SGDSolver(str(solver_path))
    centers = rng.normal(size=(5, 6)).astype(np.float32)
    features, labels = batch(rng, (8, 6), (8,), [0, 2, 3])
    solver.net.params["center"][0].data[...] = centers
    fill_inputs(solver.net, {"x": features, "label": labels})
    solver.step(1)
    updated = solver.net.params["center"][0].data
    np.testing.assert_allclose(updated, centers - 0.5 * lr_mult * wen_update(features, labels, centers),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(updated[[1, 4]], centers[[1, 4]])  # absent: untouched, no decay
    assert not np.allclose(updated[[0, 2, 3]], centers[[0, 2, 3]])


def test_centers_survive_save_and_reload(caffe, tmp_path, rng):
    net = center_net(caffe, tmp_path / "net.prototxt", (6, 4), (6,), 3)
    centers = rng.normal(size=(3, 4)).astype(np.float32)
    net.params["center"][0].data[...] = centers
    net.save(str(tmp_path / "model.caffemodel"))
    reloaded = center_net(caffe, tmp_path / "again.prototxt", (6, 4), (6,), 3)
    assert np.all(reloaded.params["center"][0].data == 0)
    reloaded = caffe.Net(str(tmp_path / "again.prototxt"), caffe.TEST,
                         weights=str(tmp_path / "model.caffemodel"))
    np.testing.assert_array_equal(reloaded.params["center"][0].data, centers)
    features, labels = batch(rng, (6, 4), (6,), 3)
    for model in (net, reloaded):
        fill_inputs(model, {"x": features, "label": labels})
    assert reloaded.forward()["center_loss"][0] == net.forward()["center_loss"][0]


@pytest.mark.parametrize("bad_label", [5.0, -1.0, 1.5])
def test_labels_outside_the_classes_are_rejected(caffe, tmp_path, rng, bad_label):
    net = center_net(caffe, tmp_path / "net.prototxt", (4, 3), (4,), 5, name="center")
    features, labels = batch(rng, (4, 3), (4,), 5)
    labels[2] = bad_label
    fill_inputs(net, {"x": features, "label": labels})
    with pytest.raises(LayerInputError, match=r'CenterLoss layer "center".*not integers in \[0, 5\)'):
        net.forward()


def test_feature_size_change_is_rejected(caffe, tmp_path, rng):
    net = center_net(caffe, tmp_path / "net.prototxt", (4, 3), (4,), 5)
    fill_inputs(net, {"x": rng.normal(size=(4, 6)), "label": np.zeros(4)})
    with pytest.raises(LayerInputError, match="6 values per sample but the centers have 3"):
        net.forward()
