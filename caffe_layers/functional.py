"""The maths of the project's Caffe layers, in plain numpy (no caffe import).

Shapes: features are (N, D) arrays (the layers flatten N×D×1×1 blobs), labels
are int arrays of length N. Sums are accumulated in float64; gradients keep
the input dtype (float32 inside Caffe).
"""
import numpy as np


# --- feature sparseness (paper Eq. 4 and 7) --------------------------------

def sparseness_penalty(features, p):
    """(1/p) * sum over every element of |z|^p: Eq. 4 summed over the samples."""
    flat = features.reshape(-1)
    if p == 2:  # einsum casts to float64 chunk by chunk: exact sums without a float64 copy
        return 0.5 * float(np.einsum("i,i->", flat, flat, dtype=np.float64))
    if p == 1:
        return float(np.abs(flat).sum(dtype=np.float64))
    raise ValueError(f"p must be 1 or 2, got {p!r}")


def sparseness_gradient(features, p, scale=1.0, out=None):
    """scale * d/dz of sparseness_penalty, Eq. 7: scale * z (p = 2) or scale * sign(z) (p = 1).

    Written into ``out`` (e.g. the bottom blob's diff) when given.
    """
    if p == 2:
        return np.multiply(features, scale, out=out)
    if p == 1:
        out = sign(features, out=out)
        out *= scale
        return out
    raise ValueError(f"p must be 1 or 2, got {p!r}")


def sign(values, out=None):
    """np.sign of a float array (0 at 0), without np.sign's slow non-vectorised loop (numpy < 2)."""
    out = np.copysign(values.dtype.type(1), values, out=out)
    np.multiply(out, values != 0, out=out)
    return out


# --- center loss (Wen et al., ECCV 2016) ------------------------------------

def center_residuals(features, labels, centers):
    """x_i - c_{y_i}, shape (N, D)."""
    return features - centers[labels]


def center_loss(residuals):
    """(1 / 2N) * sum_i ||x_i - c_{y_i}||^2."""
    flat = np.asarray(residuals, dtype=np.float64).reshape(-1)
    return 0.5 * float(flat @ flat) / residuals.shape[0]


def center_updates(residuals, labels, num_classes):
    """Wen et al.'s center step Δc_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j), shape (num_classes, D).

    Rows of classes absent from the batch are 0. This is the published update
    rule, not the gradient of center_loss (which would divide by N instead).
    """
    updates = np.zeros((num_classes, residuals.shape[1]), dtype=residuals.dtype)
    # Sort once and sum runs of equal labels: one vectorised pass whatever
    # num_classes is (np.add.at is unbuffered and slow before numpy 1.25).
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    counts = np.diff(np.r_[starts, len(labels)])
    sums = np.add.reduceat(residuals[order], starts, axis=0)
    updates[sorted_labels[starts]] = -sums / (1.0 + counts)[:, np.newaxis]
    return updates


# --- L2 normalisation (paper Eq. 3; NormFace / L2-constrained softmax) -----

def l2_normalize(features, alpha, eps):
    """y_i = alpha * x_i / sqrt(||x_i||^2 + eps); returns (y, 1 / sqrt(||x_i||^2 + eps) as (N, 1))."""
    squared = np.einsum("nd,nd->n", features, features, dtype=np.float64)
    inv_norm = (1.0 / np.sqrt(squared + eps))[:, np.newaxis].astype(features.dtype)
    return alpha * features * inv_norm, inv_norm


def l2_normalize_backward(features, inv_norm, alpha, top_diff):
    """Gradients of l2_normalize: (dL/dx (N, D), dL/dalpha scalar).

    With u = x / s, s = sqrt(||x||^2 + eps): dL/dx = alpha / s * (g - u (u . g)),
    dL/dalpha = sum g . u.
    """
    unit = features * inv_norm
    along = np.einsum("nd,nd->n", unit, top_diff)[:, np.newaxis]
    bottom_diff = (alpha * inv_norm) * (top_diff - unit * along)
    alpha_diff = float(np.einsum("nd,nd->", top_diff, unit, dtype=np.float64))
    return bottom_diff, alpha_diff


# --- connection pruning (Han et al. 2015, the paper's "c.p.") --------------

def magnitude_mask(weights, prune_ratio):
    """Boolean keep-mask that removes the round(prune_ratio * size) smallest-|w| weights.

    Ties are broken by position (stable sort), so the mask is a deterministic
    function of the weights; once pruned weights are exactly 0 they are the
    smallest, which is why the same mask comes back after save and reload.
    """
    pruned = int(round(prune_ratio * weights.size))
    keep = np.ones(weights.size, dtype=bool)
    if pruned:
        order = np.argsort(np.abs(weights).reshape(-1), kind="stable")
        keep[order[:pruned]] = False
    return keep.reshape(weights.shape)


def accumulate_weight_gradient(weight_diff, top_diff, inputs, weights, keep, penalty,
                               penalty_weight, scratch):
    """weight_diff += keep * (top_diff^T inputs) + penalty_weight * d(penalty)/dW, in place.

    The penalty is 0.5 * ||W||^2 ("l2", gradient W), ||W||_1 ("l1", sign(W))
    or "none". Its gradient needs no mask: pruned weights are exactly 0, where
    W and sign(W) are 0. ``scratch`` (W's shape and dtype) is reused so that
    no W-sized temporaries are allocated per call (W is 18432×512 for the
    ResNet's FC1, 4096×4096 for VGG's).
    """
    np.matmul(top_diff.T, inputs, out=scratch)
    np.multiply(scratch, keep, out=scratch)
    weight_diff += scratch
    if penalty == "none":
        return
    if penalty == "l2":
        np.multiply(weights, penalty_weight, out=scratch)
    elif penalty == "l1":
        sign(weights, out=scratch)
        scratch *= penalty_weight
    else:
        raise ValueError(f"penalty must be 'l1', 'l2' or 'none', got {penalty!r}")
    weight_diff += scratch


def xavier_uniform(shape, rng):
    """Caffe's "xavier" filler (variance_norm FAN_IN): U(-a, a), a = sqrt(3 / fan_in)."""
    fan_in = int(np.prod(shape[1:]))
    scale = np.sqrt(3.0 / fan_in)
    return rng.uniform(-scale, scale, size=shape)


# --- NormFace's classifier (Wang et al. 2017): cosine of x and each class's weights --------

def normalized_rows(weights, eps):
    """(W_j / r_j, r_j as (K, 1)) with r_j = sqrt(||W_j||^2 + eps)."""
    norms = np.sqrt(np.einsum("kd,kd->k", weights, weights, dtype=np.float64) + eps)[:, np.newaxis]
    return (weights / norms).astype(weights.dtype), norms.astype(weights.dtype)


def normalized_inner_product_backward(inputs, unit_weights, norms, top_diff):
    """Gradients of y = x Wn^T, Wn_j = W_j / r_j: (dL/dx (N, D), dL/dW (K, D)).

    dL/dx = g Wn; with G = g^T x (the gradient w.r.t. Wn), dL/dW_j = (G_j - Wn_j (Wn_j . G_j)) / r_j.
    """
    bottom_diff = top_diff @ unit_weights
    along_rows = top_diff.T @ inputs
    radial = np.einsum("kd,kd->k", unit_weights, along_rows)[:, np.newaxis]
    weight_diff = (along_rows - unit_weights * radial) / norms
    return bottom_diff, weight_diff
