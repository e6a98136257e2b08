"""MaskedInnerProduct: an inner product with connection pruning (the paper's "c.p.", Han et al. 2015)."""
import numpy as np

from caffe_layers import functional
from caffe_layers.params import Param, check_counts, check_finite, parse_params, reshape_inner_product
from runtime.caffe_env import import_caffe

caffe = import_caffe()

SCHEMA = {
    "num_output": Param("int", allowed="a positive integer", valid=lambda v: v > 0),
    "prune_ratio": Param("float", 0.3, "a number in [0, 1)", lambda v: 0 <= v < 1),
    "penalty": Param("str", "l2", '"l1", "l2" or "none"', lambda v: v in ("l1", "l2", "none")),
    "penalty_weight": Param("float", 1e-5, "a non-negative number", lambda v: v >= 0),
    "bias_term": Param("bool", True, "true or false"),
    "weight_filler": Param("str", "xavier", '"xavier" or "gaussian"',
                           lambda v: v in ("xavier", "gaussian")),
    "weight_filler_std": Param("float", 0.01, "a positive number", lambda v: v > 0),
    "bias_filler_value": Param("float", 0.0, "a number"),
    "seed": Param("int", 0, "an integer seed for the weight filler"),
}


class MaskedInnerProduct(caffe.Layer):
    """y = x W^T + b with a fixed binary mask on W and an L1/L2 penalty on the kept weights.

    Blobs are Caffe InnerProduct's: blobs[0] = W (num_output, K), blobs[1] = b
    (num_output,), so a trained InnerProduct's weights load into it by layer
    name (``caffe train -weights``). Bottom: N×... (flattened to N×K as
    InnerProduct's axis 1); top: N×num_output.

    The mask is not a blob (Caffe's weight loading checks the blob count): at
    the first forward, after any weights were loaded, the round(prune_ratio *
    size) smallest-|w| weights are set to exactly 0 and masked; the mask is
    fixed from then on. Their diffs are always 0 and SGD, momentum and weight
    decay keep a zero weight at zero, so a saved model holds exact zeros in
    the pruned places, and the magnitude ranking of a reloaded model (zeros
    first, ties broken by position) gives back the same mask.

    param_str (JSON):
      "num_output": required.
      "prune_ratio": share of W pruned (default 0.3, the paper's 30 %).
      "penalty": "l2" (default: gradient W, i.e. 0.5 ||W||^2), "l1" (sign(W))
        or "none"; added to W's diff in backward, masked, NOT scaled by any
        loss weight (like Caffe's weight decay, which also still applies).
      "penalty_weight": its coefficient (default 1e-5, the paper's).
      "bias_term": default true; false gives one blob (then a pretrained
        InnerProduct with a bias no longer loads into it).
      "weight_filler": "xavier" (default; Caffe's, U(+-sqrt(3/K))) or
        "gaussian" with std "weight_filler_std" (default 0.01);
        "bias_filler_value": constant bias (default 0); "seed" (default 0).
        Fillers only matter when no weights are loaded.
      "name": the prototxt layer name, for error messages (optional).
    """

    def setup(self, bottom, top):
        self.params = parse_params(self, SCHEMA)
        check_counts(self, bottom, top, bottoms=1)
        self.mask = None  # set at the first forward, fixed afterwards
        self._scratch = None  # W-sized buffer reused by every backward
        num = bottom[0].data.shape[0]
        shape = (self.params.num_output, bottom[0].count // num)
        rng = np.random.default_rng(self.params.seed)
        self.blobs.add_blob(*shape)
        if self.params.weight_filler == "xavier":
            self.blobs[0].data[...] = functional.xavier_uniform(shape, rng)
        else:
            self.blobs[0].data[...] = rng.normal(0.0, self.params.weight_filler_std, size=shape)
        if self.params.bias_term:
            self.blobs.add_blob(self.params.num_output)
            self.blobs[1].data[...] = self.params.bias_filler_value

    def reshape(self, bottom, top):
        reshape_inner_product(self, bottom, top, self.params.num_output)

    def _prune(self):
        weights = self.blobs[0].data
        self.mask = functional.magnitude_mask(weights, self.params.prune_ratio)
        weights[~self.mask] = 0.0

    def forward(self, bottom, top):
        if self.mask is None:
            self._prune()
        inputs = bottom[0].data.reshape(bottom[0].data.shape[0], -1)
        check_finite(self, "bottom[0]", inputs)
        output = top[0].data
        np.matmul(inputs, self.blobs[0].data.T, out=output)  # pruned weights are exactly 0
        if self.params.bias_term:
            output += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        top_diff = top[0].diff
        weights = self.blobs[0].data
        if propagate_down[0]:
            np.matmul(top_diff, weights, out=bottom[0].diff.reshape(top_diff.shape[0], -1))
        if self._scratch is None or self._scratch.shape != weights.shape:
            self._scratch = np.empty_like(weights)
        functional.accumulate_weight_gradient(
            self.blobs[0].diff, top_diff, bottom[0].data.reshape(top_diff.shape[0], -1), weights,
            self.mask, self.params.penalty, self.params.penalty_weight, self._scratch)
        if self.params.bias_term:
            self.blobs[1].diff[...] += top_diff.sum(axis=0)
