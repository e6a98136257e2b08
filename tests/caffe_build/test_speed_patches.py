"""The layers that caffe_build/patches/ speeds up still compute the right thing.

The speed patches replace Caffe's per-image CPU convolution by GEMMs over
groups of images (0101), rewrite PReLU's CPU loops (0102), both running in
parallel with OpenMP, send GEMMs with one output row or column to GEMV (0105:
one-output inner products), convolve one-map layers directly (0106: the toy
net's conv1) and run every other 2-D float convolution on oneDNN (0107, the
default build). These tests check the installed Caffe's Convolution and PReLU
layers, forward and every gradient, against independent numpy formulas, in the
geometries the project's nets use and in the ones the fast paths have to get
right (padding, stride 2, groups, dilation, 1x1, several GEMM chunks);
tests/caffe_build/test_convolution_engine.py runs the convolution cases again with
CAFFE_CPU_CONVOLUTION=gemm, and tests/caffe_build/test_gtests.py Caffe's own gtests
of these layers with both.
"""
import numpy as np
import pytest


def _taps(x, kh, kw, stride, pad, dilation, oh, ow):
    """Yield (i, j, the input window that kernel tap (i, j) sees at every output)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, :, i * dilation:i * dilation + stride * (oh - 1) + 1:stride,
                           j * dilation:j * dilation + stride * (ow - 1) + 1:stride]


def _output_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def conv_reference(x, w, b, stride, pad, dilation, group):
    """Direct convolution in numpy, one einsum per kernel tap and group."""
    out_c, c_per_group, kh, kw = w.shape
    oh = _output_size(x.shape[2], kh, stride, pad, dilation)
    ow = _output_size(x.shape[3], kw, stride, pad, dilation)
    y = np.zeros((x.shape[0], out_c, oh, ow))
    o_per_group = out_c // group
    for i, j, window in _taps(x, kh, kw, stride, pad, dilation, oh, ow):
        for g in range(group):
            outs = slice(g * o_per_group, (g + 1) * o_per_group)
            y[:, outs] += np.einsum("nchw,oc->nohw",
                                    window[:, g * c_per_group:(g + 1) * c_per_group],
                                    w[outs, :, i, j])
    return y + b[None, :, None, None]


def conv_input_grad_reference(dy, w, x_shape, stride, pad, dilation, group):
    """dL/dx: every output's dy spread back over the inputs its taps saw."""
    out_c, c_per_group, kh, kw = w.shape
    o_per_group = out_c // group
    n, c, h, wd = x_shape
    oh, ow = dy.shape[2], dy.shape[3]
    grad = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dilation, i * dilation + stride * (oh - 1) + 1, stride)
            cols = slice(j * dilation, j * dilation + stride * (ow - 1) + 1, stride)
            for g in range(group):
                outs = slice(g * o_per_group, (g + 1) * o_per_group)
                grad[:, g * c_per_group:(g + 1) * c_per_group, rows, cols] += np.einsum(
                    "nohw,oc->nchw", dy[:, outs], w[outs, :, i, j])
    return grad[:, :, pad:pad + h, pad:pad + wd]


def conv_weight_grad_reference(x, dy, w_shape, stride, pad, dilation, group):
    """dL/dw[o, c, i, j] = sum over images and outputs of dy * the input tap (i, j) saw."""
    out_c, c_per_group, kh, kw = w_shape
    o_per_group = out_c // group
    grad = np.zeros(w_shape)
    for i, j, window in _taps(x, kh, kw, stride, pad, dilation, dy.shape[2], dy.shape[3]):
        for g in range(group):
            outs = slice(g * o_per_group, (g + 1) * o_per_group)
            grad[outs, :, i, j] = np.einsum(
                "nohw,nchw->oc", dy[:, outs], window[:, g * c_per_group:(g + 1) * c_per_group])
    return grad


def conv_net(caffe, tmp_path, shape, num_output, kernel, stride, pad, dilation, group):
    from caffe import layers as L
    ns = caffe.NetSpec()
    ns.data = L.Input(input_param={"shape": {"dim": list(shape)}})
    ns.conv = L.Convolution(ns.data, num_output=num_output, kernel_size=kernel, stride=stride,
                            pad=pad, dilation=dilation, group=group,
                            weight_filler={"type": "gaussian", "std": 0.1},
                            bias_filler={"type": "gaussian", "std": 0.1})
    path = tmp_path / "conv.prototxt"
    path.write_text("force_backward: true\n" + str(ns.to_proto()))
    return caffe.Net(str(path), caffe.TRAIN)


# (input shape, num_output, kernel, stride, pad, dilation, group)
CONV_CASES = {
    "face-resnet-stride2": ((4, 3, 13, 11), 8, 3, 2, 1, 1, 1),
    "face-resnet-unit": ((5, 6, 6, 6), 6, 3, 1, 1, 1, 1),
    "toy-k9-no-pad": ((3, 1, 24, 24), 1, 9, 2, 0, 1, 1),
    "groups": ((3, 4, 7, 9), 6, 3, 1, 1, 1, 2),
    "dilation": ((2, 3, 10, 10), 4, 3, 1, 2, 2, 1),
    "1x1": ((3, 5, 4, 6), 7, 1, 1, 0, 1, 1),
    "pad-wider-than-stride": ((2, 2, 5, 5), 3, 5, 3, 3, 1, 1),
    # (144 + 16) x 128 x 128 elements per image: more than one GEMM chunk.
    "several-gemm-chunks": ((5, 16, 128, 128), 16, 3, 1, 1, 1, 1),
}


@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_matches_numpy_forward_and_gradients(caffe, tmp_path, rng, case):
    shape, num_output, kernel, stride, pad, dilation, group = CONV_CASES[case]
    net = conv_net(caffe, tmp_path, shape, num_output, kernel, stride, pad, dilation, group)
    x = rng.standard_normal(shape).astype(np.float32)
    w = net.params["conv"][0].data.astype(np.float64)
    b = net.params["conv"][1].data.astype(np.float64)
    net.blobs["data"].data[...] = x
    net.forward()
    expected = conv_reference(x.astype(np.float64), w, b, stride, pad, dilation, group)
    np.testing.assert_allclose(net.blobs["conv"].data, expected, rtol=1e-4, atol=1e-4)

    dy = rng.standard_normal(expected.shape)
    net.clear_param_diffs()
    net.blobs["conv"].diff[...] = dy
    net.backward()
    np.testing.assert_allclose(net.params["conv"][1].diff, dy.sum(axis=(0, 2, 3)),
                               rtol=1e-4, atol=1e-3)
    expected_weight_grad = conv_weight_grad_reference(x.astype(np.float64), dy, w.shape, stride,
                                                      pad, dilation, group)
    # Each element sums images x output pixels products (82k in several-gemm-chunks) in
    # float, in an order that differs between oneDNN and the BLAS: the rounding grows with
    # the partial sums, so the bound scales with the largest element, not with each one.
    weight_atol = max(1e-3, 2e-5 * np.abs(expected_weight_grad).max())
    np.testing.assert_allclose(net.params["conv"][0].diff, expected_weight_grad, rtol=1e-4,
                               atol=weight_atol)
    np.testing.assert_allclose(
        net.blobs["data"].diff,
        conv_input_grad_reference(dy, w, shape, stride, pad, dilation, group),
        rtol=1e-4, atol=1e-3)

    # A second backward without clearing: Caffe adds parameter gradients to what is there
    # (iter_size, shared weights) and overwrites the input gradient.
    weight_diff, bias_diff = (net.params["conv"][i].diff.copy() for i in (0, 1))
    input_diff = net.blobs["data"].diff.copy()
    net.backward()
    np.testing.assert_allclose(net.params["conv"][0].diff, 2 * weight_diff, rtol=1e-5,
                               atol=1e-5 * np.abs(weight_diff).max())
    np.testing.assert_allclose(net.params["conv"][1].diff, 2 * bias_diff, rtol=1e-5,
                               atol=1e-5 * np.abs(bias_diff).max())
    np.testing.assert_allclose(net.blobs["data"].diff, input_diff, rtol=1e-6, atol=1e-6)


# One output map and no input gradient (a net's first layer, as the toy net's
# conv1): patch 0106 convolves directly, without im2col.
SINGLE_MAP_CASES = {
    "toy-conv1": ((6, 1, 48, 48), 1, 9, 2, 0, 1, 1),
    "pad-and-dilation": ((2, 3, 11, 9), 1, 3, 1, 2, 2, 1),
    "stride3-pad-wider": ((3, 2, 10, 10), 1, 5, 3, 3, 1, 1),
}


def first_layer_conv_net(caffe, tmp_path, shape, kernel, stride, pad, dilation):
    """data -> one-map Convolution -> EuclideanLoss against ``target``, no force_backward:
    the convolution gets parameter gradients but no input gradient, as a first layer."""
    from caffe import layers as L
    ns = caffe.NetSpec()
    ns.data = L.Input(input_param={"shape": {"dim": list(shape)}})
    ns.conv = L.Convolution(ns.data, num_output=1, kernel_size=kernel, stride=stride, pad=pad,
                            dilation=dilation, weight_filler={"type": "gaussian", "std": 0.1},
                            bias_filler={"type": "gaussian", "std": 0.1})
    out = [_output_size(side, kernel, stride, pad, dilation) for side in shape[2:]]
    ns.target = L.Input(input_param={"shape": {"dim": [shape[0], 1, *out]}})
    ns.loss = L.EuclideanLoss(ns.conv, ns.target)
    path = tmp_path / "first_conv.prototxt"
    path.write_text(str(ns.to_proto()))
    return caffe.Net(str(path), caffe.TRAIN)


@pytest.mark.parametrize("case", SINGLE_MAP_CASES)
def test_single_map_convolution_matches_numpy_forward_and_parameter_gradients(
        caffe, tmp_path, rng, case):
    shape, _, kernel, stride, pad, dilation, _ = SINGLE_MAP_CASES[case]
    net = first_layer_conv_net(caffe, tmp_path, shape, kernel, stride, pad, dilation)
    x = rng.standard_normal(shape).astype(np.float32)
    w = net.params["conv"][0].data.astype(np.float64)
    b = net.params["conv"][1].data.astype(np.float64)
    net.blobs["data"].data[...] = x
    net.blobs["target"].data[...] = rng.standard_normal(net.blobs["target"].data.shape)
    net.forward()
    expected = conv_reference(x.astype(np.float64), w, b, stride, pad, dilation, 1)
    np.testing.assert_allclose(net.blobs["conv"].data, expected, rtol=1e-4, atol=1e-4)
    # EuclideanLoss = sum((conv - target)^2) / (2 N): its gradient to conv is this dy.
    dy = (net.blobs["conv"].data.astype(np.float64) - net.blobs["target"].data) / shape[0]
    net.params["conv"][0].diff[...] = 0.5  # parameter gradients accumulate (iter_size)
    net.params["conv"][1].diff[...] = 0.5
    net.backward()
    np.testing.assert_allclose(net.params["conv"][1].diff, 0.5 + dy.sum(axis=(0, 2, 3)),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        net.params["conv"][0].diff,
        0.5 + conv_weight_grad_reference(x.astype(np.float64), dy, w.shape, stride, pad,
                                         dilation, 1), rtol=1e-4, atol=1e-4)


def inner_product_net(caffe, tmp_path, batch, inputs, num_output):
    from caffe import layers as L
    ns = caffe.NetSpec()
    ns.data = L.Input(input_param={"shape": {"dim": [batch, inputs]}})
    ns.fc = L.InnerProduct(ns.data, num_output=num_output, weight_filler={"type": "gaussian"},
                           bias_filler={"type": "gaussian"})
    path = tmp_path / "fc.prototxt"
    path.write_text("force_backward: true\n" + str(ns.to_proto()))
    return caffe.Net(str(path), caffe.TRAIN)


# Each GEMM of these has one output row or column (caffe_cpu_gemm's GEMV path):
# forward N == 1, weight gradient M == 1 with A transposed; batch 1 also M == N == 1.
@pytest.mark.parametrize("batch,num_output", [(5, 1), (1, 1), (1, 6)])
def test_inner_product_with_one_output_row_or_column_matches_numpy(caffe, tmp_path, rng, batch,
                                                                     num_output):
    net = inner_product_net(caffe, tmp_path, batch, 37, num_output)
    x = rng.standard_normal((batch, 37)).astype(np.float32)
    w = net.params["fc"][0].data.astype(np.float64)
    b = net.params["fc"][1].data.astype(np.float64)
    net.blobs["data"].data[...] = x
    net.forward()
    np.testing.assert_allclose(net.blobs["fc"].data, x @ w.T + b, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((batch, num_output))
    net.clear_param_diffs()
    net.blobs["fc"].diff[...] = dy
    net.backward()
    np.testing.assert_allclose(net.params["fc"][0].diff, dy.T @ x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.params["fc"][1].diff, dy.sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.blobs["data"].diff, dy @ w, rtol=1e-5, atol=1e-5)


def prelu_net(caffe, tmp_path, shape, in_place, channel_shared):
    from caffe import layers as L
    ns = caffe.NetSpec()
    ns.data = L.Input(input_param={"shape": {"dim": list(shape)}})
    ns.scaled = L.Scale(ns.data, bias_term=False, filler={"type": "constant", "value": 1},
                        param={"lr_mult": 0})
    ns.prelu = L.PReLU(ns.scaled, channel_shared=channel_shared, in_place=in_place,
                       filler={"type": "uniform", "min": 0.05, "max": 0.5})
    path = tmp_path / "prelu.prototxt"
    path.write_text("force_backward: true\n" + str(ns.to_proto()))
    return caffe.Net(str(path), caffe.TRAIN)


@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (6, 5)], ids=["conv-map", "fc-output"])
@pytest.mark.parametrize("in_place", [False, True], ids=["separate", "in-place"])
@pytest.mark.parametrize("channel_shared", [False, True], ids=["per-channel", "shared"])
def test_prelu_matches_numpy_forward_and_gradients(caffe, tmp_path, rng, shape, in_place,
                                                   channel_shared):
    net = prelu_net(caffe, tmp_path, shape, in_place, channel_shared)
    top = "scaled" if in_place else "prelu"
    x = rng.standard_normal(shape).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.forward()
    slopes = net.params["prelu"][0].data.astype(np.float64).reshape(-1)
    a = np.full(shape[1], slopes[0]) if channel_shared else slopes
    a = a.reshape((1, -1) + (1,) * (len(shape) - 2))
    np.testing.assert_allclose(net.blobs[top].data, np.where(x > 0, x, a * x), rtol=1e-6)

    dy = rng.standard_normal(shape)
    net.clear_param_diffs()
    net.blobs[top].diff[...] = dy
    net.backward()
    np.testing.assert_allclose(net.blobs["data"].diff, np.where(x > 0, dy, a * dy),
                               rtol=1e-5, atol=1e-6)
    per_channel = np.where(x > 0, 0.0, x * dy).sum(axis=tuple(i for i in range(len(shape))
                                                              if i != 1))
    expected = per_channel.sum() if channel_shared else per_channel
    np.testing.assert_allclose(net.params["prelu"][0].diff, expected, rtol=1e-4, atol=1e-5)
