"""FeatureSparsenessLoss: the paper's feature-sparseness loss (Eq. 4, 5, 7) as a Caffe layer."""
from caffe_layers import functional
from caffe_layers.params import (LayerInputError, LayerParamError, Param, blob_list,
                                 check_counts, check_finite, describe, parse_params)
from runtime.caffe_env import import_caffe

caffe = import_caffe()

SCHEMA = {
    "p": Param("int", 2, "1 or 2", lambda v: v in (1, 2)),
    "coefficients": Param("float_list", None, "a list of non-negative numbers, one per bottom",
                          lambda v: all(c >= 0 for c in v)),
    "normalize": Param("str", "batch", '"batch" or "none"', lambda v: v in ("batch", "none")),
}


class FeatureSparsenessLoss(caffe.Layer):
    """L = sum_b coefficients[b] * (1/p) * sum_i ||b_i||_p^p  [/ N], one scalar top.

    Bottoms: one or more feature blobs of any shape N×... with the same N
    (z = FC1 input and/or x = FC2 input, or every hidden layer's output).
    param_str (JSON):
      "p": 1 or 2 (default 2).
      "coefficients": one relative weight per bottom (default all 1.0), e.g.
        1/#layers per bottom for the paper's ^{H,D} variants.
      "normalize": "batch" (default) divides by N, as Caffe's SoftmaxWithLoss
        does, i.e. the paper's Eq. 2 form; "none" gives Eq. 4's plain sum.
      "name": the prototxt layer name, for error messages (optional).
    The paper's lambda is Caffe's ``loss_weight`` on the top (a Python layer's
    top has loss weight 0 unless set). Backward is Eq. 7: coefficient * z
    (p = 2) or coefficient * sign(z) (p = 1, 0 at 0), times the top diff (the
    loss weight), divided by N for "batch".
    """

    def setup(self, bottom, top):
        self.params = parse_params(self, SCHEMA)
        check_counts(self, bottom, top, bottoms=(1, None))
        coefficients = self.params.coefficients
        if coefficients is None:
            coefficients = [1.0] * len(bottom)
        if len(coefficients) != len(bottom):
            raise LayerParamError(f"{describe(self)}: key 'coefficients' has {len(coefficients)} "
                                  f"entries but the layer has {len(bottom)} bottoms; give one each")
        self.coefficients = coefficients

    def reshape(self, bottom, top):
        sizes = [blob.data.shape[0] for blob in blob_list(bottom)]
        if len(set(sizes)) != 1:
            raise LayerInputError(f"{describe(self)}: bottoms have different batch sizes {sizes}")
        top[0].reshape(1)

    def _normalizer(self, bottom):
        return bottom[0].data.shape[0] if self.params.normalize == "batch" else 1

    def forward(self, bottom, top):
        total = 0.0
        for index, (blob, coefficient) in enumerate(zip(blob_list(bottom), self.coefficients)):
            check_finite(self, f"bottom[{index}]", blob.data)
            total += coefficient * functional.sparseness_penalty(blob.data, self.params.p)
        top[0].data[0] = total / self._normalizer(bottom)

    def backward(self, top, propagate_down, bottom):
        scale = top[0].diff[0] / self._normalizer(bottom)
        for blob, coefficient, down in zip(blob_list(bottom), self.coefficients, propagate_down):
            if down:
                functional.sparseness_gradient(blob.data, self.params.p, scale * coefficient,
                                               out=blob.diff)
