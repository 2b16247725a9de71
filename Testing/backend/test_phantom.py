"""LV phantom: the reference frame, speckle that moves with the tissue, incompressibility,
the analytic motion and strain, corruption regions, reproducibility, bad input."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from imse import field
from imse.errors import ImageError
from imse.phantom import CORRUPTIONS, RingMotion, SectorCorruption, lv_phantom_2d, lv_phantom_3d

FRAMES = 6


@pytest.fixture(scope="module")
def phantom():
    return lv_phantom_2d(spacing_mm=(0.8, 1.2), frames=FRAMES)


def offsets_from_centre(phantom):
    shape = phantom.frames.shape[1:]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)[..., ::-1]
    return phantom.geometry.index_to_physical(index) - phantom.centre_mm


def in_plane_radius(phantom):
    return np.linalg.norm(offsets_from_centre(phantom)[..., :2], axis=-1)


def eroded(mask, voxels=2):
    return ndimage.binary_erosion(mask, iterations=voxels)


def warp_to_frame_0(phantom, t):
    """Frame t resampled at p + u_t(p): frame 0 again where the correspondence holds."""
    frame = torch.from_numpy(phantom.frames[t])[None, None]
    displacement = torch.from_numpy(phantom.displacements[t])[None]
    return field.warp(frame, displacement, phantom.geometry)[0, 0].numpy()


def correlation(first, second, mask):
    return np.corrcoef(first[mask], second[mask])[0, 1]


def test_layout_and_reference_frame(phantom):
    motion = phantom.motion
    assert phantom.frames.shape == (FRAMES, 96, 96) and phantom.frames.dtype == np.float32
    assert phantom.displacements.shape == (FRAMES, 2, 96, 96) and phantom.displacements.dtype == np.float32
    assert phantom.myocardium_masks.shape == (FRAMES, 96, 96) and phantom.myocardium_masks.dtype == bool
    assert phantom.frames.min() >= 0 and phantom.frames.max() <= 1
    assert phantom.long_axis is None
    # frame 0 is the undeformed reference: zero displacement and strain, the end-diastolic ring
    assert not phantom.displacements[0].any()
    assert all(not component[0].any() for component in phantom.analytic_strain())
    radius = in_plane_radius(phantom)
    ring = (radius >= motion.inner_radius_mm) & (radius <= motion.outer_radius_mm)
    np.testing.assert_array_equal(phantom.myocardium_masks[0], ring)
    # myocardium brighter than the blood pool and the background
    frame = phantom.frames[0]
    myocardium = frame[eroded(ring)].mean()
    assert myocardium > frame[radius < motion.inner_radius_mm - 2].mean() + 0.3
    assert myocardium > frame[radius > motion.outer_radius_mm + 2].mean() + 0.2


def test_speckle_moves_with_the_tissue(phantom):
    core = eroded(phantom.myocardium_masks[0])
    for t in range(1, FRAMES):
        assert correlation(warp_to_frame_0(phantom, t), phantom.frames[0], core) > 0.9
    # without the motion the texture no longer matches: the test is not trivially passed
    assert correlation(phantom.frames[FRAMES // 2], phantom.frames[0], core) < 0.5


def test_ring_contracts_and_keeps_its_area(phantom):
    motion, radius = phantom.motion, in_plane_radius(phantom)
    pixel_area = np.prod(phantom.geometry.spacing)
    exact_area = np.pi * (motion.outer_radius_mm**2 - motion.inner_radius_mm**2)
    for t in range(FRAMES):
        outer = motion.current_radius(motion.outer_radius_mm, t)
        ring = (radius >= motion.cavity_radius(t)) & (radius <= outer)
        assert np.mean(ring != phantom.myocardium_masks[t]) < 1e-3  # the mask is the moved ring
        assert phantom.myocardium_masks[t].sum() * pixel_area == pytest.approx(exact_area, rel=0.02)
    assert motion.cavity_radius(FRAMES / 2) == pytest.approx(motion.end_systolic_inner_radius_mm)


def test_analytic_motion_is_consistent(phantom):
    motion = phantom.motion
    points = offsets_from_centre(phantom)
    core = phantom.myocardium_masks[0]
    for t in (1.0, 2.5, FRAMES / 2):
        np.testing.assert_allclose(motion.to_material(motion.to_current(points, t), t), points, atol=1e-9)
        radial, circumferential = motion.principal_stretches(points, t)
        np.testing.assert_allclose((radial * circumferential)[core], 1.0, atol=1e-12)  # incompressible
        green_radial, green_circumferential = motion.strains(points, t, "green_lagrange")
        small_radial, small_circumferential = motion.strains(points, t, "infinitesimal")
        assert (green_radial[core] > 0).all() and (green_circumferential[core] < 0).all()
        np.testing.assert_allclose(green_radial, ((small_radial + 1) ** 2 - 1) / 2)
        np.testing.assert_allclose(green_circumferential, ((small_circumferential + 1) ** 2 - 1) / 2)
    # the frame-to-frame displacements chain into the displacement from frame 0
    steps = phantom.frame_to_frame_displacements()
    assert steps.shape == (FRAMES - 1, 2, 96, 96)
    position = points
    for t in range(1, FRAMES):
        np.testing.assert_allclose(np.moveaxis(steps[t - 1], 0, -1), motion.displacement(points, t - 1, t), atol=1e-5)
        position = position + motion.displacement(position, t - 1, t)
        np.testing.assert_allclose(np.moveaxis(phantom.displacements[t], 0, -1), position - points, atol=1e-4)


def test_corruptions_are_where_their_masks_say():
    dropout = SectorCorruption(frames=(2,), start_deg=0.0, width_deg=60.0)
    noise_burst = SectorCorruption(frames=(1, 3), start_deg=120.0, width_deg=45.0, strength=0.3)
    intensity_change = SectorCorruption(frames=(3,), start_deg=240.0, width_deg=60.0, strength=1.5)
    clean = lv_phantom_2d(frames=FRAMES, seed=3)
    corrupted = lv_phantom_2d(
        frames=FRAMES, seed=3, dropout=dropout, noise_burst=noise_burst, intensity_change=intensity_change
    )
    assert set(corrupted.corruption_masks) == set(CORRUPTIONS)
    assert all(not mask.any() for mask in clean.corruption_masks.values())
    offsets = offsets_from_centre(clean)
    angle = np.rad2deg(np.arctan2(offsets[..., 1], offsets[..., 0])) % 360
    for kind, corruption in zip(CORRUPTIONS, (dropout, noise_burst, intensity_change)):
        masks = corrupted.corruption_masks[kind]
        sector = (angle - corruption.start_deg) % 360 < corruption.width_deg
        for t in range(FRAMES):
            np.testing.assert_array_equal(masks[t], sector if t in corruption.frames else np.zeros_like(sector))
    anywhere = np.any(list(corrupted.corruption_masks.values()), axis=0)
    np.testing.assert_array_equal(corrupted.frames[~anywhere], clean.frames[~anywhere])
    np.testing.assert_array_equal(corrupted.displacements, clean.displacements)
    dropped = corrupted.corruption_masks["dropout"][2]
    assert not corrupted.frames[2][dropped].any()
    noisy = corrupted.corruption_masks["noise_burst"][1]
    assert np.std(corrupted.frames[1][noisy] - clean.frames[1][noisy]) > 0.15
    brighter = corrupted.corruption_masks["intensity_change"][3] & ~corrupted.corruption_masks["noise_burst"][3]
    np.testing.assert_allclose(corrupted.frames[3][brighter], np.clip(1.5 * clean.frames[3][brighter], 0, 1), rtol=1e-6)
    # the correspondence breaks inside the dropout and holds outside it
    core = eroded(corrupted.myocardium_masks[0])
    warped = warp_to_frame_0(corrupted, 2)
    outside = core & ~ndimage.binary_dilation(corrupted.corruption_masks["dropout"][2], iterations=3)
    assert correlation(warped, corrupted.frames[0], outside) > 0.9
    assert np.abs(warped - corrupted.frames[0])[core & dropped].mean() > 0.4


def test_reproducible_with_the_seed():
    first, second, other = (lv_phantom_2d(shape=(72, 72), frames=3, seed=seed) for seed in (7, 7, 8))
    np.testing.assert_array_equal(first.frames, second.frames)
    assert not np.allclose(first.frames, other.frames)
    np.testing.assert_array_equal(first.displacements, other.displacements)  # the motion is not random


def test_3d_phantom_shortens_and_keeps_its_volume():
    phantom = lv_phantom_3d(shape=(14, 64, 64), frames=4, length_mm=16.0)
    motion = phantom.motion
    assert phantom.frames.shape == (4, 14, 64, 64) and phantom.displacements.shape == (4, 3, 14, 64, 64)
    np.testing.assert_array_equal(phantom.long_axis, [0, 0, 1])
    core = eroded(phantom.myocardium_masks[0])
    for t in range(1, 4):
        assert correlation(warp_to_frame_0(phantom, t), phantom.frames[0], core) > 0.9
    # longitudinal strain is uniform; the in-plane area of a slice grows as the heart shortens
    longitudinal = phantom.analytic_strain("infinitesimal")[2]
    np.testing.assert_allclose(longitudinal[2], -motion.longitudinal_shortening)
    middle = phantom.frames.shape[1] // 2
    areas = phantom.myocardium_masks[:, middle].sum(axis=(1, 2)) * np.array(
        [motion.longitudinal_stretch(t) for t in range(4)]
    )
    np.testing.assert_allclose(areas, areas[0], rtol=0.02)
    # the shell is open and finite along z: no myocardium in the end slices
    assert not phantom.myocardium_masks[:, 0].any() and not phantom.myocardium_masks[:, -1].any()


def test_bad_input_raises_image_error():
    with pytest.raises(ImageError, match="radii"):
        RingMotion(inner_radius_mm=10.0, outer_radius_mm=8.0, end_systolic_inner_radius_mm=6.0, frames=4)
    with pytest.raises(ImageError, match="at least 2 frames"):
        RingMotion(10.0, 18.0, 6.0, frames=1)
    with pytest.raises(ImageError, match="does not fit"):
        lv_phantom_2d(shape=(40, 40), frames=2)
    with pytest.raises(ImageError, match="outside the cycle"):
        lv_phantom_2d(frames=3, dropout=SectorCorruption(frames=(5,), start_deg=0.0))
    with pytest.raises(ImageError, match="Unknown strain measure"):
        lv_phantom_2d(shape=(72, 72), frames=2).analytic_strain("almansi")
