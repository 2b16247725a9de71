"""Similarity losses (imse.similarity), tested by their properties on real MNI brain images:
minimal at alignment and growing with a translation, gradients that point back to alignment,
multi-modal behaviour of MI and MIND, the IMSE evaluator similarity with toy networks, masks,
reductions, 2D and 3D, and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imse import field
from imse import similarity as sim
from imse.data import load_mni_atlas, synthesize_contrast
from imse.data.slicing import extract_slice
from imse.errors import ImageError
from imse.evaluator import predict
from imse.geometry import Geometry
from imse.image import normalize_intensity

ATLAS_SPACING_MM = 4.0
SIZE_2D = 48
SIZE_3D = 24
#: The losses that every test runs, with the options that make them cheap on tiny images.
LOSSES = {
    "mse": sim.mse,
    "mae": sim.mae,
    "ncc": sim.ncc,
    "lncc": sim.lncc,
    "mi": sim.mutual_information,
    "nmi": lambda fixed, moving, mask=None, reduction="mean": sim.mutual_information(
        fixed, moving, mask, normalized=True, reduction=reduction
    ),
    "mi_gaussian": lambda fixed, moving, mask=None, reduction="mean": sim.mutual_information(
        fixed, moving, mask, parzen="gaussian", reduction=reduction
    ),
    "mind": sim.mind_ssc,
}


# --------------------------------------------------------------------------------------------
# Images: tiny crops of the MNI atlas in several contrasts, normalised to [-1, 1]
# --------------------------------------------------------------------------------------------


def _central_crop(array: np.ndarray, size: int) -> np.ndarray:
    starts = [(n - size) // 2 for n in array.shape]
    return array[tuple(slice(s, s + size) for s in starts)]


def _contrasts(atlas, size: int) -> dict[str, torch.Tensor]:
    images = {}
    for contrast in ("t1", "t2", "ct"):
        image = normalize_intensity(synthesize_contrast(atlas, contrast, bias_strength=0.0, noise_std=0.0))
        images[contrast] = torch.from_numpy(np.ascontiguousarray(_central_crop(image.array, size)))[None, None]
    return images


@pytest.fixture(scope="module")
def atlas():
    return load_mni_atlas(ATLAS_SPACING_MM)


@pytest.fixture(scope="module")
def images_2d(atlas) -> dict[str, torch.Tensor]:
    """Noise-free axial slices through the middle of the brain, 48 x 48, in T1, T2 and CT."""
    middle = atlas.geometry.index_to_physical(np.array([0, 0, atlas.t1.shape[0] // 2]))[2]
    return _contrasts(atlas.map(lambda image: extract_slice(image, "axial", middle)), SIZE_2D)


@pytest.fixture(scope="module")
def images_3d(atlas) -> dict[str, torch.Tensor]:
    """Noise-free 24^3 central blocks of the brain in T1, T2 and CT."""
    return _contrasts(atlas, SIZE_3D)


def images_of(dim, images_2d, images_3d):
    return images_2d if dim == 2 else images_3d


def translate(image: torch.Tensor, vector) -> torch.Tensor:
    """``image(p + t)`` for a constant ``t`` (voxels = mm on a unit grid, order x, y[, z])."""
    dim = image.ndim - 2
    displacement = torch.as_tensor(vector, dtype=image.dtype).view(1, dim, *[1] * dim)
    return field.warp(image, displacement.expand(1, dim, *image.shape[2:]), Geometry.identity(dim))


def toy_evaluator(dim: int, weights=(-0.5, 0.5)) -> torch.nn.Module:
    """A 1x1 convolution ``E = w0 * channel0 + w1 * channel1``; the default ``(ch1 - ch0) / 2`` is
    what a perfect evaluator predicts for two images of the same modality."""
    conv = (torch.nn.Conv2d if dim == 2 else torch.nn.Conv3d)(2, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weights).view(1, 2, *[1] * dim))
    return conv


# --------------------------------------------------------------------------------------------
# Minimal at alignment, growing with the misalignment
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOSSES))
def test_mono_modal_minimal_at_alignment_and_growing_with_shift(name, images_2d):
    loss = LOSSES[name]
    t1 = images_2d["t1"]
    for direction in ((1, 0), (0, 1), (1, 1)):
        values = [loss(t1, translate(t1, np.multiply(direction, shift))).item() for shift in range(5)]
        assert np.all(np.diff(values) > 0), (name, direction, values)


@pytest.mark.parametrize("name", ["mi", "nmi", "mi_gaussian", "mind"])
@pytest.mark.parametrize("contrast", ["t2", "ct"])
def test_multi_modal_mi_and_mind_minimal_at_alignment(name, contrast, images_2d):
    loss = LOSSES[name]
    t1, other = images_2d["t1"], images_2d[contrast]
    for direction in ((1, 0), (0, -1), (-1, 1)):
        values = [loss(t1, translate(other, np.multiply(direction, shift))).item() for shift in range(5)]
        assert np.all(np.diff(values) > 0), (name, contrast, direction, values)


@pytest.mark.parametrize("name", list(LOSSES))
def test_3d_minimal_at_alignment_and_growing_with_shift(name, images_3d):
    loss = LOSSES[name]
    t1 = images_3d["t1"]
    moving = images_3d["t1" if name in ("mse", "mae", "ncc", "lncc") else "t2"]
    values = [loss(t1, translate(moving, (shift, -shift, shift))).item() for shift in range(4)]
    assert np.all(np.diff(values) > 0), (name, values)


def test_ncc_is_minus_one_for_an_increasing_linear_relation_and_plus_one_for_a_decreasing_one(images_2d):
    t1 = images_2d["t1"]
    assert sim.ncc(t1, 3.0 * t1 + 0.7).item() == pytest.approx(-1.0, abs=1e-5)
    assert sim.ncc(t1, -2.0 * t1 + 0.1).item() == pytest.approx(1.0, abs=1e-5)
    assert sim.lncc(t1, 3.0 * t1 + 0.7).item() == pytest.approx(sim.lncc(t1, t1).item(), abs=1e-4)


def test_mutual_information_values(images_2d):
    t1, t2 = images_2d["t1"], images_2d["t2"]
    joint = sim.joint_histogram(t1, t2)
    assert joint.shape == (1, 32, 32)
    assert joint.sum().item() == pytest.approx(1.0, abs=1e-5)
    # MI is at most the marginal entropy, reached (up to the Parzen blur) by an image with itself.
    marginal = joint.sum(1)
    entropy = -(marginal * marginal.clamp_min(1e-30).log()).sum().item()
    self_mi = -sim.mutual_information(t2, t2).item()
    assert 0.0 < -sim.mutual_information(t1, t2).item() < self_mi <= entropy
    assert self_mi > 0.5 * entropy
    nmi = sim.mutual_information(t1, t2, normalized=True).item()
    assert -2.0 <= nmi <= -1.0
    # Internal normalisation makes MI blind to a linear intensity change of either image.
    internal = sim.mutual_information(t1, t2, value_range=None).item()
    assert sim.mutual_information(100.0 * t1 - 7.0, 0.5 * t2 + 3.0, value_range=None).item() == pytest.approx(internal, abs=1e-4)


def test_parzen_windows_of_the_joint_histogram(images_2d):
    # An intensity on a bin centre spreads 1/6, 2/3, 1/6 over three bins (cubic B-spline).
    zeros = torch.zeros(1, 1, 4, 4)
    spread = torch.tensor([0.0, 1 / 6, 2 / 3, 1 / 6, 0.0])
    joint = sim.joint_histogram(zeros, zeros, bins=5)
    assert torch.allclose(joint[0], spread[:, None] * spread[None, :], atol=1e-6)
    # Folding at the ends: -1 lies on the first bin centre, whose left neighbour does not exist.
    marginal = sim.joint_histogram(zeros - 1.0, zeros, bins=5)[0].sum(1)
    assert torch.allclose(marginal, torch.tensor([5 / 6, 1 / 6, 0, 0, 0]), atol=1e-6)
    # Both windows give probability tables with similar marginals and MI values.
    t1, ct = images_2d["t1"], images_2d["ct"]
    for parzen in ("bspline", "gaussian"):
        assert sim.joint_histogram(t1, ct, parzen=parzen).sum().item() == pytest.approx(1.0, abs=1e-5)
    bspline, gaussian = sim.mutual_information(t1, ct).item(), sim.mutual_information(t1, ct, parzen="gaussian").item()
    assert bspline == pytest.approx(gaussian, rel=0.25)


def test_mind_descriptor_is_blind_to_intensity_mapping(images_2d, images_3d):
    for images, channels in ((images_2d, 4), (images_3d, 12)):
        t1 = images["t1"]
        descriptor = sim.mind_ssc_descriptor(t1)
        assert descriptor.shape == (1, channels, *t1.shape[2:])
        assert descriptor.min().item() > 0.0 and descriptor.max().item() <= 1.0
        for mapped in (3.0 * t1 - 2.0, -t1):
            assert torch.allclose(sim.mind_ssc_descriptor(mapped), descriptor, atol=1e-4)
    t1 = images_2d["t1"]
    assert sim.mind_ssc(t1, 0.5 - 2.0 * t1).item() < 1e-6
    assert sim.mind_ssc(t1, t1, kernel="gaussian", radius=2, distance="l1").item() == 0.0


# --------------------------------------------------------------------------------------------
# Gradients point back to alignment
# --------------------------------------------------------------------------------------------

GRADIENT_CASES = [
    ("mse", "t1"),
    ("mae", "t1"),
    ("ncc", "t1"),
    ("lncc", "t1"),
    ("mi", "t1"),
    ("mi", "t2"),
    ("mi", "ct"),
    ("nmi", "t2"),
    ("mi_gaussian", "t1"),
    ("mi_gaussian", "ct"),
    ("mind", "t1"),
    ("mind", "t2"),
    ("mind", "ct"),
]


def _step_reduces_misalignment(loss, fixed, moving, start) -> tuple[float, float]:
    """Norms of the misalignment before and after one normalised gradient step of 0.5 voxel on
    a learnable constant displacement ``t`` (``moving`` is aligned with ``fixed`` at t = 0)."""
    dim = fixed.ndim - 2
    t = torch.tensor(start, dtype=fixed.dtype).view(1, dim, *[1] * dim).requires_grad_(True)
    warped = field.warp(moving, t.expand(1, dim, *fixed.shape[2:]), Geometry.identity(dim))
    loss(fixed, warped).backward()
    gradient = t.grad.flatten()
    assert torch.isfinite(gradient).all() and gradient.norm() > 0
    after = t.detach().flatten() - 0.5 * gradient / gradient.norm()
    return float(np.linalg.norm(start)), float(after.norm())


@pytest.mark.parametrize("name, contrast", GRADIENT_CASES)
def test_gradient_of_a_translation_points_back_to_alignment_2d(name, contrast, images_2d):
    for start in ((1.3, -0.7), (-1.6, 0.4), (0.6, 1.7)):
        before, after = _step_reduces_misalignment(LOSSES[name], images_2d["t1"], images_2d[contrast], start)
        assert after < before - 0.3, (name, contrast, start, after)


@pytest.mark.parametrize("name, contrast", [("lncc", "t1"), ("ncc", "t1"), ("mi", "t2"), ("mind", "ct")])
def test_gradient_of_a_translation_points_back_to_alignment_3d(name, contrast, images_3d):
    before, after = _step_reduces_misalignment(LOSSES[name], images_3d["t1"], images_3d[contrast], (1.2, -0.6, 0.8))
    assert after < before - 0.3, (name, contrast, after)


# --------------------------------------------------------------------------------------------
# IMSE with toy evaluators
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
def test_imse_is_zero_for_identical_images_and_grows_with_shift(dim, images_2d, images_3d):
    t1 = images_of(dim, images_2d, images_3d)["t1"]
    similarity = sim.IMSESimilarity(toy_evaluator(dim))
    assert similarity(t1, t1).item() == 0.0
    values = [similarity(t1, translate(t1, (shift,) * dim)).item() for shift in range(4)]
    assert np.all(np.diff(values) > 0), values
    # The toy evaluator predicts (fixed - moving) / 2, so IMSE is half the mean absolute error.
    moving = translate(t1, (1.5,) * dim)
    assert similarity(t1, moving).item() == pytest.approx(0.5 * sim.mae(t1, moving).item(), rel=1e-5)


def test_imse_channel_order(images_2d):
    t1 = images_2d["t1"]
    moving = translate(t1, (2.0, 1.0))
    antisymmetric = toy_evaluator(2)
    # Swapping the channels flips the sign of the signed output but not its magnitude.
    signed = predict(antisymmetric, moving, t1)
    assert torch.allclose(predict(antisymmetric, t1, moving), -signed)
    assert signed.abs().sum() > 0
    fixed_reference = sim.imse(t1, moving, antisymmetric, reference="fixed").item()
    assert sim.imse(t1, moving, antisymmetric, reference="moving").item() == pytest.approx(fixed_reference, rel=1e-6)
    # An asymmetric toy tells the orders apart: reference="fixed" feeds [moving, fixed].
    moving = 0.5 * moving
    w_other, w_reference = -0.25, 1.0
    asymmetric = toy_evaluator(2, (w_other, w_reference))
    expect_fixed = (w_other * moving + w_reference * t1).abs().mean().item()
    expect_moving = (w_other * t1 + w_reference * moving).abs().mean().item()
    assert sim.imse(t1, moving, asymmetric, reference="fixed").item() == pytest.approx(expect_fixed, rel=1e-5)
    assert sim.imse(t1, moving, asymmetric, reference="moving").item() == pytest.approx(expect_moving, rel=1e-5)
    assert abs(expect_fixed - expect_moving) > 0.1
    both = sim.IMSESimilarity(asymmetric, both_orders=True)(t1, moving).item()
    assert both == pytest.approx(0.5 * (expect_fixed + expect_moving), rel=1e-5)
    both_moving = sim.IMSESimilarity(asymmetric, reference="moving", both_orders=True)(t1, moving).item()
    assert both_moving == pytest.approx(both, rel=1e-5)


def test_imse_gradient_points_back_and_network_stays_frozen(images_2d):
    network = toy_evaluator(2).train()
    similarity = sim.build_similarity("imse", network=network)
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    similarity.train()
    assert not network.training
    before, after = _step_reduces_misalignment(similarity, images_2d["t1"], images_2d["t1"], (1.3, -0.7))
    assert after < before - 0.3


def test_a_2d_evaluator_compares_volumes_slice_by_slice(images_3d):
    """Each slice along the first spatial axis goes through the 2D network on its own: the map
    equals the slices' maps stacked, and the loss their mean."""
    from imse.evaluator import predict

    network = torch.nn.Sequential(torch.nn.Conv2d(2, 1, 3, padding=1), torch.nn.Tanh())  # sees its neighbours in-plane
    fixed, moving = images_3d["t1"], translate(images_3d["t2"], (1.0, 0.0, 2.0)).clamp(-1, 1)
    stacked = torch.stack([predict(network, moving[:, :, k], fixed[:, :, k]) for k in range(fixed.shape[2])], dim=2)
    torch.testing.assert_close(predict(network, moving, fixed), stacked)
    assert sim.imse(fixed, moving, network).item() == pytest.approx(stacked.abs().mean().item(), rel=1e-6)


@pytest.mark.parametrize("axis", [1, 2])
def test_a_2d_evaluator_can_slice_volumes_across_their_other_axes(images_3d, axis):
    """Across spatial axis 1 (H) the network sees the [D, W] slices, across axis 2 the [D, H]
    ones, the other two axes in their order; ``slice_axes`` averages the axes' maps."""
    from imse.evaluator import predict

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(2, 1, 3, padding=1), torch.nn.Tanh())  # in-plane neighbours: the slicing shows
    fixed, moving = images_3d["t1"], translate(images_3d["t2"], (1.0, 0.0, 2.0)).clamp(-1, 1)
    take = lambda volume, k: volume.select(2 + axis, k)  # noqa: E731  [N, 1, D, W] or [N, 1, D, H]
    stacked = torch.stack([predict(network, take(moving, k), take(fixed, k)) for k in range(fixed.shape[2 + axis])], dim=2 + axis)
    across = predict(network, moving, fixed, slice_axis=axis)
    torch.testing.assert_close(across, stacked)
    assert not torch.allclose(across, predict(network, moving, fixed))  # not the first axis's slices
    mean = sum(predict(network, moving, fixed, slice_axis=k) for k in range(3)) / 3
    torch.testing.assert_close(sim.predict_across(network, moving, fixed, (0, 1, 2)), mean)
    assert sim.IMSESimilarity(network, slice_axes="all")(fixed, moving).item() == pytest.approx(mean.abs().mean().item(), rel=1e-5)
    torch.testing.assert_close(sim.predict_across(network, moving[:, :, 0], fixed[:, :, 0], (0, 1, 2)), predict(network, moving[:, :, 0], fixed[:, :, 0]))  # images: one pass


def test_slicing_across_all_axes_is_refused_with_a_3d_evaluator():
    with pytest.raises(ImageError, match="2D evaluator"):
        sim.IMSESimilarity(toy_evaluator(3), slice_axes="all")
    with pytest.raises(ImageError, match="slice_axes"):
        sim.IMSESimilarity(toy_evaluator(2), slice_axes="diagonal")


def test_imse_checks_its_inputs(images_2d):
    t1 = images_2d["t1"]
    network = toy_evaluator(2)
    with pytest.raises(ImageError, match=r"\[-1, 1\]"):
        sim.imse(t1, 3.0 * t1, network)
    with pytest.raises(ImageError, match="reference"):
        sim.imse(t1, t1, network, reference="other")
    with pytest.raises(ImageError, match="fixed"):
        sim.IMSESimilarity(network, reference="trained")
    with pytest.raises(ImageError, match="3D"):
        sim.imse(t1, t1, toy_evaluator(3))
    network.dim = 3
    with pytest.raises(ImageError, match="3D"):
        sim.imse(t1, t1, network)


# --------------------------------------------------------------------------------------------
# Masks, reductions, 2D and 3D
# --------------------------------------------------------------------------------------------


def _build(name: str, dim: int) -> torch.nn.Module:
    if name == "imse":
        return sim.build_similarity("imse", network=toy_evaluator(dim))
    if name == "nmi":
        return sim.build_similarity("mi", normalized=True)
    if name == "mi_gaussian":
        return sim.build_similarity("mi", parzen="gaussian")
    return sim.build_similarity(name)


ALL_NAMES = [*LOSSES, "imse"]


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("dim", [2, 3])
def test_mask_excluding_the_changed_region_gives_the_aligned_value(name, dim, images_2d, images_3d):
    fixed = images_of(dim, images_2d, images_3d)["t1"]
    size = fixed.shape[-1]
    changed = (slice(None), slice(None), *[slice(2, 9)] * dim)
    moving = fixed.clone()
    noise = torch.rand(moving[changed].shape, generator=torch.Generator().manual_seed(0))
    moving[changed] = noise * 2.0 - 1.0
    # Exclude the changed box plus a margin wider than MIND's reach (dilation + radius).
    margin = 4 if name == "mind" else 0
    mask = torch.ones_like(fixed, dtype=torch.bool)
    mask[(slice(None), slice(None), *[slice(0, 9 + margin)] * dim)] = False
    similarity = _build(name, dim)
    aligned = similarity(fixed, fixed, mask).item()
    assert similarity(fixed, moving, mask).item() == pytest.approx(aligned, abs=1e-5)
    assert similarity(fixed, moving, mask.float()).item() == pytest.approx(aligned, abs=1e-5)
    assert similarity(fixed, moving).item() != pytest.approx(similarity(fixed, fixed).item(), abs=1e-4)
    assert size > 9 + margin
    with pytest.raises(ImageError, match="mask"):
        similarity(fixed, moving, torch.zeros_like(mask))


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("dim", [2, 3])
def test_reductions_are_consistent(name, dim, images_2d, images_3d):
    fixed = images_of(dim, images_2d, images_3d)["t1"].expand(2, -1, *[-1] * dim).contiguous()
    moving = torch.cat([translate(fixed[:1], (1.0,) * dim), translate(fixed[:1], (-2.5,) + (0.5,) * (dim - 1))])
    similarity = _build(name, dim)
    each = torch.stack([similarity(fixed[i : i + 1], moving[i : i + 1]) for i in range(2)])
    function = {"mse": sim.mse, "mae": sim.mae, "ncc": sim.ncc, "lncc": sim.lncc, "mind": sim.mind_ssc}
    for reduction, expected in (("none", each), ("mean", each.mean()), ("sum", each.sum())):
        similarity.reduction = reduction
        value = similarity(fixed, moving)
        assert value.shape == expected.shape
        assert torch.allclose(value, expected, atol=1e-5), (reduction, value, expected)
        if name in function:
            assert torch.allclose(function[name](fixed, moving, reduction=reduction), expected, atol=1e-5)
    # A batch mask and a mask shared by the batch agree.
    mask = torch.zeros_like(fixed[:1])
    mask[(slice(None), slice(None), *[slice(4, -4)] * dim)] = 1.0
    similarity.reduction = "none"
    assert torch.allclose(similarity(fixed, moving, mask), similarity(fixed, moving, mask.expand_as(fixed)), atol=1e-6)


VOXELWISE_NAMES = ["mse", "mae", "lncc", "mind", "imse"]


@pytest.mark.parametrize("name", VOXELWISE_NAMES)
@pytest.mark.parametrize("dim", [2, 3])
def test_voxel_reduction_is_the_map_whose_weighted_mean_is_the_loss(name, dim, images_2d, images_3d):
    fixed = images_of(dim, images_2d, images_3d)["t1"]
    moving = translate(fixed, (1.5,) + (0.0,) * (dim - 1))
    similarity = _build(name, dim)
    mask = torch.zeros_like(fixed)
    mask[(slice(None), slice(None), *[slice(4, -4)] * dim)] = 1.0
    loss, masked_loss = similarity(fixed, moving).item(), similarity(fixed, moving, mask).item()
    similarity.reduction = "voxel"
    cost = similarity(fixed, moving)
    assert cost.shape == fixed.shape
    assert cost.mean().item() == pytest.approx(loss, abs=1e-5)
    if name != "lncc":  # LNCC's local moments see the mask too, so its masked map differs
        assert ((cost * mask).sum() / mask.sum()).item() == pytest.approx(masked_loss, abs=1e-5)
    # The shifted pair's map is not the aligned pair's.
    assert not torch.allclose(cost, similarity(fixed, fixed), atol=1e-4)


@pytest.mark.parametrize("name", ["ncc", "mi"])
def test_global_measures_refuse_the_voxel_reduction(name, images_2d):
    fixed = images_2d["t1"]
    with pytest.raises(ImageError, match="whole image"):
        sim.build_similarity(name, reduction="voxel")
    function = {"ncc": sim.ncc, "mi": sim.mutual_information}[name]
    with pytest.raises(ImageError, match="whole image"):
        function(fixed, fixed, reduction="voxel")


def test_lncc_options(images_2d, images_3d):
    t1 = images_2d["t1"]
    moving = translate(t1, (1.0, 0.0))
    box = sim.lncc(t1, moving, window=5).item()
    assert sim.lncc(t1, moving, window=(5, 5)).item() == pytest.approx(box, abs=1e-6)
    assert sim.lncc(t1, moving, window=(3, 7)).item() != pytest.approx(box, abs=1e-4)
    gaussian = sim.lncc(t1, moving, kernel="gaussian").item()
    assert -1.0 <= sim.lncc(t1, t1, kernel="gaussian").item() < gaussian < sim.lncc(t1, translate(t1, (3.0, 0.0)), kernel="gaussian").item()
    assert sim.lncc(images_3d["t1"], images_3d["t1"], window=(3, 5, 7)).item() < -0.5


# --------------------------------------------------------------------------------------------
# Registry and input checks
# --------------------------------------------------------------------------------------------


def test_registry_builds_every_similarity(images_2d):
    assert set(sim.SIMILARITIES) == {"mse", "mae", "ncc", "lncc", "mi", "mind", "imse"}
    t1 = images_2d["t1"]
    moving = translate(t1, (1.5, 0.5))
    functions = {
        "mse": sim.mse,
        "mae": sim.mae,
        "ncc": sim.ncc,
        "lncc": sim.lncc,
        "mi": sim.mutual_information,
        "mind": sim.mind_ssc,
    }
    for name, function in functions.items():
        module = sim.build_similarity(name)
        assert isinstance(module, torch.nn.Module)
        assert module(t1, moving).item() == pytest.approx(function(t1, moving).item(), abs=1e-6)
    assert sim.build_similarity("MI", bins=16).bins == 16
    assert "window=5" in repr(sim.build_similarity("lncc", window=5))


def test_combined_similarity_is_the_weighted_sum_of_its_terms_with_options_routed_by_name(images_2d):
    t1, t2 = images_2d["t1"], images_2d["t2"]
    moving = translate(t2, (1.5, -1.0))
    network = toy_evaluator(2)
    combined = sim.build_similarity("MIND+imse", network=network, reference="moving", weights={"imse": 2.5}, radius=1)
    assert isinstance(combined, sim.WeightedSum) and combined.weights == [1.0, 2.5]
    expected = sim.mind_ssc(t1, moving, radius=1) + 2.5 * sim.imse(t1, moving, network, reference="moving")
    assert combined(t1, moving).item() == pytest.approx(expected.item(), rel=1e-6)
    assert sim.similarity_terms("mind + imse") == ["mind", "imse"]
    with pytest.raises(ImageError, match="joined by"):
        sim.build_similarity("mind+ssd")
    with pytest.raises(ImageError, match="joined by"):
        sim.build_similarity("mind+mind")
    with pytest.raises(ImageError, match="not terms"):
        sim.build_similarity("mind+ncc", weights={"mi": 1.0})
    with pytest.raises(ImageError, match="Unknown option.*bins"):
        sim.build_similarity("mind+ncc", bins=16)


def test_unknown_names_and_options_raise_image_error(images_2d):
    with pytest.raises(ImageError, match="lncc.*mind"):
        sim.build_similarity("ssd")
    with pytest.raises(ImageError, match="network"):
        sim.build_similarity("imse")
    with pytest.raises(ImageError, match="valid options.*window"):
        sim.build_similarity("lncc", radius=3)
    with pytest.raises(ImageError, match="box"):
        sim.build_similarity("lncc", kernel="triangle")
    with pytest.raises(ImageError, match="l2"):
        sim.build_similarity("mind", distance="l3")
    with pytest.raises(ImageError, match="mean"):
        sim.build_similarity("mse", reduction="max")
    with pytest.raises(ImageError, match="bins"):
        sim.build_similarity("mi", bins=2)
    with pytest.raises(ImageError, match="bspline"):
        sim.build_similarity("mi", parzen="triangle")
    t1 = images_2d["t1"]
    with pytest.raises(ImageError, match="odd"):
        sim.lncc(t1, t1, window=4)
    with pytest.raises(ImageError, match="2 integers"):
        sim.lncc(t1, t1, window=(3, 3, 3))
    with pytest.raises(ImageError, match="mean"):
        sim.mutual_information(t1, t1, reduction="avg")
    with pytest.raises(ImageError, match="value_range"):
        sim.mutual_information(t1, t1, value_range=(1.0, -1.0))
    with pytest.raises(ImageError, match="dilation"):
        sim.mind_ssc(t1, t1, dilation=0)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_bad_shapes_raise_image_error(name, images_2d):
    t1 = images_2d["t1"]
    similarity = _build(name, 2)
    bad_pairs = [
        (t1, t1[..., :-1]),  # different shapes
        (t1[0], t1[0]),  # no batch axis
        (t1.expand(1, 2, -1, -1), t1.expand(1, 2, -1, -1)),  # two channels
        (t1.view(1, 1, -1), t1.view(1, 1, -1)),  # 1D
        ((t1 > 0).long(), (t1 > 0).long()),  # integer intensities
    ]
    for fixed, moving in bad_pairs:
        with pytest.raises(ImageError):
            similarity(fixed, moving)
    with pytest.raises(ImageError, match="mask"):
        similarity(t1, t1, torch.ones(1, 1, 10, 10))


# --------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dim", [2, 3])
def test_every_similarity_runs_on_cuda(dim, images_2d, images_3d):
    images = images_of(dim, images_2d, images_3d)
    fixed, other = images["t1"], images["t2"]
    moving = translate(other, (1.0,) * dim)
    mask = torch.ones_like(fixed)
    for name in ALL_NAMES:
        similarity = _build(name, dim)
        expected = similarity(fixed, moving, mask)
        similarity = similarity.to("cuda")
        cuda_moving = moving.cuda().requires_grad_(True)
        value = similarity(fixed.cuda(), cuda_moving, mask.cuda())
        value.backward()
        assert value.device.type == "cuda" and torch.isfinite(cuda_moving.grad).all()
        assert value.item() == pytest.approx(expected.item(), abs=1e-4), name
