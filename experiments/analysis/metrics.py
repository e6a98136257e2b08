"""Evaluation metrics, every one derived from a confusion matrix or saved scores.

- accuracy, per-class sensitivity (true positive rate) and specificity (true
  negative rate), each class one-vs-rest, averaged over classes as the paper's
  Table 4 does;
- one-vs-rest ROC curves from the softmax scores and their AUC, averaged over
  classes as in the paper's Fig. 8 (the mean ROC is the mean of the per-class
  TPRs on a common FPR grid);
- each class's ROC balance point, where sensitivity equals specificity, the
  paper's reading of Table 4 ("the balance points ... on the ROC curve",
  Section 3.3), averaged over classes. The arg-max one-vs-rest figures above
  are kept beside it: they are one operating point, not the balance point.

Plain numpy; no Caffe.
"""
import numpy as np


def confusion_matrix(labels, predictions, num_classes):
    """Counts, rows = true class, columns = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {values.min()}..{values.max()}")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def accuracy(cm):
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def one_vs_rest_counts(cm):
    """Per class: true positives, false negatives, false positives, true negatives."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    return tp, fn, fp, tn


def sensitivity_specificity(cm):
    """Per-class sensitivity TP/(TP+FN) and specificity TN/(TN+FP) (NaN for an empty class)."""
    tp, fn, fp, tn = one_vs_rest_counts(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fn), tn / (tn + fp)


def normalized_confusion(cm):
    """Row-normalised confusion in percent (the layout of the paper's Tables 13 and 14)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, 100.0 * cm / rows, 0.0)


def roc_curve(scores, positives):
    """ROC of one binary problem: (fpr, tpr), thresholds at every distinct score.

    Starts at (0, 0) and ends at (1, 1); tied scores move both rates at once.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("an ROC curve needs both positive and negative samples")
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tps = np.cumsum(positives)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def auc(fpr, tpr):
    """Area under a piecewise-linear curve (trapezoids)."""
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def roc_balance_point(fpr, tpr):
    """The point of an ROC curve where sensitivity (TPR) equals specificity (1 - FPR).

    The curve is taken as piecewise linear between its points (as for the AUC).
    Along it TPR + FPR grows strictly from 0 at (0, 0) to 2 at (1, 1), so it
    crosses 1 exactly once; the crossing is interpolated linearly inside its
    segment and the common value of sensitivity and specificity returned.
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    gap = tpr + fpr - 1.0  # sensitivity - specificity
    if gap.size < 2 or gap[0] > 0 or gap[-1] < 0:
        raise ValueError("an ROC curve must run from (0, 0) to (1, 1)")
    end = int(np.argmax(gap >= 0))
    if gap[end] == 0:
        return float(tpr[end])
    start = end - 1
    t = -gap[start] / (gap[end] - gap[start])
    return float(tpr[start] + t * (tpr[end] - tpr[start]))


def balance_points(probabilities, labels):
    """Per-class ROC balance points (None for a class with no positive or no negative sample)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    points = []
    for k in range(probabilities.shape[1]):
        positives = labels == k
        if positives.all() or not positives.any():
            points.append(None)
            continue
        points.append(roc_balance_point(*roc_curve(probabilities[:, k], positives)))
    return points


def mean_roc(probabilities, labels, grid_points=201):
    """One-vs-rest ROC per class from softmax scores, and their mean.

    Returns dict: ``fpr_grid``, ``mean_tpr`` (mean over classes of each class's
    TPR interpolated on the grid), ``per_class`` [(fpr, tpr, auc) or None for a
    class with no positive or no negative sample], ``mean_auc`` (mean of the
    per-class AUCs).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    grid = np.linspace(0.0, 1.0, grid_points)
    per_class, tprs, aucs = [], [], []
    for k in range(probabilities.shape[1]):
        positives = labels == k
        if positives.all() or not positives.any():
            per_class.append(None)
            continue
        fpr, tpr = roc_curve(probabilities[:, k], positives)
        area = auc(fpr, tpr)
        per_class.append((fpr, tpr, area))
        # Vertical steps: keep the highest TPR reached at each FPR (the last point).
        keep = np.r_[np.diff(fpr) > 0, True]
        tprs.append(np.interp(grid, fpr[keep], tpr[keep]))
        aucs.append(area)
    if not aucs:
        raise ValueError("no class has both positive and negative samples")
    return {"fpr_grid": grid, "mean_tpr": np.mean(tprs, axis=0), "per_class": per_class,
            "mean_auc": float(np.mean(aucs))}


def summary(cm, probabilities=None, labels=None):
    """The numbers the report prints, as plain Python values (JSON-ready).

    ``mean_sensitivity``/``mean_specificity`` (and their per-class lists) are
    the arg-max one-vs-rest figures of the confusion matrix. With scores,
    ``balance_sensitivity`` and ``balance_specificity`` are the class mean of
    the ROC balance points (the paper's Table 4 measure; equal by
    construction) and ``balance_point_per_class`` the per-class values.
    """
    sens, spec = sensitivity_specificity(cm)
    result = {
        "accuracy": accuracy(cm),
        "sensitivity_per_class": [None if np.isnan(v) else float(v) for v in sens],
        "specificity_per_class": [None if np.isnan(v) else float(v) for v in spec],
        "mean_sensitivity": float(np.nanmean(sens)),
        "mean_specificity": float(np.nanmean(spec)),
        "confusion": np.asarray(cm).astype(int).tolist(),
    }
    if probabilities is not None:
        roc = mean_roc(probabilities, labels)
        result["mean_auc"] = roc["mean_auc"]
        result["auc_per_class"] = [None if c is None else c[2] for c in roc["per_class"]]
        points = balance_points(probabilities, labels)
        balance = float(np.mean([p for p in points if p is not None]))
        result["balance_sensitivity"] = balance
        result["balance_specificity"] = balance
        result["balance_point_per_class"] = points
    return result


def decide_units(units, labels, probabilities):
    """One decision per unit: the mean of its images' probabilities (each already the mean
    over the image's crops), then the arg-max.

    units: one unit name per image; labels (N,); probabilities (N, K). Returns
    (unit names sorted, labels (U,), mean probabilities (U, K), predictions (U,)).
    A unit whose images carry different labels is an error: a unit is one expression.
    """
    units = np.asarray(units)
    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not len(units) == len(labels) == len(probabilities):
        raise ValueError(f"{len(units)} units, {len(labels)} labels and {len(probabilities)} "
                         "probability rows: give one of each per image")
    names, inverse = np.unique(units, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names))
    sums = np.zeros((len(names), probabilities.shape[1]))
    np.add.at(sums, inverse, probabilities)
    unit_labels = np.full(len(names), -1, dtype=np.int64)
    unit_labels[inverse] = labels
    mixed = unit_labels[inverse] != labels
    if mixed.any():
        raise ValueError(f"unit {names[inverse[np.argmax(mixed)]]} holds images of different labels")
    means = sums / counts[:, None]
    return names.tolist(), unit_labels, means, means.argmax(axis=1)
