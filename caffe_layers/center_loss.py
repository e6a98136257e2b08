"""CenterLoss: Wen et al.'s center loss (ECCV 2016) with the centers as the layer's own blob."""
import numpy as np

from caffe_layers import functional
from caffe_layers.params import (LayerInputError, LayerParamError, Param, check_counts, check_finite,
                                 describe, parse_params)
from runtime.caffe_env import import_caffe

caffe = import_caffe()

CENTER_FILLERS = ("zeros", "gaussian", "xavier")

SCHEMA = {
    "num_classes": Param("int", allowed="a positive integer", valid=lambda v: v > 0),
    "center_filler": Param("str", None, '"zeros", "gaussian" or "xavier"',
                           lambda v: v in CENTER_FILLERS),
    "center_filler_std": Param("float", 0.0, "a non-negative number (0 = zeros)",
                               lambda v: v >= 0),
    "seed": Param("int", 0, "an integer seed for the gaussian or xavier center filler"),
}


class CenterLoss(caffe.Layer):
    """L = 1/(2N) * sum_i ||x_i - c_{y_i}||^2, one scalar top.

    Bottoms: features x (N×D, or N×D×1×1: flattened per sample) and labels
    (N or N×1×1×1, integers in [0, num_classes)). The centers are blobs[0],
    shape (num_classes, D), saved in the .caffemodel and restored from it.
    param_str (JSON):
      "num_classes": required.
      "center_filler": "zeros", "gaussian" (N(0, center_filler_std^2)) or
        "xavier" (Caffe's xavier filler, U(-a, a), a = sqrt(3 / D): the filler
        of Wen et al.'s released face-model configuration). Left out: "gaussian"
        when center_filler_std > 0, else "zeros".
      "center_filler_std": the gaussian's std (default 0).
      "seed": seed of the gaussian or xavier draw (default 0).
      "name": the prototxt layer name, for error messages (optional).
    Backward: dL/dx_i = top_diff * (x_i - c_{y_i}) / N; no gradient to the
    labels (their diff is set to 0). The centers' diff gets Wen et al.'s
    update Δc_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j), not scaled by the
    loss weight, 0 for classes absent from the batch, accumulated (+=) so
    iter_size works. With ``param { lr_mult: a decay_mult: 0 }`` and momentum 0
    a solver step is c_j <- c_j - base_lr * a * Δc_j: Wen's update rate is
    alpha = base_lr * a, set through lr_mult because a layer never sees the
    solver's rate (nets/: builder option center_lr_mult, default 1); solver
    momentum also applies to the centers.
    """

    def setup(self, bottom, top):
        self.params = parse_params(self, SCHEMA)
        check_counts(self, bottom, top, bottoms=2)
        count, num = bottom[0].count, bottom[0].data.shape[0]
        dim = count // num
        self._labels_now = self._residuals = None  # kept from forward for backward
        self.blobs.add_blob(self.params.num_classes, dim)
        std = self.params.center_filler_std
        filler = self.params.center_filler or ("gaussian" if std > 0 else "zeros")
        if filler == "gaussian" and std <= 0:
            raise LayerParamError(f"{describe(self)}: center_filler \"gaussian\" needs "
                                  f"center_filler_std > 0; give one or choose \"zeros\"")
        rng = np.random.default_rng(self.params.seed)
        shape = self.blobs[0].data.shape
        if filler == "gaussian":
            self.blobs[0].data[...] = rng.normal(0.0, std, size=shape)
        elif filler == "xavier":
            self.blobs[0].data[...] = functional.xavier_uniform(shape, rng)
        else:
            self.blobs[0].data[...] = 0.0

    def reshape(self, bottom, top):
        num = bottom[0].data.shape[0]
        dim = bottom[0].count // num
        if dim != self.blobs[0].data.shape[1]:
            raise LayerInputError(f"{describe(self)}: features have {dim} values per sample but the "
                                  f"centers have {self.blobs[0].data.shape[1]}")
        if bottom[1].count != num:
            raise LayerInputError(f"{describe(self)}: {num} feature rows but {bottom[1].count} "
                                  f"labels; the label blob must be N or N×1×1×1")
        top[0].reshape(1)

    def _labels(self, blob):
        values = blob.data.reshape(-1)
        check_finite(self, "bottom[1] (labels)", values)
        labels = values.astype(np.int64)
        bad = (labels != values) | (labels < 0) | (labels >= self.params.num_classes)
        if bad.any():
            raise LayerInputError(
                f"{describe(self)}: {int(bad.sum())} label(s) are not integers in "
                f"[0, {self.params.num_classes}), e.g. {values[bad][:5].tolist()}; "
                f"check num_classes against the dataset's labels")
        return labels

    def forward(self, bottom, top):
        features = bottom[0].data.reshape(bottom[0].data.shape[0], -1)
        check_finite(self, "bottom[0] (features)", features)
        self._labels_now = self._labels(bottom[1])
        self._residuals = functional.center_residuals(features, self._labels_now, self.blobs[0].data)
        top[0].data[0] = functional.center_loss(self._residuals)

    def backward(self, top, propagate_down, bottom):
        residuals = self._residuals
        if propagate_down[0]:
            scale = top[0].diff[0] / residuals.shape[0]
            bottom[0].diff[...] = (scale * residuals).reshape(bottom[0].diff.shape)
        if propagate_down[1]:  # force_backward asks even for labels: they have no gradient
            bottom[1].diff[...] = 0.0
        self.blobs[0].diff[...] += functional.center_updates(
            residuals, self._labels_now, self.params.num_classes)
