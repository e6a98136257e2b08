"""L2Normalize: the L2-norm feature regularisation baseline (paper Eq. 3; NormFace)."""
import numpy as np

from caffe_layers import functional
from caffe_layers.params import (LayerInputError, Param, check_counts, check_finite, describe,
                                 parse_params)
from runtime.caffe_env import import_caffe

caffe = import_caffe()

SCHEMA = {
    "alpha": Param("float", 1.0, "a positive number", lambda v: v > 0),
    "learn_alpha": Param("bool", False, "true or false"),
    "eps": Param("float", 1e-6, "a non-negative number", lambda v: v >= 0),
}


class L2Normalize(caffe.Layer):
    """y_i = alpha * x_i / sqrt(||x_i||_2^2 + eps): every feature rescaled to norm alpha.

    Bottom x: N×D or N×D×1×1 (normalised per sample over everything but N);
    top y: the same shape.
    param_str (JSON):
      "alpha": the target norm (default 1.0; the paper compares 2 and 0.5).
      "learn_alpha": false (default) keeps alpha fixed; true makes it
        blobs[0], shape (1,), initialised to "alpha" and learned (the paper's
        "self-adaptive" alpha), saved in the .caffemodel.
      "eps": added to ||x||^2 under the square root (default 1e-6) so that an
        all-zero feature gives y = 0 (gradient alpha / sqrt(eps) * g) instead
        of NaN; below 1e-6 relative for features with ||x|| >= 1.
      "name": the prototxt layer name, for error messages (optional).
    Backward: dL/dx = alpha / s * (g - u (u . g)) with s = sqrt(||x||^2 + eps),
    u = x / s, g = top diff; dL/dalpha = sum g . u (accumulated).
    """

    def setup(self, bottom, top):
        self.params = parse_params(self, SCHEMA)
        check_counts(self, bottom, top, bottoms=1)
        self._inv_norm = None  # kept from forward for backward
        if self.params.learn_alpha:
            self.blobs.add_blob(1)
            self.blobs[0].data[0] = self.params.alpha

    def _alpha(self):
        return float(self.blobs[0].data[0]) if self.params.learn_alpha else self.params.alpha

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
        if np.shares_memory(top[0].data, bottom[0].data):  # backward needs the input x
            raise LayerInputError(f"{describe(self)}: cannot run in place; give the top its own name")

    def forward(self, bottom, top):
        features = bottom[0].data.reshape(bottom[0].data.shape[0], -1)
        check_finite(self, "bottom[0]", features)
        output, self._inv_norm = functional.l2_normalize(features, self._alpha(), self.params.eps)
        top[0].data[...] = output.reshape(top[0].data.shape)

    def backward(self, top, propagate_down, bottom):
        features = bottom[0].data.reshape(bottom[0].data.shape[0], -1)
        top_diff = top[0].diff.reshape(features.shape)
        bottom_diff, alpha_diff = functional.l2_normalize_backward(
            features, self._inv_norm, self._alpha(), top_diff)
        if propagate_down[0]:
            bottom[0].diff[...] = bottom_diff.reshape(bottom[0].diff.shape)
        if self.params.learn_alpha:
            self.blobs[0].diff[0] += alpha_diff
