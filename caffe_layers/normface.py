"""NormalizedInnerProduct: NormFace's classifier (Wang et al., ACM MM 2017), the cosine of x and each class."""
import numpy as np

from caffe_layers import functional
from caffe_layers.params import Param, check_counts, check_finite, parse_params, reshape_inner_product
from runtime.caffe_env import import_caffe

caffe = import_caffe()

SCHEMA = {
    "num_output": Param("int", allowed="a positive integer", valid=lambda v: v > 0),
    "eps": Param("float", 1e-12, "a non-negative number", lambda v: v >= 0),
    "seed": Param("int", 0, "an integer seed for the xavier weight filler"),
}


class NormalizedInnerProduct(caffe.Layer):
    """y = x Wn^T with Wn_j = W_j / sqrt(||W_j||^2 + eps): every class's weights on the unit sphere.

    With an L2Normalize layer (learned alpha) in front, y_ij = s cos(x_i, W_j): NormFace's
    normalised softmax, features and classifier weights both normalised, the scale s learned.
    Blobs: blobs[0] = W (num_output, K), xavier-filled, no bias (a bias would undo the
    normalisation). Bottom: N×... (flattened to N×K); top: N×num_output.
    param_str (JSON):
      "num_output": required.
      "eps": added to ||W_j||^2 under the square root (default 1e-12).
      "seed": the xavier filler's seed (default 0).
      "name": the prototxt layer name, for error messages (optional).
    Backward: dL/dx = g Wn; dL/dW_j = (G_j - Wn_j (Wn_j . G_j)) / r_j with G = g^T x
    (accumulated, +=, so iter_size works).
    """

    def setup(self, bottom, top):
        self.params = parse_params(self, SCHEMA)
        check_counts(self, bottom, top, bottoms=1)
        num = bottom[0].data.shape[0]
        shape = (self.params.num_output, bottom[0].count // num)
        self.blobs.add_blob(*shape)
        self.blobs[0].data[...] = functional.xavier_uniform(shape, np.random.default_rng(self.params.seed))
        self._unit = self._norms = None  # kept from forward for backward

    def reshape(self, bottom, top):
        reshape_inner_product(self, bottom, top, self.params.num_output)

    def forward(self, bottom, top):
        inputs = bottom[0].data.reshape(bottom[0].data.shape[0], -1)
        check_finite(self, "bottom[0]", inputs)
        self._unit, self._norms = functional.normalized_rows(self.blobs[0].data, self.params.eps)
        np.matmul(inputs, self._unit.T, out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        inputs = bottom[0].data.reshape(bottom[0].data.shape[0], -1)
        bottom_diff, weight_diff = functional.normalized_inner_product_backward(
            inputs, self._unit, self._norms, top[0].diff)
        if propagate_down[0]:
            bottom[0].diff[...] = bottom_diff.reshape(bottom[0].diff.shape)
        self.blobs[0].diff[...] += weight_diff
