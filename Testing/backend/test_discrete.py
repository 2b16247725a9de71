"""The discrete optimiser (imse.discrete, RegistrationSettings(optimizer="discrete")): its soft
minimum, its shift costs, recovery of known deformations in 2D and 3D, and bad settings. (What
it shares with the demons, anisotropic spacing, masks, the diffeomorphic mode, progress and
cancel and the command line: test_gradient_free.py.)"""

import pytest
import torch

from imse.data import make_pair
from imse.discrete import candidate_shifts, cost_against, shift_costs, soft_minimum_shift
from imse.errors import ImageError
from imse.register import RegistrationSettings, register_pair
from imse.similarity import build_similarity

from conftest import brain_endpoint_error, unregistered_endpoint_error

DISCRETE = dict(optimizer="discrete", levels=2, device="cpu")


def test_candidate_shifts_are_symmetric_and_include_zero():
    shifts = candidate_shifts(3, 1, 1.5)
    assert shifts.shape == (27, 3)
    assert torch.equal(shifts.sum(0), torch.zeros(3)) and (shifts.abs().sum(1) == 0).sum() == 1
    assert shifts.abs().max() == 1.5
    with pytest.raises(ImageError, match="radius"):
        candidate_shifts(2, 0, 1.0)


def test_soft_minimum_takes_the_cheapest_shift_and_stays_put_where_costs_are_flat():
    shifts = candidate_shifts(2, 1, 2.0)  # [9, 2] mm
    costs = torch.ones(1, 9, 4, 5)
    costs[0, 2, :2] = 0.0  # the left rows prefer shift 2
    moved = soft_minimum_shift(costs, shifts, temperature=0.01)
    assert torch.allclose(moved[0, :, :2], shifts[2].view(2, 1, 1).expand(2, 2, 5), atol=1e-4)
    assert torch.allclose(moved[0, :, 2:], torch.zeros(2, 2, 5), atol=1e-6)  # all candidates equal
    warmer = soft_minimum_shift(costs, shifts, temperature=10.0)
    assert 0 < warmer[0, :, 0, 0].norm() < shifts[2].norm()  # a softer minimum moves less far
    with pytest.raises(ImageError, match="temperature"):
        soft_minimum_shift(costs, shifts, temperature=0.0)


def test_shift_costs_find_a_known_shift_and_mind_describes_the_fixed_image_once():
    pair = make_pair(dim=2, moving_contrast="t2", spacing_mm=2.0, max_displacement_mm=0.01, seed=3)  # aligned T1 and T2
    fixed, moving = (torch.from_numpy(image.array)[None, None].float() for image in (pair.fixed, pair.moving))
    geometry = pair.fixed.geometry
    shifted = torch.roll(moving, shifts=-2, dims=-1)  # the T2 content moved 2 columns (4 mm) towards -x
    mind = build_similarity("mind", reduction="voxel")
    shifts = candidate_shifts(2, 2, 2.0)
    zero = torch.zeros(1, 2, *pair.fixed.shape)
    costs = shift_costs(cost_against(mind, fixed), shifted, zero, (geometry, geometry), shifts, 2.0)
    inner = costs[0, :, 10:-10, 10:-10].flatten(1).mean(1)
    assert torch.equal(shifts[inner.argmin()], torch.tensor([4.0, 0.0]))
    plain = shift_costs(lambda warped: mind(fixed, warped), shifted, zero, (geometry, geometry), shifts, 2.0)
    assert torch.allclose(costs, plain, atol=1e-6)


@pytest.mark.parametrize(
    "dim, moving_contrast, similarity, error_fraction",
    [(2, "t2", "mind", 0.55), (2, "ct", "mind", 0.65), (2, "t1", "mse", 0.6), (3, "t2", "mind", 0.9)],  # Adam with MIND: 0.71 (CT), 0.95 (3D)
)
def test_discrete_registration_recovers_a_known_deformation(dim, moving_contrast, similarity, error_fraction):
    spacing = 2.0 if dim == 2 else 4.0
    pair = make_pair(dim=dim, moving_contrast=moving_contrast, spacing_mm=spacing, max_displacement_mm=6.0, seed=11)
    result = register_pair(pair.fixed, pair.moving, RegistrationSettings(similarity=similarity, **DISCRETE))
    assert brain_endpoint_error(result.displacement, pair) < error_fraction * unregistered_endpoint_error(pair)
    assert (result.jacobian_determinant.array > 0).all()
    assert result.displacement.geometry == pair.fixed.geometry
    assert [entry["stage"] for entry in result.loss_curve] == ["discrete"] * (2 * len(RegistrationSettings().discrete_steps_voxels))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(similarity="mi"), "whole image"),
        (dict(similarity="mind+ncc"), "whole image"),
        (dict(regularization_weight=1.0), "leave the regularization weight unset"),
        (dict(discrete_steps_voxels=()), "discrete steps"),
        (dict(discrete_steps_voxels=(1.0, -0.5)), "discrete steps"),
        (dict(discrete_radius=0), "radius"),
        (dict(temperature=0.0), "temperature"),
        (dict(optimizer="newton"), "Unknown optimizer"),
    ],
)
def test_bad_discrete_settings_are_refused_before_any_work(changes, message):
    pair = make_pair(dim=2, moving_contrast="t2", spacing_mm=4.0, max_displacement_mm=4.0, seed=15)
    settings = RegistrationSettings(**{"similarity": "mind", **DISCRETE, **changes})
    with pytest.raises(ImageError, match=message):
        register_pair(pair.fixed, pair.moving, settings, progress=lambda *_: pytest.fail("work started"))
