"""L2Normalize in real Caffe nets: Eq. 3 forward, gradient through the norm, learned alpha."""
import numpy as np
import pytest

from caffe_layers.params import LayerInputError
from tests.layer_gradcheck import (analytic_gradients, check_gradients, euclidean_loss,
                                   fill_inputs, input_layer, make_net, python_layer)

ALPHA = ("param", "norm", 0)


def l2_net(caffe, path, shape, params, loss_weight=1.0):
    return make_net(caffe, path, input_layer({"x": shape, "target": shape}),
                    python_layer("norm", "l2_norm", "L2Normalize", ["x"], ["y"], params),
                    euclidean_loss("y", "target", loss_weight))


def inputs(rng, shape):
    return {"x": rng.normal(size=shape), "target": rng.normal(size=shape)}


@pytest.mark.parametrize("shape", [(3, 5), (4, 6, 1, 1), (64, 4096)])
@pytest.mark.parametrize("alpha,learn", [(2.0, False), (0.5, False), (1.0, True)])
def test_forward_rescales_each_sample_to_norm_alpha(caffe, tmp_path, rng, shape, alpha, learn):
    net = l2_net(caffe, tmp_path / "net.prototxt", shape, {"alpha": alpha, "learn_alpha": learn})
    if learn:
        assert net.params["norm"][0].data.shape == (1,)
        assert net.params["norm"][0].data[0] == alpha
        alpha = 1.3
        net.params["norm"][0].data[0] = alpha
    else:
        assert "norm" not in net.params
    for num in (shape[0], 7):  # then reshaped to batch 7
        values = inputs(rng, (num,) + shape[1:])
        fill_inputs(net, values)
        net.forward()
        output = net.blobs["y"].data
        assert output.shape == values["x"].shape
        rows = values["x"].reshape(num, -1)
        expected = alpha * rows / np.linalg.norm(rows, axis=1, keepdims=True)
        np.testing.assert_allclose(output.reshape(num, -1), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(output.reshape(num, -1), axis=1), alpha, rtol=1e-5)


@pytest.mark.parametrize("learn", [False, True])
def test_gradient_matches_central_differences(caffe, tmp_path, rng, learn):
    net = l2_net(caffe, tmp_path / "net.prototxt", (3, 4), {"alpha": 2.0, "learn_alpha": learn},
                 loss_weight=0.8)
    fill_inputs(net, inputs(rng, (3, 4)))
    targets = [("blob", "x")] + ([ALPHA] if learn else [])
    assert check_gradients(net, targets, {"loss": 0.8}) == 12 + learn


def test_loss_weight_scales_every_gradient(caffe, tmp_path, rng):
    params = {"alpha": 0.5, "learn_alpha": True}
    nets = [l2_net(caffe, tmp_path / f"net{w}.prototxt", (5, 6), params, w) for w in (1.0, 3.7)]
    values = inputs(rng, (5, 6))
    diffs = []
    for net in nets:
        fill_inputs(net, values)
        diffs.append(analytic_gradients(net, [("blob", "x"), ALPHA]))
    for target in diffs[0]:
        assert np.abs(diffs[0][target]).sum() > 0
        np.testing.assert_allclose(diffs[1][target], 3.7 * diffs[0][target], rtol=1e-5,
                                   atol=1e-6 * np.abs(diffs[1][target]).max())


def test_zero_feature_gives_zero_output_and_finite_gradient(caffe, tmp_path, rng):
    net = l2_net(caffe, tmp_path / "net.prototxt", (2, 3), {"alpha": 2.0})
    values = inputs(rng, (2, 3))
    values["x"][1] = 0.0
    fill_inputs(net, values)
    net.forward()
    net.backward()
    assert np.all(net.blobs["y"].data[1] == 0)
    assert np.all(np.isfinite(net.blobs["x"].diff))


def test_learned_alpha_survives_save_and_reload(caffe, tmp_path):
    net = l2_net(caffe, tmp_path / "net.prototxt", (2, 3), {"learn_alpha": True})
    net.params["norm"][0].data[0] = 0.37
    net.save(str(tmp_path / "model.caffemodel"))
    reloaded = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TEST,
                         weights=str(tmp_path / "model.caffemodel"))
    assert reloaded.params["norm"][0].data[0] == pytest.approx(0.37)


def test_in_place_use_is_rejected(caffe, tmp_path):
    with pytest.raises(LayerInputError, match="L2Normalize layer.*cannot run in place"):
        make_net(caffe, tmp_path / "net.prototxt", input_layer({"x": (2, 3)}),
                 python_layer("norm", "l2_norm", "L2Normalize", ["x"], ["x"], {}))


def test_alpha_diff_accumulates_over_backward_passes(caffe, tmp_path, rng):
    net = l2_net(caffe, tmp_path / "net.prototxt", (4, 5), {"learn_alpha": True})
    fill_inputs(net, inputs(rng, (4, 5)))
    first = analytic_gradients(net, [ALPHA])[ALPHA]
    assert first[0] != 0
    net.backward()  # iter_size 2: Caffe sums the parameter diffs of both passes
    np.testing.assert_allclose(net.params["norm"][0].diff, 2 * first, rtol=1e-6)
