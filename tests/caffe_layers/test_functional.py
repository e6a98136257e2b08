"""The numpy maths behind the layers, on cases the Caffe-level tests do not reach."""
import numpy as np
import pytest

from caffe_layers import functional


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sign_matches_numpy_sign_including_zero(rng, dtype):
    values = rng.normal(size=1000).astype(dtype)
    values[::9] = 0.0
    values[1] = -0.0
    values[2] = np.finfo(dtype).tiny / 4  # subnormal: still positive
    expected = np.sign(values)
    np.testing.assert_array_equal(functional.sign(values), expected)
    out = np.empty_like(values)
    assert functional.sign(values, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_center_updates_with_many_classes_match_a_loop(rng):
    labels = rng.integers(0, 1000, size=300)
    residuals = rng.normal(size=(300, 5))
    updates = functional.center_updates(residuals, labels, 1000)
    for j in range(1000):
        members = residuals[labels == j]
        expected = -members.sum(axis=0) / (1 + len(members)) if len(members) else np.zeros(5)
        np.testing.assert_allclose(updates[j], expected, rtol=1e-12, atol=1e-15)


def test_magnitude_mask_prunes_zeros_first_and_breaks_ties_by_position():
    weights = np.array([[0.5, 0.0, -0.1, 0.0], [0.1, -0.7, 0.0, 0.3]])
    keep = functional.magnitude_mask(weights, 0.5)  # 4 of 8: the three zeros, then the first 0.1
    np.testing.assert_array_equal(keep, [[True, False, False, False], [True, True, False, True]])
    assert functional.magnitude_mask(weights * keep, 0.5).tolist() == keep.tolist()
