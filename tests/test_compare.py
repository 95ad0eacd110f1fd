"""The comparisons behind every hidden test: what they accept and what they refuse."""

import pytest
import torch

from autograder.compare import Failure, expect_close


def test_float32_near_zero_within_rounding_passes():
    """A float32 loss near 0 (log-sum-exp minus a logit of ~8) is off by rounding only."""
    want = torch.tensor(4.474e-06, dtype=torch.float64)
    expect_close(torch.tensor(4.53e-06), want, "the loss", dtype=torch.float32)


def test_errors_of_small_tensors_fail_as_a_whole_even_within_each_element():
    """Each element of a small-valued float32 tensor is off by less than atol (2e-5), but together
    the errors are 1 % of the tensor: a bug, not rounding."""
    want = 1e-3 * torch.linspace(1.0, 2.0, 1000, dtype=torch.float64)
    got = (want + 1.5e-5).float()
    with pytest.raises(Failure, match="relative error of the whole tensor"):
        expect_close(got, want, "x", dtype=torch.float32)


def test_one_wrong_element_fails_and_is_located():
    want = torch.zeros(3, 4, dtype=torch.float64)
    got = want.clone()
    got[1, 2] = 1e-3
    with pytest.raises(Failure, match=r"largest error 0.001 at index \(1, 2\)"):
        expect_close(got, want, "x")


def test_dtype_shape_and_non_finite_answers_fail():
    want = torch.ones(2, dtype=torch.float64)
    for got, message in [(torch.ones(2), "dtype"), (torch.ones(3, dtype=torch.float64), "shape"),
                         (torch.tensor([1.0, float("nan")], dtype=torch.float64), "finite")]:
        with pytest.raises(Failure, match=message):
            expect_close(got, want, "x")


def test_float64_is_held_to_float64_tolerance():
    want = torch.ones(4, dtype=torch.float64)
    with pytest.raises(Failure):
        expect_close(want + 1e-7, want, "x")
    expect_close(want + 1e-13, want, "x")
