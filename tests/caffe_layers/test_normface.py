"""NormalizedInnerProduct (NormFace's classifier) in real Caffe nets: cosine forward, gradients
of x and W through a real caffe.Net, loss weight, accumulation, save/reload, the full NormFace head."""
import numpy as np
import pytest

from caffe_layers.params import LayerInputError
from tests.layer_gradcheck import (analytic_gradients, check_gradients, euclidean_loss,
                                   fill_inputs, input_layer, make_net, python_layer)

WEIGHTS = ("param", "cos", 0)


def cosine_net(caffe, path, shape, num_output, loss_weight=1.0, **params):
    return make_net(caffe, path, input_layer({"x": shape, "target": (shape[0], num_output)}),
                    python_layer("cos", "normface", "NormalizedInnerProduct", ["x"], ["y"],
                                 {"num_output": num_output, **params}),
                    euclidean_loss("y", "target", loss_weight))


def inputs(rng, shape, num_output):
    return {"x": rng.normal(size=shape), "target": rng.normal(size=(shape[0], num_output))}


@pytest.mark.parametrize("shape", [(4, 6), (3, 5, 1, 1), (64, 512)])
def test_forward_is_x_times_the_unit_class_weights(caffe, tmp_path, rng, shape):
    net = cosine_net(caffe, tmp_path / "net.prototxt", shape, 7)
    weights = net.params["cos"][0].data
    assert weights.shape == (7, int(np.prod(shape[1:])))
    values = inputs(rng, shape, 7)
    fill_inputs(net, values)
    net.forward()
    rows = values["x"].reshape(shape[0], -1)
    unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    np.testing.assert_allclose(net.blobs["y"].data, rows @ unit.T, rtol=1e-5, atol=1e-5)
    # Scaling a class's weights changes nothing: only their direction counts.
    net.params["cos"][0].data[2] *= 5.0
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, rows @ unit.T, rtol=1e-5, atol=1e-5)


def test_gradients_match_central_differences(caffe, tmp_path, rng):
    net = cosine_net(caffe, tmp_path / "net.prototxt", (3, 4), 5, loss_weight=0.7)
    fill_inputs(net, inputs(rng, (3, 4), 5))
    assert check_gradients(net, [("blob", "x"), WEIGHTS], {"loss": 0.7}) == 12 + 20


def test_loss_weight_scales_every_gradient(caffe, tmp_path, rng):
    nets = [cosine_net(caffe, tmp_path / f"net{w}.prototxt", (5, 6), 3, w) for w in (1.0, 3.7)]
    values = inputs(rng, (5, 6), 3)
    diffs = []
    for net in nets:
        fill_inputs(net, values)
        diffs.append(analytic_gradients(net, [("blob", "x"), WEIGHTS]))
    for target in diffs[0]:
        assert np.abs(diffs[0][target]).sum() > 0
        np.testing.assert_allclose(diffs[1][target], 3.7 * diffs[0][target], rtol=1e-5,
                                   atol=1e-6 * np.abs(diffs[1][target]).max())


def test_weight_diff_is_tangent_to_each_class_vector_and_accumulates(caffe, tmp_path, rng):
    net = cosine_net(caffe, tmp_path / "net.prototxt", (4, 5), 3)
    fill_inputs(net, inputs(rng, (4, 5), 3))
    first = analytic_gradients(net, [WEIGHTS])[WEIGHTS]
    weights = net.params["cos"][0].data
    # The loss does not depend on the norm of W_j, so its gradient has no radial part.
    np.testing.assert_allclose(np.einsum("kd,kd->k", first, weights), 0.0, atol=1e-6)
    net.backward()  # iter_size 2: parameter diffs add up
    np.testing.assert_allclose(net.params["cos"][0].diff, 2 * first, rtol=1e-6)


def test_weights_survive_save_and_reload_and_a_wrong_input_size_is_refused(caffe, tmp_path, rng):
    net = cosine_net(caffe, tmp_path / "net.prototxt", (2, 3), 4, seed=9)
    net.params["cos"][0].data[...] = rng.normal(size=(4, 3))
    net.save(str(tmp_path / "model.caffemodel"))
    reloaded = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST,
                         weights=str(tmp_path / "model.caffemodel"))
    np.testing.assert_array_equal(reloaded.params["cos"][0].data, net.params["cos"][0].data)
    net.blobs["x"].reshape(2, 5)
    with pytest.raises(LayerInputError, match="input has 5 values per sample but the weights expect 3"):
        net.reshape()


def test_normface_head_gives_scaled_cosines(caffe, tmp_path, rng):
    # L2Normalize with a learned alpha = s in front: y = s cos(x, W_j), NormFace's logits.
    net = make_net(caffe, tmp_path / "head.prototxt", input_layer({"x": (6, 8), "target": (6, 4)}),
                   python_layer("norm", "l2_norm", "L2Normalize", ["x"], ["xn"],
                                {"alpha": 1.0, "learn_alpha": True}),
                   python_layer("cos", "normface", "NormalizedInnerProduct", ["xn"], ["y"],
                                {"num_output": 4}),
                   euclidean_loss("y", "target"))
    net.params["norm"][0].data[0] = 3.0
    values = {"x": rng.normal(size=(6, 8)), "target": rng.normal(size=(6, 4))}
    fill_inputs(net, values)
    net.forward()
    weights = net.params["cos"][0].data
    cosines = (values["x"] / np.linalg.norm(values["x"], axis=1, keepdims=True)) @ \
        (weights / np.linalg.norm(weights, axis=1, keepdims=True)).T
    np.testing.assert_allclose(net.blobs["y"].data, 3.0 * cosines, rtol=1e-5, atol=1e-5)
    assert np.abs(net.blobs["y"].data).max() <= 3.0 + 1e-5
    assert check_gradients(net, [("param", "norm", 0), WEIGHTS], {"loss": 1.0}) == 1 + 32
