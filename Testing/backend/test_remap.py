"""Shuffle Remap and the follow-up intensity corruptions: the defining properties of each map
(piecewise affinity, where the segments go, the end points, bijectivity, monotonicity,
measured noise), reproducibility, independence of the samples and the probabilities."""

import dataclasses

import pytest
import torch

from imse import remap
from imse.errors import ImageError


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ramp(count: int = 20001, batch: int = 1, dtype=torch.float64) -> torch.Tensor:
    """Every intensity of [-1, 1], both ends included, as images ``[batch, 1, 1, count]``."""
    return torch.linspace(-1, 1, count, dtype=dtype).view(1, 1, 1, -1).repeat(batch, 1, 1, 1)


def random_images(shape=(4, 1, 32, 32), seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=seeded(seed)) * 2 - 1


# --- Shuffle Remap ----------------------------------------------------------------------------


def test_known_cut_and_permutation_send_segments_where_the_permutation_says():
    knots = torch.tensor([-1.0, -0.5, 0.2, 1.0], dtype=torch.float64)
    permutation = torch.tensor([2, 0, 1])  # [-1,-.5] -> [.2,1], [-.5,.2] -> [-1,-.5], [.2,1] -> [-.5,.2]
    values = torch.tensor([-1.0, -0.75, -0.5, -0.15, 0.2, 0.6, 1.0], dtype=torch.float64)
    expected = torch.tensor([0.2, 0.6, -1.0, -0.75, -0.5, -0.15, 0.2], dtype=torch.float64)
    torch.testing.assert_close(remap.shuffle_segments(values, knots, permutation), expected)


@pytest.mark.parametrize("seed", range(5))
def test_drawn_segment_ends_map_exactly_to_the_permuted_segment_ends(seed):
    knots, permutation = remap.random_shuffle(seeded(seed), ramp())
    left_ends = knots[:-1].view(1, 1, 1, -1)
    just_before_right_ends = (knots[1:] - 1e-12).view(1, 1, 1, -1)
    torch.testing.assert_close(remap.shuffle_remap(left_ends, seeded(seed)).flatten(), knots[permutation])
    torch.testing.assert_close(
        remap.shuffle_remap(just_before_right_ends, seeded(seed)).flatten(), knots[permutation + 1], atol=1e-7, rtol=0
    )


@pytest.mark.parametrize("seed", range(5))
def test_the_ends_of_the_range_map_to_the_ends_of_their_segments_images(seed):
    knots, permutation = remap.random_shuffle(seeded(seed), ramp())
    ends = torch.tensor([-1.0, 1.0], dtype=torch.float64).view(1, 1, 1, 2)
    mapped = remap.shuffle_remap(ends, seeded(seed)).flatten()
    assert mapped[0] == knots[permutation[0]]  # -1 is the left end of the first segment
    assert mapped[1] == knots[permutation[-1] + 1]  # 1 is the right end of the last (the reference code gives 0)


@pytest.mark.parametrize("seed", range(5))
def test_the_map_is_affine_on_each_segment_with_the_ratio_of_lengths_as_slope(seed):
    values = ramp()
    knots, permutation = remap.random_shuffle(seeded(seed), values)
    mapped = remap.shuffle_remap(values, seeded(seed)).flatten()
    values = values.flatten()
    lengths = knots.diff()
    for segment, target in enumerate(permutation):
        inside = (values > knots[segment] + 1e-9) & (values < knots[segment + 1] - 1e-9)
        if inside.sum() < 2:
            continue
        x, y = values[inside], mapped[inside]
        slope = (y[-1] - y[0]) / (x[-1] - x[0])
        torch.testing.assert_close(slope, lengths[target] / lengths[segment])
        torch.testing.assert_close(y, y[0] + slope * (x - x[0]))
        assert knots[target] - 1e-12 <= y.min() and y.max() <= knots[target + 1] + 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_second_differences_vanish_except_at_the_breakpoints(seed):
    values = ramp()
    knots, _ = remap.random_shuffle(seeded(seed), values)
    second = remap.shuffle_remap(values, seeded(seed)).flatten().diff(n=2)
    kinks = (second.abs() > 1e-9).nonzero().flatten()
    # A breakpoint between two samples shows in at most two consecutive second differences.
    breakpoints = int((kinks.diff() > 1).sum()) + 1 if kinks.numel() else 0
    assert breakpoints <= knots.numel() - 2


@pytest.mark.parametrize("seed", range(5))
def test_the_map_is_a_bijection_of_the_range(seed):
    values = ramp()
    knots, _ = remap.random_shuffle(seeded(seed), values)
    mapped = remap.shuffle_remap(values, seeded(seed)).flatten()
    spread = mapped.sort().values
    steepest = (knots.diff().max() / knots.diff().min()).item()
    step = 2.0 / (values.numel() - 1)
    gap = steepest * step * (1 + 1e-6)  # the largest distance between two mapped neighbours
    assert -1 <= spread[0] <= -1 + gap and 1 - gap <= spread[-1] <= 1  # onto: no gap at the ends ...
    assert spread.diff().max() <= gap  # ... nor in between
    # One to one away from the breakpoints; -1 and 1 are breakpoints too: if the last segment
    # goes just below the first, both map to the same value.
    interior = mapped[1:-1]
    assert torch.unique(interior).numel() == interior.numel()


def test_output_stays_in_range_even_for_input_outside_it():
    images = random_images() * 1.2
    remapped = remap.shuffle_remap(images, seeded(1))
    assert remapped.min() >= -1 and remapped.max() <= 1


def test_no_control_points_is_the_identity():
    images = random_images()
    torch.testing.assert_close(remap.shuffle_remap(images, seeded(0), min_points=0, max_points=0), images)


def test_same_seed_same_map_and_different_seed_different_map():
    images = random_images()
    first = remap.shuffle_remap(images, seeded(7))
    assert torch.equal(first, remap.shuffle_remap(images, seeded(7)))
    assert not torch.allclose(first, remap.shuffle_remap(images, seeded(8)))


def test_each_sample_gets_its_own_map():
    remapped = remap.shuffle_remap(ramp(batch=2), seeded(3))
    assert not torch.allclose(remapped[0], remapped[1])


def test_3d_volumes_share_the_map_over_the_whole_volume():
    volume = random_images((1, 1, 6, 8, 10))
    knots, permutation = remap.random_shuffle(seeded(4), volume)
    expected = remap.shuffle_segments(volume, knots, permutation)
    torch.testing.assert_close(remap.shuffle_remap(volume, seeded(4)), expected)


def test_bad_arguments_are_reported():
    with pytest.raises(ImageError):
        remap.shuffle_remap(random_images(), seeded(0), min_points=5, max_points=2)
    with pytest.raises(ImageError):
        remap.shuffle_remap(torch.zeros(8, 8), seeded(0))


# --- Corruptions ------------------------------------------------------------------------------


def test_negation():
    images = random_images()
    assert torch.equal(remap.negate(images), -images)


@pytest.mark.parametrize("seed", range(3))
def test_histogram_shift_is_increasing_keeps_the_ends_and_changes_the_values(seed):
    shifted = remap.monotone_histogram_shift(ramp(batch=2), seeded(seed))
    assert (shifted.diff(dim=-1) >= 0).all()
    torch.testing.assert_close(shifted[..., 0], torch.full_like(shifted[..., 0], -1.0))
    torch.testing.assert_close(shifted[..., -1], torch.full_like(shifted[..., -1], 1.0))
    assert (shifted - ramp(batch=2)).abs().max() > 0.01
    assert not torch.allclose(shifted[0], shifted[1])


def test_gaussian_noise_has_the_requested_standard_deviation():
    noisy = remap.gaussian_noise(torch.zeros(4, 1, 128, 128), seeded(0), std=0.1)
    assert abs(noisy.std().item() - 0.1) < 0.002
    assert abs(noisy.mean().item()) < 0.002


def test_gaussian_noise_with_a_random_level_draws_one_level_per_sample_up_to_the_given_one():
    noisy = remap.gaussian_noise(torch.zeros(64, 1, 64, 64), seeded(0), std=0.1, random_std=True)
    levels = noisy.flatten(1).std(1)
    assert levels.max() < 0.1 * 1.05 and levels.min() < 0.02  # all below the top, some near zero
    assert abs(levels.mean().item() - 0.05) < 0.01  # uniform in [0, 0.1]
    augmentation = remap.RemapAugmentation(noise_probability=1.0, noise_std=0.1, random_noise_std=True)
    assert augmentation.corruptions()[3][1].keywords == {"std": 0.1, "random_std": True}


def test_bias_field_is_a_smooth_positive_factor_on_the_unit_range():
    images = torch.full((2, 1, 64, 64), 0.0)  # 0.5 on the [0, 1] scale
    biased = remap.bias_field(images, seeded(0), strength=0.3)
    factor = (biased + 1) / 2 / 0.5
    assert factor.min() > 0 and factor.std() > 0.01
    assert factor.diff(n=2, dim=-1).abs().max() < 1e-2 and factor.diff(n=2, dim=-2).abs().max() < 1e-2
    # The same seed on another constant image: the same factor.
    other = (remap.bias_field(torch.full((2, 1, 64, 64), -0.6), seeded(0), strength=0.3) + 1) / 2 / 0.2
    torch.testing.assert_close(other, factor)
    torch.testing.assert_close(remap.bias_field(images, seeded(0), strength=0.0), images)


def test_bias_field_in_3d():
    biased = remap.bias_field(torch.zeros(1, 1, 8, 12, 16), seeded(0))
    assert biased.std() > 0.01 and biased.abs().max() <= 1


def test_contrast_change_is_a_gamma_on_the_unit_range():
    values = ramp(batch=4)
    changed = remap.contrast_change(values, seeded(0), max_log_gamma=0.3)
    unit_in, unit_out = (values[..., 1:-1] + 1) / 2, (changed[..., 1:-1] + 1) / 2
    gamma = unit_out.log() / unit_in.log()  # constant per sample
    assert torch.allclose(gamma, gamma[..., :1], rtol=1e-6)
    assert ((gamma.log().abs() <= 0.3 + 1e-9) & (gamma.log().abs() > 0)).all()
    torch.testing.assert_close(changed[..., [0, -1]], values[..., [0, -1]])
    torch.testing.assert_close(remap.contrast_change(values, seeded(0), max_log_gamma=0.0), values)


def test_sharpen_keeps_flat_regions_and_overshoots_at_edges():
    step = torch.where(torch.arange(32) < 16, -0.5, 0.5).float().view(1, 1, 1, 32).repeat(2, 1, 32, 1)
    sharpened = remap.sharpen(step, seeded(0), max_amount=1.5)
    torch.testing.assert_close(sharpened[..., :10], step[..., :10])
    assert sharpened.max() > 0.5 and sharpened.min() < -0.5
    torch.testing.assert_close(remap.sharpen(step, seeded(0), max_amount=0.0), step)


def test_kspace_spikes_add_a_few_pure_frequencies():
    images = torch.zeros(3, 1, 32, 32)
    spiked = remap.kspace_spikes(images, seeded(0), max_spikes=3, max_amplitude=0.2)
    spectrum = torch.fft.fftn(spiked - images, dim=(-2, -1)).abs()
    for sample in spectrum:
        lines = (sample > 1e-3 * sample.max()).sum()
        assert 1 <= lines <= 6  # each spike and its complex conjugate
        assert sample[..., 0, 0] < 1e-3 * sample.max()  # no change of the mean
    assert (spiked - images).abs().max() <= 3 * 0.2 + 1e-6


# --- The full augmentation --------------------------------------------------------------------

PROBABILITIES = [f.name for f in dataclasses.fields(remap.RemapAugmentation) if f.name.endswith("_probability")]
NONE = {name: 0.0 for name in PROBABILITIES}


def test_with_all_probabilities_zero_only_shuffle_remap_is_applied():
    images = random_images()
    augmented = remap.RemapAugmentation(**NONE)(images, seeded(5))
    assert torch.equal(augmented, remap.shuffle_remap(images, seeded(5)))


@pytest.mark.parametrize("name", PROBABILITIES)
def test_a_corruption_with_probability_one_is_applied_to_every_sample(name):
    images = random_images()
    augmented = remap.RemapAugmentation(**{**NONE, name: 1.0})(images, seeded(5))
    remapped = remap.shuffle_remap(images, seeded(5))
    assert all(not torch.allclose(a, r) for a, r in zip(augmented, remapped))
    assert augmented.min() >= -1 and augmented.max() <= 1


def test_negation_with_probability_one_negates_the_remapped_image():
    images = random_images()
    augmented = remap.RemapAugmentation(**{**NONE, "negate_probability": 1.0})(images, seeded(5))
    assert torch.equal(augmented, -remap.shuffle_remap(images, seeded(5)))


def test_the_probability_is_drawn_per_sample():
    images = random_images((200, 1, 2, 2))
    negated = remap.apply_with_probability(images, 0.3, remap.negate, seeded(0))
    flipped = (negated == -images).flatten(1).all(1)
    assert ((negated == images).flatten(1).all(1) | flipped).all()
    assert 0.2 < flipped.float().mean() < 0.4


@pytest.mark.parametrize("shape", [(2, 1, 24, 24), (2, 1, 6, 12, 12)])
def test_every_corruption_together_in_2d_and_3d(shape):
    augmentation = remap.RemapAugmentation(**{name: 1.0 for name in PROBABILITIES})
    augmented = augmentation(random_images(shape), seeded(0))
    assert augmented.shape == shape and augmented.min() >= -1 and augmented.max() <= 1
    assert torch.equal(augmented, augmentation(random_images(shape), seeded(0)))


def test_probabilities_outside_zero_one_are_refused():
    with pytest.raises(ImageError):
        remap.RemapAugmentation(noise_probability=1.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator():
    images = random_images().cuda()
    augmentation = remap.RemapAugmentation(**{name: 1.0 for name in PROBABILITIES})
    augmented = augmentation(images, torch.Generator("cuda").manual_seed(0))
    assert augmented.is_cuda and augmented.min() >= -1 and augmented.max() <= 1
