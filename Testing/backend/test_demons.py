"""The demons optimiser (imse.demons, RegistrationSettings(optimizer="demons")): its force, the
pair in one modality that MSE and IMSE give it, recovery of known mono-modal deformations in 2D
and 3D, and bad settings. (What it shares with the discrete search: test_gradient_free.py;
driven by the shipped evaluator: test_shipped_models.py.)"""

import numpy as np
import pytest
import torch

from imse.data import make_pair
from imse.demons import demons_force
from imse.errors import ImageError
from imse.evaluator import predict
from imse.field import index_gradient
from imse.geometry import Geometry
from imse.image import Image
from imse.networks import FlipAveraged, RotationAveraged, Zoomed, build_network
from imse.register import RegistrationSettings, register_pair
from imse.similarity import RESIDUAL_SIMILARITIES, build_similarity

from conftest import brain_endpoint_error, unregistered_endpoint_error

DEMONS = dict(optimizer="demons", levels=2, device="cpu")


def test_index_gradient_is_per_voxel_in_itk_order():
    rows, columns = torch.meshgrid(torch.arange(5.0), torch.arange(6.0), indexing="ij")
    image = (0.5 * columns + 2.0 * rows)[None, None]  # x = columns, y = rows
    gradient = index_gradient(image)
    assert gradient.shape == (1, 1, 2, 5, 6)
    assert torch.allclose(gradient[0, 0, 0], torch.full((5, 6), 0.5)) and torch.allclose(gradient[0, 0, 1], torch.full((5, 6), 2.0))
    assert torch.equal(index_gradient(torch.ones(1, 1, 1, 4, 4))[0, 0, 2], torch.zeros(1, 4, 4))  # one slice: no z derivative


def test_demons_force_points_to_the_match_and_is_at_most_half_a_voxel():
    columns = torch.arange(12.0).expand(8, 12)
    fixed = (0.1 * columns)[None, None]
    warped = (0.1 * (columns - 1.0))[None, None]  # the fixed ramp one column later: sample 1 voxel further along +x
    force = demons_force(fixed, warped)
    assert torch.allclose(force[0, 0], torch.full((8, 12), 0.5), atol=1e-5)  # r = g = 0.1: r g / (g^2 + r^2)
    assert torch.allclose(force[0, 1], torch.zeros(8, 12), atol=1e-6)
    steep = demons_force(fixed, fixed - 5.0)  # a large residual: the force shrinks, it never jumps
    assert steep.abs().max() <= 0.5
    flat = demons_force(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    assert torch.equal(flat, torch.zeros(1, 2, 4, 4))  # no residual and no gradient: no move, no NaN


@pytest.mark.parametrize("max_step", [0.25, 1.0, 2.0])
def test_demons_force_scales_to_its_maximum_step(max_step):
    columns = torch.arange(12.0).expand(8, 12)
    fixed = (0.1 * columns)[None, None]
    force = demons_force(fixed, fixed - 0.1, max_step)  # r = g: the longest step
    assert torch.allclose(force[0, 0], torch.full((8, 12), max_step), atol=1e-5)
    assert torch.allclose(force, 2.0 * max_step * demons_force(fixed, fixed - 0.1), atol=1e-6)
    for residual in (0.02, 0.5, 5.0):  # residuals far from the gradient: shorter steps
        assert demons_force(fixed, fixed - residual, max_step).abs().max() < max_step


def test_imse_gives_the_pair_in_its_trained_modality():
    """For the reference in channel 1, the other image is seen as ``reference - 2 E``, so the
    residual ``fixed - moving`` is ``2 E`` (reference fixed) or ``-2 E`` (reference moving)."""
    torch.manual_seed(0)
    network = build_network("light", 2)
    torch.nn.init.normal_(network.head.weight, std=0.1)  # the head starts at zero: E would be 0 for every pair
    fixed, moving = torch.rand(1, 1, 16, 20) * 2 - 1, torch.rand(1, 1, 16, 20) * 2 - 1
    as_fixed = build_similarity("imse", network=network, reference="fixed")
    fixed_like, moving_like = as_fixed.in_common_modality(fixed, moving)
    assert torch.equal(fixed_like, fixed)
    assert torch.allclose(fixed_like - moving_like, 2 * predict(network, moving, fixed), atol=1e-6)
    assert (fixed_like - moving_like).abs().max() > 0.01
    as_moving = build_similarity("imse", network=network, reference="moving")
    fixed_like, moving_like = as_moving.in_common_modality(fixed, moving)
    assert torch.equal(moving_like, moving)
    assert torch.allclose(fixed_like - moving_like, -2 * predict(network, fixed, moving), atol=1e-6)
    with pytest.raises(ImageError, match="one modality"):
        build_similarity("imse", network=network, both_orders=True).in_common_modality(fixed, moving)
    with pytest.raises(ImageError, match="outside"):
        as_fixed.in_common_modality(fixed * 3, moving)
    flipped = build_similarity("imse", network=network, reference="fixed", flip_average=True)
    fixed_like, moving_like = flipped.in_common_modality(fixed, moving)
    assert torch.allclose(fixed_like - moving_like, 2 * predict(FlipAveraged(network), moving, fixed), atol=1e-6)
    zoomed = build_similarity("imse", network=network, reference="fixed", flip_average=True, zoom=2.0)
    fixed_like, moving_like = zoomed.in_common_modality(fixed, moving)
    assert torch.allclose(fixed_like - moving_like, 2 * predict(Zoomed(FlipAveraged(network), 2.0), moving, fixed), atol=1e-6)
    assert zoomed.zoom == 2.0 and "zoom=2.0" in repr(zoomed)
    rotated = build_similarity("imse", network=network, reference="fixed", flip_average=True, rotation=45.0, zoom=2.0)
    fixed_like, moving_like = rotated.in_common_modality(fixed, moving)
    expected = 2 * predict(Zoomed(RotationAveraged(FlipAveraged(network), 45.0), 2.0), moving, fixed)
    assert torch.allclose(fixed_like - moving_like, expected, atol=1e-6) and "rotation=45.0" in repr(rotated)
    cycled = build_similarity("imse", network=network, reference="fixed", flip_average=True, rotation=45.0, zoom=2.0, orientations="cycle")
    residuals = [torch.sub(*cycled.in_common_modality(fixed, moving)) for _ in range(12)]  # each call the next orientation
    assert not torch.allclose(residuals[0], residuals[1])
    assert torch.allclose(torch.sub(*cycled.in_common_modality(fixed, moving)), residuals[0])  # the thirteenth call starts again
    assert torch.allclose(sum(residuals) / 12, expected, atol=1e-5) and "orientations='cycle'" in repr(cycled)
    with pytest.raises(ImageError, match="positive factor"):
        build_similarity("imse", network=network, zoom=0.0)
    volume_fixed, volume_moving = fixed.expand(1, 1, 6, *fixed.shape[2:]).contiguous(), moving.expand(1, 1, 6, *moving.shape[2:]).contiguous()
    volume_fixed = volume_fixed * torch.linspace(0.5, 1.0, 6).view(1, 1, 6, 1, 1)  # the slices differ along every axis
    axes_cycled = build_similarity("imse", network=network, reference="fixed", flip_average=True, orientations="cycle", slice_axes="all")
    residuals = [torch.sub(*axes_cycled.in_common_modality(volume_fixed, volume_moving)) for _ in range(12)]  # 4 flips x 3 axes
    every_axis = build_similarity("imse", network=network, reference="fixed", flip_average=True, slice_axes="all")
    assert torch.allclose(sum(residuals) / 12, torch.sub(*every_axis.in_common_modality(volume_fixed, volume_moving)), atol=1e-5)
    first_axis = build_similarity("imse", network=network, reference="fixed", flip_average=True, orientations="cycle")
    assert torch.allclose(torch.sub(*first_axis.in_common_modality(volume_fixed, volume_moving)), residuals[0], atol=1e-6)  # step 0: axis 0
    assert not torch.allclose(residuals[1], torch.sub(*first_axis.in_common_modality(volume_fixed, volume_moving)), atol=1e-4)  # step 1: axis 1
    with pytest.raises(ImageError, match="orientations"):
        build_similarity("imse", network=network, orientations="random")
    mse = build_similarity("mse")
    assert all(a is b for a, b in zip(mse.in_common_modality(fixed, moving), (fixed, moving)))
    assert set(RESIDUAL_SIMILARITIES) == {"mse", "imse"}


@pytest.mark.parametrize("dim, spacing, error_fraction", [(2, 2.0, 0.75), (3, 3.0, 0.9)])  # measured: 0.62 (2D), 0.77 (3D)
def test_demons_recover_a_known_mono_modal_deformation(dim, spacing, error_fraction):
    pair = make_pair(dim=dim, moving_contrast="t1", spacing_mm=spacing, max_displacement_mm=6.0, seed=11)
    result = register_pair(pair.fixed, pair.moving, RegistrationSettings(similarity="mse", **DEMONS))
    assert brain_endpoint_error(result.displacement, pair) < error_fraction * unregistered_endpoint_error(pair)
    assert (result.jacobian_determinant.array > 0).all()
    assert result.displacement.geometry == pair.fixed.geometry
    assert [entry["stage"] for entry in result.loss_curve] == ["demons"] * (2 * RegistrationSettings().demons_iterations)
    finest = [entry["total"] for entry in result.loss_curve if entry["level"] == 1]
    assert finest[-1] < finest[0]  # the mean absolute residual fell


def test_demons_average_the_field_over_their_last_steps():
    """``demons_average_last`` k: the result is the mean of the fields of the last k steps, which
    for a deterministic residual (MSE) is the mean of the results of n - k + 1 ... n steps."""
    pair = make_pair(dim=2, moving_contrast="t1", spacing_mm=4.0, max_displacement_mm=4.0, seed=15)

    def field(**changes):
        settings = RegistrationSettings(similarity="mse", optimizer="demons", levels=1, device="cpu", **changes)
        return register_pair(pair.fixed, pair.moving, settings).displacement.array

    last = field(demons_iterations=5)
    averaged = field(demons_iterations=5, demons_average_last=3)
    assert np.allclose(averaged, np.mean([field(demons_iterations=steps) for steps in (3, 4, 5)], axis=0), atol=1e-5)
    assert np.abs(averaged - last).max() > 1e-3 and np.array_equal(field(demons_iterations=5, demons_average_last=1), last)


def test_slices_across_every_axis_are_refused_on_an_anisotropic_grid():
    """A 2D evaluator shown a volume's slices across all three axes would see stretched images
    where the voxels are anisotropic: refused, with what to do; an isotropic grid passes."""
    pair = make_pair(dim=3, moving_contrast="t2", spacing_mm=4.0, seed=15)
    stretched = Geometry((4.0, 4.0, 8.0), pair.fixed.geometry.origin, pair.fixed.geometry.direction)
    fixed, moving = Image(pair.fixed.array, stretched), Image(pair.moving.array, stretched)
    settings = RegistrationSettings(similarity="imse", similarity_options={"slice_axes": "all"}, **DEMONS)
    with pytest.raises(ImageError, match="isotropic grid"):
        register_pair(fixed, moving, settings, progress=lambda *_: pytest.fail("work started"))
    settings.grid_spacing_mm = 4.0  # the check passes: the next one asks for the evaluator
    with pytest.raises(ImageError, match="needs an evaluator"):
        register_pair(fixed, moving, settings, progress=lambda *_: pytest.fail("work started"))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(similarity="mind"), "residual"),
        (dict(similarity="mi"), "residual"),
        (dict(similarity="mse+imse"), "residual"),
        (dict(regularization_weight=1.0), "leave the regularization weight unset"),
        (dict(demons_iterations=0), "at least 1 iteration"),
        (dict(demons_max_step_voxels=0.0), "maximum step"),
        (dict(demons_max_step_voxels=float("nan")), "maximum step"),
        (dict(demons_average_last=21), "average the field over 0 to 20"),
        (dict(demons_average_last=-1), "average the field"),
        (dict(similarity="imse", similarity_options={"orientations": "cycle"}, optimizer="adam", levels=1), "for the demons"),
        (dict(similarity="imse", similarity_options={"orientations": "cycle"}, optimizer="discrete", levels=1), "for the demons"),
        (dict(optimizer="adam", demons_average_last=4), "the adam optimiser would ignore it"),
        (dict(optimizer="discrete", demons_average_last=4), "the discrete optimiser would ignore it"),
    ],
)
def test_bad_demons_settings_are_refused_before_any_work(changes, message):
    pair = make_pair(dim=2, moving_contrast="t1", spacing_mm=4.0, max_displacement_mm=4.0, seed=15)
    settings = RegistrationSettings(**{"similarity": "mse", **DEMONS, **changes})
    with pytest.raises(ImageError, match=message):
        register_pair(pair.fixed, pair.moving, settings, progress=lambda *_: pytest.fail("work started"))
