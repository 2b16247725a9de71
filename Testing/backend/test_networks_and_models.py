"""Evaluator networks (shapes, cost, padding) and model files (safetensors + JSON card,
registry, checkpoints)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from imse.errors import ImageError
from imse.evaluator import predict, predict_tiled
from imse.models import ModelCard, find_model, list_models, load_checkpoint, load_model, save_checkpoint, save_model
from imse.networks import (
    FlipAveraged,
    LightUNet,
    OrientationCycled,
    RotationAveraged,
    Zoomed,
    build_network,
    count_multiply_adds,
    max_pool_by_two,
    network_dimension,
    pad_to_multiple,
    rotate_in_plane,
    size_multiple,
)
from imse.spatial_augment import affine_displacement, apply_displacement


@pytest.mark.parametrize("dim, shape", [(2, (1, 2, 40, 48)), (3, (1, 2, 16, 24, 16))])
@pytest.mark.parametrize("architecture", ["light", "paper"])
def test_networks_keep_spatial_size_and_output_range(architecture, dim, shape):
    network = build_network(architecture, dim)
    output = network(torch.randn(shape) * 3)
    assert output.shape == (1, 1, *shape[2:])
    assert output.abs().max() <= 1.0  # tanh


@pytest.mark.parametrize("dim", [2, 3])
def test_untrained_light_network_says_aligned_and_its_head_sees_the_raw_inputs(dim):
    network = build_network("light", dim)
    x = torch.randn(2, 2, *([16] * dim))
    assert torch.equal(network(x), torch.zeros(2, 1, *([16] * dim)))  # zero-initialised head
    with torch.no_grad():
        network.head.weight[0, -2:] = torch.tensor([-0.5, 0.5]).view(2, *([1] * dim))  # (ch1 - ch0) / 2
    assert torch.allclose(network(x), torch.tanh((x[:, 1:] - x[:, :1]) / 2), atol=1e-6)


@pytest.mark.parametrize("dim, shape", [(2, (1, 2, 240, 240)), (3, (1, 2, 48, 128, 128))])
def test_light_network_costs_under_a_tenth_of_the_paper(dim, shape):
    light = count_multiply_adds(build_network("light", dim), shape)
    paper = count_multiply_adds(build_network("paper", dim), shape)
    assert light < 0.1 * paper


def test_multiply_add_count_of_a_known_convolution():
    convolution = torch.nn.Conv2d(2, 4, 3, padding=1)
    assert count_multiply_adds(convolution, (1, 2, 10, 10)) == 10 * 10 * 4 * 2 * 9


def test_padding_to_multiple_and_unet_size_check():
    x = torch.randn(1, 2, 13, 17)
    padded, crop = pad_to_multiple(x, 8)
    assert padded.shape == (1, 2, 16, 24)
    assert torch.equal(padded[crop], x)
    with pytest.raises(ImageError, match="divisible by 8"):
        LightUNet(2)(x)
    assert predict(LightUNet(2), x[:, :1], x[:, 1:]).shape == (1, 1, 13, 17)  # predict pads for us


def test_tiled_prediction_matches_whole_for_a_local_network():
    """A network without instance normalisation is local, so tiles blended with overlap must
    agree with one pass over the whole volume away from tile borders."""
    torch.manual_seed(0)
    local = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 1, 3, padding=1))
    other, reference = torch.randn(1, 1, 40, 36, 44), torch.randn(1, 1, 40, 36, 44)
    whole = predict(local, other, reference)
    tiled = predict_tiled(local, other, reference, tile=24, overlap=12)
    assert torch.allclose(whole, tiled, atol=1e-5)
    with pytest.raises(ImageError, match="overlap"):
        predict_tiled(local, other, reference, tile=16, overlap=16)


def make_card(name="tiny", dim=2):
    return ModelCard(
        name=name,
        task="evaluator",
        architecture="light",
        dim=dim,
        modality="T1",
        normalization={"method": "percentile", "percentiles": [0.5, 99.5]},
        patch_size=[32, 32],
        spacing_mm=2.0,
        training={"command": "test"},
    )


def test_model_round_trip_and_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("IMSE_MODEL_DIR", str(tmp_path))
    network = build_network("light", 2)
    weights = save_model(network, make_card(), tmp_path)
    assert weights.name == "tiny.safetensors"
    assert json.loads(weights.with_suffix(".json").read_text())["modality"] == "T1"
    loaded = load_model(weights)
    x = torch.randn(1, 2, 32, 32)
    assert torch.equal(loaded.network(x), network.eval()(x))
    assert any(card.name == "tiny" for _, card in list_models(task="evaluator", dim=2))
    assert not any(card.name == "tiny" for _, card in list_models(dim=3))
    assert find_model("tiny") == weights
    with pytest.raises(ImageError, match="No model named 'absent'"):
        find_model("absent")


def test_missing_or_broken_model_files_raise_clear_errors(tmp_path):
    save_model(build_network("light", 2), make_card(), tmp_path)
    (tmp_path / "tiny.safetensors").unlink()
    with pytest.raises(ImageError, match="needs both"):
        load_model(tmp_path / "tiny.json")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "broken.safetensors").write_bytes(b"")
    with pytest.raises(ImageError, match="unreadable"):
        load_model(tmp_path / "broken")


def test_checkpoint_round_trip_keeps_optimizer_state(tmp_path):
    network = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    network(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(7)
    save_checkpoint(tmp_path / "last", {"model": network.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "step": 5})
    state = load_checkpoint(tmp_path / "last")
    assert state["step"] == 5
    restored = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    restored.load_state_dict(state["optimizer"])
    original_state, restored_state = optimizer.state_dict()["state"], restored.state_dict()["state"]
    assert set(original_state) == set(restored_state) == {0, 1}  # integer parameter ids survive
    assert torch.equal(original_state[0]["exp_avg"], restored_state[0]["exp_avg"])
    replay = torch.Generator()
    replay.set_state(state["generator"])
    assert torch.equal(torch.rand(3, generator=replay), torch.rand(3, generator=torch.Generator().manual_seed(7)))


class _CountingNetwork(torch.nn.Module):
    """Adds a ramp along the last axis to the first channel (not flip-equivariant) and counts
    its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x[:, :1] + torch.arange(x.shape[-1], dtype=x.dtype)


@pytest.mark.parametrize("shape, passes", [((2, 2, 6, 5), 4), ((1, 2, 4, 6, 5), 8)])
def test_flip_averaging_makes_a_network_flip_equivariant(shape, passes):
    torch.manual_seed(0)
    counting = _CountingNetwork()
    averaged = FlipAveraged(counting)
    x = torch.rand(shape)
    output = averaged(x)
    assert counting.calls == passes and output.shape == (shape[0], 1, *shape[2:])
    ramp_mean = (x.shape[-1] - 1) / 2  # the ramp and its mirror image average to a constant
    assert torch.allclose(output, x[:, :1] + ramp_mean)
    for axes in [(-1,), (-2,), (-1, -2)]:
        assert torch.allclose(averaged(x.flip(axes)), output.flip(axes), atol=1e-6)


def test_flip_averaging_keeps_the_network_dimension_size_multiple_and_gradients():
    torch.manual_seed(0)
    network = build_network("light", 2)
    torch.nn.init.normal_(network.head.weight)  # the head starts at zero, and so would the gradient
    averaged = FlipAveraged(network)
    assert network_dimension(averaged) == 2 and size_multiple(averaged) == size_multiple(network)
    other, reference = torch.rand(1, 1, 16, 20, requires_grad=True), torch.rand(1, 1, 16, 20)
    predict(averaged, other, reference).abs().mean().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(2, 2, 8, 8), (1, 2, 3, 8, 8)])
def test_in_plane_rotation_turns_every_slice_about_the_grid_centre(shape):
    """A quarter turn moves voxel centres onto voxel centres: it is torch's rot90 exactly, slice
    by slice for a volume; a turn by an angle and back returns the image up to interpolation
    blur, with its total kept (an object well inside the grid)."""
    torch.manual_seed(0)
    x = torch.rand(shape)
    assert torch.allclose(rotate_in_plane(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-6)
    square = torch.zeros(1, 1, 40, 60)
    square[..., 15:25, 22:32] = 1.0
    turned = rotate_in_plane(square, 30.0)
    assert turned.shape == square.shape and abs(float(turned.sum() - square.sum())) < 0.5
    assert (turned - square).abs().sum() > 10  # it moved
    assert (rotate_in_plane(turned, -30.0) - square).abs().mean() < 0.02


@pytest.mark.parametrize("degrees", [60.0, -17.0])
def test_in_plane_rotation_is_the_training_augmentations_rotation(degrees):
    """rotate_in_plane, kept for its speed in every demons step, turns as the shared warp of
    :mod:`imse.spatial_augment` does (the rotation matrix about the centre, ITK axis order)."""
    x = torch.rand(2, 2, 30, 44, generator=torch.Generator().manual_seed(1))
    angle = math.radians(degrees)
    matrix = torch.tensor([[[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]])
    shared = apply_displacement(x, affine_displacement(matrix, torch.zeros(1, 2), (30, 44)))
    assert torch.allclose(rotate_in_plane(x, degrees), shared, atol=1e-4)


def test_rotation_averaging_averages_the_turned_passes_and_keeps_gradients():
    """With a quarter turn, the average of a network that adds a ramp along W is the input plus
    the mean of that ramp and its turned copies; a light network keeps its dimension, size
    multiple and gradients; an angle outside (0, 90] is refused."""
    counting = _CountingNetwork()
    averaged = RotationAveraged(counting, 90.0)
    x = torch.rand(1, 2, 6, 6)
    output = averaged(x)
    ramp = torch.arange(6, dtype=x.dtype).expand(6, 6)
    expected = x[:, :1] + (ramp + torch.rot90(ramp, -1) + torch.rot90(ramp, 1)) / 3
    assert counting.calls == 3 and torch.allclose(output, expected, atol=1e-5)
    torch.manual_seed(0)
    network = build_network("light", 2)
    torch.nn.init.normal_(network.head.weight)
    rotated = RotationAveraged(FlipAveraged(network), 45.0)
    assert network_dimension(rotated) == 2 and size_multiple(rotated) == size_multiple(network) and "degrees=45.0" in repr(rotated)
    other, reference = torch.rand(1, 1, 16, 20, requires_grad=True), torch.rand(1, 1, 16, 20)
    error = predict(rotated, other, reference)
    assert error.shape == (1, 1, 16, 20) and not torch.allclose(error, predict(FlipAveraged(network), other, reference))
    error.abs().mean().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    for degrees in (0.0, -10.0, 120.0, float("nan")):
        with pytest.raises(ImageError, match="rotation"):
            RotationAveraged(network, degrees)


class _RasterNetwork(_CountingNetwork):
    """Adds the raster index of each voxel (no flip or turn leaves it unchanged) to the first
    channel, and counts its calls."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        super().forward(x)
        return x[:, :1] + torch.arange(x[0, 0].numel(), dtype=x.dtype).reshape(x.shape[2:])


@pytest.mark.parametrize("shape, flips, degrees, cycle", [((1, 2, 8, 8), True, 45.0, 12), ((1, 2, 8, 8), True, 0.0, 4), ((1, 2, 8, 8), False, 45.0, 3), ((1, 2, 4, 6, 6), True, 45.0, 24)])
def test_orientation_cycling_runs_one_pass_a_call_and_averages_to_the_mean_of_every_orientation(shape, flips, degrees, cycle):
    """One network pass a call, the same orientation until an advance, and a new combination of
    flip and turn after each until all have come: the mean over a cycle is what the averaging
    wrappers give in one call."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    counting = _RasterNetwork()
    cycled = OrientationCycled(counting, flips, degrees)
    outputs = []
    for _ in range(cycle):
        outputs.append(cycled(x))
        assert torch.equal(cycled(x), outputs[-1])  # no advance, no new orientation
        cycled.advance()
    assert counting.calls == 2 * cycle and len({tuple(output.flatten().tolist()) for output in outputs}) == cycle  # every advance a new one
    averaged = FlipAveraged(_RasterNetwork()) if flips else _RasterNetwork()
    averaged = RotationAveraged(averaged, degrees) if degrees else averaged
    assert torch.allclose(sum(outputs) / cycle, averaged(x), atol=1e-4)
    assert torch.equal(cycled(x), outputs[0])  # the cycle starts again


def test_orientation_cycling_shows_every_slice_of_a_volume_the_same_orientation():
    """A 2D network given a volume sees its slices one call each on the CPU (imse.evaluator.predict):
    within a step, between advances, every slice is shown the same flip and turn."""

    class PlanarRaster(_RasterNetwork):
        dim = 2

    other, reference = (torch.rand(1, 1, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) for seed in (4, 5))
    cycled = OrientationCycled(PlanarRaster(), True, 45.0)
    cycled.advance()  # a flip and a turn
    volume = predict(cycled, other, reference)
    for k in range(3):
        assert torch.allclose(volume[:, :, k], predict(cycled, other[:, :, k], reference[:, :, k]))
    assert not torch.allclose(volume[:, :, 0], predict(PlanarRaster(), other[:, :, 0], reference[:, :, 0]))  # not the plain network


def test_orientation_cycling_keeps_the_network_dimension_size_multiple_and_gradients():
    torch.manual_seed(0)
    network = build_network("light", 2)
    torch.nn.init.normal_(network.head.weight)
    cycled = OrientationCycled(network, True, 60.0)
    assert network_dimension(cycled) == 2 and size_multiple(cycled) == size_multiple(network) and "degrees=60.0" in repr(cycled)
    other, reference = torch.rand(1, 1, 16, 20, requires_grad=True), torch.rand(1, 1, 16, 20)
    predict(cycled, other, reference).abs().mean().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    plain = OrientationCycled(network, False, 0.0)  # nothing to cycle: the network itself
    assert torch.equal(predict(plain, other, reference), predict(network, other, reference))
    for degrees in (-10.0, 120.0, float("nan")):
        with pytest.raises(ImageError, match="rotation"):
            OrientationCycled(network, True, degrees)


class _ShapeRecordingNetwork(torch.nn.Module):
    """Returns its first channel and records the spatial shape it was given."""

    dim = 2
    size_multiple = 8

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[2:]))
        return x[:, :1]


@pytest.mark.parametrize("shape, zoomed", [((1, 2, 10, 13), (24, 32)), ((2, 2, 5, 6, 7), (16, 16, 16))])
def test_zooming_shows_the_network_smaller_voxels_and_gives_back_the_input_grid(shape, zoomed):
    network = _ShapeRecordingNetwork()
    zoom = Zoomed(network, 2.0)
    ramp = sum(torch.arange(size, dtype=torch.float32).view(*[-1 if a == axis else 1 for a in range(len(shape) - 2)]) * (axis + 1) for axis, size in enumerate(shape[2:]))
    x = torch.stack([ramp, -ramp]).expand(shape[0], 2, *shape[2:])
    output = zoom(x)
    assert network.seen == [zoomed]  # 2x the size, padded up to the network's multiple of 8
    assert output.shape == (shape[0], 1, *shape[2:]) and size_multiple(zoom) == 1 and network_dimension(zoom) == 2
    inner = (slice(None), slice(None), *[slice(1, -1)] * (len(shape) - 2))
    assert torch.allclose(output[inner], x[:, :1][inner], atol=1e-4)  # linear up and down returns a ramp unchanged inside


def test_zooming_a_light_network_keeps_gradients_and_refuses_a_bad_factor():
    torch.manual_seed(0)
    network = build_network("light", 2)
    torch.nn.init.normal_(network.head.weight)
    zoomed = Zoomed(FlipAveraged(network), 1.5)
    other, reference = torch.rand(1, 1, 15, 21, requires_grad=True), torch.rand(1, 1, 15, 21)
    error = predict(zoomed, other, reference)
    assert error.shape == (1, 1, 15, 21) and not torch.allclose(error, predict(network, other, reference))
    error.abs().mean().backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    for factor in (0.0, -1.0, float("nan")):
        with pytest.raises(ImageError, match="positive factor"):
            Zoomed(network, factor)


@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 9), (1, 2, 4, 6, 8), (1, 1, 5, 6, 7)])
def test_max_pool_by_two_is_pytorch_s_max_pooling_and_passes_gradients(shape):
    """Even and odd sizes (floored) in 2D and 3D; each maximum gets its gradient, as PyTorch's."""
    x = torch.randn(shape, requires_grad=True)
    pooled = max_pool_by_two(x)
    assert torch.equal(pooled, (F.max_pool2d if len(shape) == 4 else F.max_pool3d)(x, 2))
    pooled.sum().backward()
    assert torch.equal(x.grad, torch.autograd.grad((F.max_pool2d if len(shape) == 4 else F.max_pool3d)(x, 2).sum(), x)[0])
