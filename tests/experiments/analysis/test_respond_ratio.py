"""RespondRatio (Eq. 13) against a direct loop-by-loop evaluation, and its face-part masks."""
import numpy as np
import pytest

from data_prep.face_template import load_template
from experiments.analysis.respond_ratio import log_terms, part_boxes, part_masks, respond_ratios


def eq13_by_loops(z, weights, bias, mask):
    """Eq. 13 for one part, summing exponentials directly (small values, no log space)."""
    numerator = denominator = 0.0
    share = mask.sum() / z.shape[1]
    for i in range(z.shape[0]):
        x = weights @ z[i] + bias
        top = np.argsort(-x, kind="stable")[: weights.shape[0] // 2]
        for j in top:
            numerator += np.exp(sum(weights[j, k] * z[i, k] for k in range(z.shape[1]) if mask[k]) + bias[j])
            denominator += np.exp(share * (weights[j] @ z[i]) + bias[j])
    return numerator / denominator


def test_log_terms_match_equation_13(rng):
    z = rng.random((7, 12))
    weights = rng.normal(scale=0.5, size=(6, 12))
    bias = rng.normal(scale=0.1, size=6)
    masks = {"a": rng.random(12) < 0.3, "b": rng.random(12) < 0.6}
    terms = log_terms(z, weights, bias, masks)
    ratios = respond_ratios({"fear": {part: ([num], [den]) for part, (num, den) in terms.items()}})
    for part, mask in masks.items():
        assert ratios["fear"][part] == pytest.approx(eq13_by_loops(z, weights, bias, mask), rel=1e-9)


def test_a_part_that_is_the_whole_map_has_ratio_one(rng):
    z = rng.random((5, 9))
    weights, bias = rng.normal(size=(4, 9)), rng.normal(size=4)
    terms = log_terms(z, weights, bias, {"all": np.ones(9, bool)})
    assert respond_ratios({"e": {"all": ([terms["all"][0]], [terms["all"][1]])}})["e"]["all"] == pytest.approx(1.0)


def test_part_masks_hold_their_landmarks_and_follow_the_crop_offset():
    template = load_template()
    size, kernel, stride = 48, 9, 2
    side = (size - kernel) // stride + 1

    def unit_of(point, offset):
        # The map unit whose receptive-field centre is nearest to the point.
        pixel = (np.array(point) - offset) * size
        return tuple(np.clip(np.round((pixel - (kernel - 1) / 2 - 0.5) / stride).astype(int), 0, side - 1))

    for offset in (np.zeros(2), np.array([0.08, -0.08])):
        masks = part_masks(template, offset, size, side, kernel, stride)
        col, row = unit_of(template.mouth, offset)
        assert masks["mouth"][row, col]
        col, row = unit_of(template.left_eye, offset)
        assert masks["eyes_brows"][row, col] and not masks["mouth"][row, col]
        # Parts do not overlap.
        total = sum(m.astype(int) for m in masks.values())
        assert total.max() == 1
    boxes = part_boxes(template)
    assert set(boxes) == {"nose_root", "eyes_brows", "cheek", "mouth"}
