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



@pytest.mark.parametrize("padding, scipy_mode", [("zeros", "constant"), ("replicate", "nearest"), ("reflect", "mirror")])
def test_separable_filter_matches_scipy_in_3d_with_a_different_kernel_per_axis(padding, scipy_mode):
    from scipy import ndimage

    volume = torch.rand(1, 2, 7, 8, 9, dtype=torch.float64)
    kernels = [torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1], dtype=torch.float64)]
    expected = volume.numpy()
    for axis, kernel in enumerate(kernels):
        expected = ndimage.correlate1d(expected, kernel.numpy(), axis=axis + 2, mode=scipy_mode)
    torch.testing.assert_close(filters.separable_filter(volume, kernels, padding), torch.from_numpy(expected))


def test_separable_filter_refuses_unknown_padding_and_wrong_kernel_counts():
    image = torch.zeros(1, 1, 5, 5)
    with pytest.raises(filters.ImageError, match="padding"):
        filters.separable_filter(image, [torch.ones(1)] * 2, "circular")
    with pytest.raises(filters.ImageError, match="one kernel per axis"):
        filters.separable_filter(image, [torch.ones(1)], "zeros")
