"""FeatureSparsenessLoss in real Caffe nets: Eq. 4 forward, Eq. 7 backward, loss weight, propagate_down."""
import numpy as np
import pytest

from tests.layer_gradcheck import (analytic_gradients, check_gradients, fill_inputs, input_layer,
                                   make_net, python_layer)


def expected_loss(arrays, p, coefficients, normalize):
    """Eq. 4 from numpy's per-sample p-norms, weighted per bottom."""
    total = 0.0
    for array, coefficient in zip(arrays, coefficients):
        rows = array.reshape(array.shape[0], -1).astype(np.float64)
        total += coefficient * np.sum(np.linalg.norm(rows, ord=p, axis=1) ** p) / p
    return total / (arrays[0].shape[0] if normalize == "batch" else 1)


def sparseness_net(caffe, path, shapes, params, loss_weight=1.0):
    names = [f"b{i}" for i in range(len(shapes))]
    net = make_net(caffe, path, input_layer(dict(zip(names, shapes))),
                   python_layer("sparsity", "sparseness", "FeatureSparsenessLoss", names,
                                ["sparsity"], params, loss_weight))
    return net, names


def random_inputs(rng, names, shapes, batch=None):
    return {name: rng.normal(size=((batch or shape[0]),) + tuple(shape[1:])).astype(np.float32)
            for name, shape in zip(names, shapes)}


@pytest.mark.parametrize("shapes", [[(2, 5)], [(3, 4, 2, 2), (3, 7)], [(64, 512)]])
@pytest.mark.parametrize("normalize", ["batch", "none"])
@pytest.mark.parametrize("p", [1, 2])
def test_forward_matches_norm_formula_and_follows_a_reshape(caffe, tmp_path, rng, p, normalize,
                                                           shapes):
    coefficients = rng.uniform(0.2, 2.0, len(shapes)).tolist()
    net, names = sparseness_net(caffe, tmp_path / "net.prototxt", shapes,
                                {"p": p, "coefficients": coefficients, "normalize": normalize})
    for batch in (shapes[0][0], 5):  # the second pass reshapes the net to batch 5
        inputs = random_inputs(rng, names, shapes, batch)
        fill_inputs(net, inputs)
        loss = net.forward()["sparsity"]
        assert loss.shape == (1,)
        assert loss[0] == pytest.approx(
            expected_loss(list(inputs.values()), p, coefficients, normalize), rel=1e-5)


def test_defaults_are_l2_unit_coefficients_batch_mean(caffe, tmp_path, rng):
    shapes = [(4, 6), (4, 3)]
    net, names = sparseness_net(caffe, tmp_path / "net.prototxt", shapes, {})
    inputs = random_inputs(rng, names, shapes)
    fill_inputs(net, inputs)
    assert net.forward()["sparsity"][0] == pytest.approx(
        expected_loss(list(inputs.values()), 2, [1.0, 1.0], "batch"), rel=1e-5)


@pytest.mark.parametrize("normalize", ["batch", "none"])
@pytest.mark.parametrize("p", [1, 2])
def test_gradient_is_eq7_and_matches_central_differences(caffe, tmp_path, rng, p, normalize):
    shapes, coefficients, loss_weight = [(3, 4), (3, 2, 2, 2)], [1.0, 0.5], 0.7
    net, names = sparseness_net(caffe, tmp_path / "net.prototxt", shapes,
                                {"p": p, "coefficients": coefficients, "normalize": normalize},
                                loss_weight)
    inputs = random_inputs(rng, names, shapes)
    inputs["b0"][0, :2] = 0.0  # sign(0) = 0 for p = 1
    fill_inputs(net, inputs)
    targets = [("blob", name) for name in names]
    diffs = analytic_gradients(net, targets)
    divisor = 3 if normalize == "batch" else 1
    for (target, diff), coefficient, name in zip(diffs.items(), coefficients, names):
        eq7 = inputs[name] if p == 2 else np.sign(inputs[name])
        np.testing.assert_allclose(diff, loss_weight * coefficient * eq7 / divisor, rtol=1e-6)
    checked = check_gradients(net, targets, {"sparsity": loss_weight},
                              kink=0.0 if p == 1 else None, kink_range=1e-2)
    assert checked >= 30  # of 36, a few skipped near the L1 kink


@pytest.mark.parametrize("p", [1, 2])
def test_loss_weight_scales_every_gradient(caffe, tmp_path, rng, p):
    shapes = [(4, 5), (4, 3, 1, 1)]
    params = {"p": p, "coefficients": [1.0, 0.25]}
    one, names = sparseness_net(caffe, tmp_path / "one.prototxt", shapes, params, 1.0)
    scaled, _ = sparseness_net(caffe, tmp_path / "scaled.prototxt", shapes, params, 3.7)
    inputs = random_inputs(rng, names, shapes)
    fill_inputs(one, inputs)
    fill_inputs(scaled, inputs)
    targets = [("blob", name) for name in names]
    base, weighted = analytic_gradients(one, targets), analytic_gradients(scaled, targets)
    for target in targets:
        assert np.abs(base[target]).sum() > 0
        np.testing.assert_allclose(weighted[target], 3.7 * base[target], rtol=1e-6)
    # The top holds the unweighted loss; Caffe applies the weight.
    assert scaled.blobs["sparsity"].data[0] == pytest.approx(one.blobs["sparsity"].data[0])


def test_propagate_down_false_leaves_that_bottom_alone(caffe, tmp_path):
    # Parameter layers need backward by themselves, so no force_backward is
    # needed (and force_backward would override propagate_down).
    layers = [
        'layer { name: "z" type: "Parameter" top: "z" parameter_param { shape { dim: 2 dim: 3 } } }',
        'layer { name: "x" type: "Parameter" top: "x" parameter_param { shape { dim: 2 dim: 3 } } }',
        python_layer("sparsity", "sparseness", "FeatureSparsenessLoss", ["z", "x"], ["sparsity"],
                     {}, 1.0, extra="propagate_down: true propagate_down: false"),
    ]
    net = make_net(caffe, tmp_path / "net.prototxt", *layers, force_backward=False)
    values = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    net.params["z"][0].data[...] = values
    net.params["x"][0].data[...] = values
    net.params["x"][0].diff[...] = 7.0
    net.forward()
    net.backward()
    np.testing.assert_allclose(net.params["z"][0].diff, values / 2, rtol=1e-6)
    assert np.all(net.params["x"][0].diff == 7.0)
