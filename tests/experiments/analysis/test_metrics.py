"""Metrics against independent formulas on known confusion matrices and scores."""
import itertools

import numpy as np
import pytest

from experiments.analysis import metrics
from experiments.running.caffe_log import parse_caffe_log


def test_confusion_matrix_counts_each_pair():
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert (metrics.confusion_matrix(labels, predictions, 3) == expected).all()


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError, match="labels must lie in"):
        metrics.confusion_matrix([0, 3], [0, 1], 3)


def test_accuracy_sensitivity_specificity_on_known_matrix():
    cm = np.array([[5, 1, 0],
                   [2, 6, 2],
                   [0, 0, 4]])
    assert metrics.accuracy(cm) == pytest.approx(15 / 20)
    sens, spec = metrics.sensitivity_specificity(cm)
    # by hand: class 0: TP 5, FN 1, FP 2, TN 12; class 1: TP 6, FN 4, FP 1, TN 9;
    # class 2: TP 4, FN 0, FP 2, TN 14
    assert sens == pytest.approx([5 / 6, 6 / 10, 4 / 4])
    assert spec == pytest.approx([12 / 14, 9 / 10, 14 / 16])
    s = metrics.summary(cm)
    assert s["mean_sensitivity"] == pytest.approx(np.mean([5 / 6, 0.6, 1.0]))
    assert s["mean_specificity"] == pytest.approx(np.mean([12 / 14, 0.9, 14 / 16]))


def test_sensitivity_is_nan_for_an_absent_class_and_ignored_in_the_mean():
    cm = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    sens, _ = metrics.sensitivity_specificity(cm)
    assert np.isnan(sens[2])
    assert metrics.summary(cm)["mean_sensitivity"] == pytest.approx((0.75 + 1.0) / 2)


def test_normalized_confusion_rows_sum_to_100():
    cm = np.array([[1, 3], [0, 0]])
    assert metrics.normalized_confusion(cm).tolist() == [[25.0, 75.0], [0.0, 0.0]]


def mann_whitney_auc(scores, positives):
    """P(score of a positive > score of a negative), ties counting 1/2."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_equals_mann_whitney(rng, ties):
    scores = rng.random(200)
    if ties:
        scores = np.round(scores, 1)
    positives = rng.random(200) < scores  # informative but imperfect
    fpr, tpr = metrics.roc_curve(scores, positives)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert metrics.auc(fpr, tpr) == pytest.approx(mann_whitney_auc(scores, positives))


def test_perfect_and_reversed_scores():
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    positives = np.array([1, 1, 0, 0], bool)
    assert metrics.auc(*metrics.roc_curve(scores, positives)) == 1.0
    assert metrics.auc(*metrics.roc_curve(-scores, positives)) == 0.0


def test_mean_roc_averages_per_class_aucs(rng):
    labels = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    roc = metrics.mean_roc(probs, labels)
    expected = [mann_whitney_auc(probs[:, k], labels == k) for k in range(4)]
    assert roc["mean_auc"] == pytest.approx(np.mean(expected))
    # The mean curve's area approximates the mean AUC (grid interpolation).
    assert metrics.auc(roc["fpr_grid"], roc["mean_tpr"]) == pytest.approx(np.mean(expected), abs=0.01)


def test_parse_caffe_log_reads_losses_rates_and_tests():
    log = "\n".join([
        "I1127 21:00:00.1 123 solver.cpp:330] Iteration 0, Testing net (#0)",
        "I1127 21:00:00.2 123 solver.cpp:397]     Test net output #0: accuracy = 0.125",
        "I1127 21:00:00.2 123 solver.cpp:397]     Test net output #1: loss = 1.95 (* 1 = 1.95 loss)",
        "I1127 21:00:00.3 123 solver.cpp:218] Iteration 0 (0 iter/s, 0.5s/10 iters), loss = 2.1",
        "I1127 21:00:00.3 123 sgd_solver.cpp:105] Iteration 0, lr = 0.01",
        "I1127 21:00:01.3 123 solver.cpp:218] Iteration 10 (9.9 iter/s, 1.01s/10 iters), loss = 1.5e-01",
    ])
    parsed = parse_caffe_log(log)
    assert parsed["train"] == [(0, 2.1), (10, 0.15)]
    assert parsed["lr"] == [(0, 0.01)]
    assert parsed["test"] == [(0, {"accuracy": 0.125, "loss": 1.95})]


def test_balance_point_of_separable_scores_is_one():
    # ROC (0,0) -> (0,1) -> (1,1): the crossing of TPR = 1 - FPR is the corner.
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    positives = np.array([1, 1, 0, 0], bool)
    assert metrics.roc_balance_point(*metrics.roc_curve(scores, positives)) == 1.0


def test_balance_point_on_a_curve_point():
    # Ranked P N P N: ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1); (.5,.5) lies on TPR = 1 - FPR.
    scores = np.array([0.9, 0.6, 0.4, 0.1])
    positives = np.array([1, 0, 1, 0], bool)
    assert metrics.roc_balance_point(*metrics.roc_curve(scores, positives)) == pytest.approx(0.5)


def test_balance_point_interpolated_inside_a_segment():
    # Ranked P P N P N N N: ROC (0,0) (0,1/3) (0,2/3) (1/4,2/3) (1/4,1) ... The segment
    # (0,2/3)-(1/4,2/3) has TPR + FPR from 2/3 to 11/12, the next (1/4,2/3)-(1/4,1)
    # from 11/12 to 5/4: crossing at FPR 1/4, TPR 3/4 -> balance 0.75.
    scores = np.array([7, 6, 5, 4, 3, 2, 1], float)
    positives = np.array([1, 1, 0, 1, 0, 0, 0], bool)
    assert metrics.roc_balance_point(*metrics.roc_curve(scores, positives)) == pytest.approx(0.75)
    # A crossing strictly inside a diagonal segment: positive and negative tied.
    # Scores P .9, {P, N} .5, N .1: ROC (0,0) (0,.5) (.5,1) (1,1); on the tied segment
    # TPR + FPR goes .5 -> 1.5, crossing halfway at (.25, .75).
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    positives = np.array([1, 1, 0, 0], bool)
    assert metrics.roc_balance_point(*metrics.roc_curve(scores, positives)) == pytest.approx(0.75)


def test_balance_point_of_all_tied_scores_is_one_half():
    scores = np.full(6, 0.3)
    positives = np.array([1, 1, 0, 0, 0, 0], bool)
    assert metrics.roc_balance_point(*metrics.roc_curve(scores, positives)) == pytest.approx(0.5)


def test_balance_point_is_where_sensitivity_equals_specificity(rng):
    scores = np.round(rng.random(300), 2)
    positives = rng.random(300) < scores
    fpr, tpr = metrics.roc_curve(scores, positives)
    value = metrics.roc_balance_point(fpr, tpr)
    # Independent check: (FPR, TPR) = (1 - value, value) lies on one of the curve's segments.
    x, y = 1.0 - value, value
    on_segment = [
        min(fpr[i], fpr[i + 1]) - 1e-12 <= x <= max(fpr[i], fpr[i + 1]) + 1e-12
        and min(tpr[i], tpr[i + 1]) - 1e-12 <= y <= max(tpr[i], tpr[i + 1]) + 1e-12
        and abs((fpr[i + 1] - fpr[i]) * (y - tpr[i]) - (tpr[i + 1] - tpr[i]) * (x - fpr[i])) < 1e-12
        for i in range(fpr.size - 1)]
    assert any(on_segment)
    assert 0.5 < value < 1.0  # informative, imperfect scores


def test_summary_balance_point_differs_from_arg_max_figures():
    # Three classes; class 2's scores rank its samples well but are never the arg-max,
    # so its arg-max sensitivity is 0 while its ROC balance point is 1.
    probabilities = np.array([[0.6, 0.1, 0.3],
                              [0.5, 0.3, 0.2],
                              [0.2, 0.7, 0.1],
                              [0.3, 0.6, 0.1],
                              [0.5, 0.1, 0.4],
                              [0.1, 0.55, 0.35]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    cm = metrics.confusion_matrix(labels, probabilities.argmax(1), 3)
    s = metrics.summary(cm, probabilities, labels)
    # By hand: class 0 scores P .6 .5 vs N .2 .3 .5 .1 -> ROC (0,0) (0,.5) (.25,1) (1,1),
    # the tie at .5 crossing at (1/6, 5/6); class 1 P .7 .6 vs N .1 .3 .1 .55 separable -> 1;
    # class 2 P .4 .35 vs N .3 .2 .1 .1 separable -> 1.
    assert s["balance_point_per_class"] == pytest.approx([5 / 6, 1.0, 1.0])
    assert s["balance_sensitivity"] == s["balance_specificity"] == pytest.approx((5 / 6 + 2) / 3)
    # Arg-max: predictions 0 0 1 1 0 1 -> class 2 never predicted.
    assert s["sensitivity_per_class"] == pytest.approx([1.0, 1.0, 0.0])
    assert s["mean_sensitivity"] == pytest.approx(2 / 3)
    assert s["mean_sensitivity"] != pytest.approx(s["balance_sensitivity"])
    assert "balance_sensitivity" not in metrics.summary(cm)


def test_decide_units_averages_each_units_images_then_takes_the_arg_max():
    units = ["s1|3", "s2|6", "s1|3", "s1|3", "s2|6"]
    labels = [3, 6, 3, 3, 6]
    probabilities = [[0.1, 0.9], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3], [0.3, 0.7]]
    names, unit_labels, means, decisions = metrics.decide_units(units, labels, probabilities)
    assert names == ["s1|3", "s2|6"]
    assert unit_labels.tolist() == [3, 6]
    np.testing.assert_allclose(means, [[1.6 / 3, 1.4 / 3], [0.45, 0.55]])
    assert decisions.tolist() == [0, 1]      # frame 1 alone would say class 1; the unit says 0


def test_decide_units_refuses_a_unit_of_two_labels_and_ragged_input():
    with pytest.raises(ValueError, match="unit a holds images of different labels"):
        metrics.decide_units(["a", "a"], [1, 2], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="one of each per image"):
        metrics.decide_units(["a"], [1, 2], [[0.5, 0.5], [0.5, 0.5]])
