"""Separable Gaussian smoothing."""

import pytest
import torch

from imse import filters


def test_gaussian_smoothing_is_the_separable_normalised_kernel():
    impulse = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    impulse[0, 0, 10, 10] = 1
    kernel = filters.gaussian_kernel(2.0)
    assert kernel.numel() == 13 and kernel.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(filters.gaussian_smooth(impulse, 2.0)[0, 0, 4:17, 4:17], torch.outer(kernel, kernel))
    constant = torch.full((1, 2, 9, 10, 11), 3.0)
    torch.testing.assert_close(filters.gaussian_smooth(constant, 4.0), constant)  # wider than the image
    assert filters.gaussian_smooth(constant, 1.0, padding="valid").shape == (1, 2, 3, 4, 5)

