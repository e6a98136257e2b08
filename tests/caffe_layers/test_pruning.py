"""MaskedInnerProduct in real Caffe nets: magnitude mask, forward, gradients with the penalty,
pretrained InnerProduct weights, solver steps and save/reload keeping the mask."""
import numpy as np
import pytest

from tests.layer_gradcheck import (analytic_gradients, check_gradients, euclidean_loss,
                                   fill_inputs, input_layer, make_net, python_layer)

WEIGHT, BIAS = ("param", "fc", 0), ("param", "fc", 1)


def masked_layer(params):
    return python_layer("fc", "pruning", "MaskedInnerProduct", ["x"], ["y"], params)


def pruned_net(caffe, path, in_shape, params, loss_weight=1.0, weights=None):
    return make_net(caffe, path, input_layer({"x": in_shape, "target": (in_shape[0], params["num_output"])}),
                    masked_layer(params), euclidean_loss("y", "target", loss_weight), weights=weights)


def expected_keep(weights, ratio):
    """True where |w| is above the k-th smallest magnitude (random weights have no ties)."""
    pruned = int(round(ratio * weights.size))
    threshold = np.sort(np.abs(weights).ravel())[pruned - 1] if pruned else -1.0
    return np.abs(weights) > threshold


def inputs(rng, in_shape, num_output):
    return {"x": rng.normal(size=in_shape), "target": rng.normal(size=(in_shape[0], num_output))}


@pytest.mark.parametrize("in_shape", [(4, 12), (3, 2, 3, 2)])
@pytest.mark.parametrize("ratio", [0.3, 0.0, 0.75])
def test_first_forward_prunes_the_smallest_weights(caffe, tmp_path, rng, in_shape, ratio):
    net = pruned_net(caffe, tmp_path / "net.prototxt", in_shape, {"num_output": 5, "prune_ratio": ratio})
    assert net.params["fc"][0].data.shape == (5, 12) and net.params["fc"][1].data.shape == (5,)
    initial = net.params["fc"][0].data.copy()
    bias = rng.normal(size=5).astype(np.float32)
    net.params["fc"][1].data[...] = bias
    keep = expected_keep(initial, ratio)
    for num in (in_shape[0], 6):  # then reshaped to batch 6: the mask stays
        values = inputs(rng, (num,) + in_shape[1:], 5)
        fill_inputs(net, values)
        net.forward()
        np.testing.assert_array_equal(net.layers[list(net._layer_names).index("fc")].mask, keep)
        np.testing.assert_array_equal(net.params["fc"][0].data, initial * keep)
        assert np.sum(net.params["fc"][0].data == 0) == round(ratio * 60)
        expected = values["x"].reshape(num, -1) @ (initial * keep).T + bias
        np.testing.assert_allclose(net.blobs["y"].data, expected, rtol=1e-5, atol=1e-6)


def test_xavier_filler_is_caffes_and_seeded(caffe, tmp_path):
    nets = [pruned_net(caffe, tmp_path / f"n{i}.prototxt", (2, 300), {"num_output": 40, "seed": 5})
            for i in range(2)]
    weights = nets[0].params["fc"][0].data
    np.testing.assert_array_equal(weights, nets[1].params["fc"][0].data)
    bound = np.sqrt(3.0 / 300)
    assert np.abs(weights).max() <= bound and np.abs(weights).max() > 0.95 * bound
    assert np.all(nets[0].params["fc"][1].data == 0)


def test_pretrained_inner_product_weights_load_by_layer_name(caffe, tmp_path, rng):
    plain = make_net(caffe, tmp_path / "plain.prototxt", input_layer({"x": (4, 12)}),
                     'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y" '
                     'inner_product_param { num_output: 5 } }')
    weights, bias = rng.normal(size=(5, 12)), rng.normal(size=5)
    plain.params["fc"][0].data[...] = weights
    plain.params["fc"][1].data[...] = bias
    plain.save(str(tmp_path / "plain.caffemodel"))
    net = pruned_net(caffe, tmp_path / "net.prototxt", (4, 12), {"num_output": 5},
                     weights=tmp_path / "plain.caffemodel")
    np.testing.assert_allclose(net.params["fc"][0].data, weights, rtol=1e-6)
    values = inputs(rng, (4, 12), 5)
    fill_inputs(net, values)
    net.forward()
    keep = expected_keep(weights.astype(np.float32), 0.3)
    expected = values["x"] @ (weights * keep).T + bias
    np.testing.assert_allclose(net.blobs["y"].data, expected, rtol=1e-5, atol=1e-5)


def penalty(weights, kind, weight):
    if kind == "l2":
        return weight * 0.5 * np.sum(weights.astype(np.float64) ** 2)
    if kind == "l1":
        return weight * np.sum(np.abs(weights.astype(np.float64)))
    return 0.0


@pytest.mark.parametrize("kind", ["l2", "l1", "none"])
def test_gradient_includes_the_penalty_and_is_zero_where_pruned(caffe, tmp_path, rng, kind):
    params = {"num_output": 4, "penalty": kind, "penalty_weight": 0.05}
    net = pruned_net(caffe, tmp_path / "net.prototxt", (3, 2, 3), params, loss_weight=0.9)
    fill_inputs(net, inputs(rng, (3, 2, 3), 4))
    net.forward()
    mask = net.layers[list(net._layer_names).index("fc")].mask
    diffs = analytic_gradients(net, [WEIGHT])
    assert np.all(diffs[WEIGHT][~mask] == 0)
    checked = check_gradients(
        net, [("blob", "x"), WEIGHT, BIAS], {"loss": 0.9},
        kink=0.0 if kind == "l1" else None, kink_range=1e-2, skip={WEIGHT: ~mask},
        extra_objective=lambda n: penalty(n.params["fc"][0].data, kind, 0.05))
    assert checked >= 30  # of 18 inputs + 17 kept weights + 4 biases, less L1 kinks
    assert np.sum(net.params["fc"][0].data == 0) == round(0.3 * 24)


def test_loss_weight_scales_the_data_gradient_but_not_the_penalty(caffe, tmp_path, rng):
    params = {"num_output": 4, "penalty": "l2", "penalty_weight": 0.05}
    nets = [pruned_net(caffe, tmp_path / f"n{w}.prototxt", (5, 6), params, w) for w in (1.0, 3.7)]
    values = inputs(rng, (5, 6), 4)
    diffs = []
    for net in nets:
        net.params["fc"][0].data[...] = nets[0].params["fc"][0].data
        fill_inputs(net, values)
        diffs.append(analytic_gradients(net, [("blob", "x"), WEIGHT, BIAS]))
    for target in (("blob", "x"), BIAS):
        np.testing.assert_allclose(diffs[1][target], 3.7 * diffs[0][target], rtol=1e-5)
    penalty_part = 0.05 * nets[0].params["fc"][0].data  # already 0 where pruned
    np.testing.assert_allclose(diffs[1][WEIGHT], 3.7 * (diffs[0][WEIGHT] - penalty_part) + penalty_part,
                               rtol=1e-4, atol=1e-6)


def test_solver_keeps_pruned_weights_zero_and_reload_gives_the_same_mask(caffe, tmp_path, rng):
    net_path = tmp_path / "net.prototxt"
    make_net(caffe, net_path, input_layer({"x": (8, 10), "target": (8, 6)}),
             masked_layer({"num_output": 6, "penalty": "l1", "penalty_weight": 1e-3}),
             euclidean_loss("y", "target"), force_backward=False)
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(
        f'net: "{net_path}"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\nweight_decay: 5e-4\n'
        'max_iter: 100\ndisplay: 0\nsnapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\n')
    solver = caffe.SGDSolver(str(solver_path))
    initial = solver.net.params["fc"][0].data.copy()
    keep = expected_keep(initial, 0.3)
    for _ in range(15):
        fill_inputs(solver.net, inputs(rng, (8, 10), 6))
        solver.step(1)
    trained = solver.net.params["fc"][0].data.copy()
    assert np.all(trained[~keep] == 0) and np.all(trained[keep] != 0)
    assert np.abs(trained[keep] - initial[keep]).max() > 1e-3  # it did learn
    solver.net.save(str(tmp_path / "model.caffemodel"))
    reloaded = caffe.Net(str(net_path), caffe.TEST, weights=str(tmp_path / "model.caffemodel"))
    fill_inputs(reloaded, inputs(rng, (8, 10), 6))
    reloaded.forward()
    np.testing.assert_array_equal(reloaded.layers[list(reloaded._layer_names).index("fc")].mask, keep)
    np.testing.assert_array_equal(reloaded.params["fc"][0].data, trained)


def test_without_bias_there_is_one_blob(caffe, tmp_path, rng):
    net = pruned_net(caffe, tmp_path / "net.prototxt", (3, 4), {"num_output": 2, "bias_term": False})
    assert len(net.params["fc"]) == 1
    values = inputs(rng, (3, 4), 2)
    fill_inputs(net, values)
    net.forward()
    np.testing.assert_allclose(net.blobs["y"].data, values["x"] @ net.params["fc"][0].data.T,
                               rtol=1e-5, atol=1e-6)


def test_parameter_diffs_accumulate_over_backward_passes(caffe, tmp_path, rng):
    net = pruned_net(caffe, tmp_path / "net.prototxt", (4, 5), {"num_output": 3, "penalty": "l1"})
    fill_inputs(net, inputs(rng, (4, 5), 3))
    first = analytic_gradients(net, [WEIGHT, BIAS])
    net.backward()  # iter_size 2: Caffe sums the parameter diffs of both passes
    for target, blob in ((WEIGHT, net.params["fc"][0]), (BIAS, net.params["fc"][1])):
        assert np.abs(first[target]).sum() > 0
        np.testing.assert_allclose(blob.diff, 2 * first[target], rtol=1e-6)


def test_train_and_test_nets_derive_the_same_mask(caffe, tmp_path, rng):
    # The solver's TEST net shares W with the TRAIN net and runs first
    # (test_initialization): both must prune the same weights.
    net_path = tmp_path / "net.prototxt"
    make_net(caffe, net_path, input_layer({"x": (4, 10), "target": (4, 6)}),
             masked_layer({"num_output": 6}), euclidean_loss("y", "target"), force_backward=False)
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(
        f'net: "{net_path}"\nbase_lr: 0.1\nlr_policy: "fixed"\nmomentum: 0.9\nmax_iter: 100\n'
        'test_iter: 1\ntest_interval: 2\ntest_initialization: true\ndisplay: 0\n'
        'snapshot_after_train: false\nsolver_mode: CPU\nrandom_seed: 1\n')
    solver = caffe.SGDSolver(str(solver_path))
    keep = expected_keep(solver.net.params["fc"][0].data.copy(), 0.3)
    fill_inputs(solver.net, inputs(rng, (4, 10), 6))
    solver.step(5)
    masks = [net.layers[list(net._layer_names).index("fc")].mask
             for net in (solver.net, solver.test_nets[0])]
    np.testing.assert_array_equal(masks[0], keep)
    np.testing.assert_array_equal(masks[1], keep)
    np.testing.assert_array_equal(solver.test_nets[0].params["fc"][0].data,
                                  solver.net.params["fc"][0].data)
    assert np.all(solver.net.params["fc"][0].data[~keep] == 0)
