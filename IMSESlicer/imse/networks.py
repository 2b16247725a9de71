"""Evaluator networks, 2D and 3D, built from one set of dimension-generic layers.

* ``paper``: the IMSE paper's CycleGAN-style ResNet generator (7x7 convolution to 64
  channels, two stride-2 convolutions to 128 and 256, nine residual blocks, two transposed
  convolutions back to 64, 7x7 convolution to the output, tanh), instance normalisation
  without affine parameters, reflection padding in 2D and replication padding in 3D.
  About 11 M parameters in 2D.
* ``light``: our U-Net (channels 16-32-64-128 in 2D and 16-30-60-120 in 3D by default, two
  3x3 convolutions per level, a zero-initialised 1x1 head over the last features and the raw
  inputs,
  instance normalisation, LeakyReLU, max-pool down, linear upsampling, tanh), under a tenth of
  the paper's multiply-adds at the same input size (see :func:`count_multiply_adds`).

Inputs are ``[N, in_channels, (D,) H, W]``; the output has the same spatial size. The light
U-Net needs sizes divisible by ``2 ** (levels - 1)``; :func:`pad_to_multiple` provides them.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ImageError

ARCHITECTURES = ("light", "paper")
# 3D: under a tenth of the paper's cost (0.094), and inflatable from the 2D widths (imse.inflation)
LIGHT_CHANNELS = {2: (16, 32, 64, 128), 3: (16, 30, 60, 120)}


def _conv(dim: int) -> type[nn.Module]:
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _norm(dim: int, channels: int) -> nn.Module:
    return (nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d)(channels, affine=False)


def _same_padding(dim: int, size: int) -> nn.Module:
    """Reflection padding in 2D, replication in 3D (PyTorch has no 3D reflection for all sizes)."""
    return (nn.ReflectionPad2d if dim == 2 else nn.ReplicationPad3d)(size)


class ResidualBlock(nn.Module):
    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        conv = _conv(dim)
        self.body = nn.Sequential(
            _same_padding(dim, 1), conv(channels, channels, 3), _norm(dim, channels), nn.ReLU(inplace=True),
            _same_padding(dim, 1), conv(channels, channels, 3), _norm(dim, channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The IMSE paper's evaluator network (see the module docstring)."""

    def __init__(self, dim: int, in_channels: int = 2, out_channels: int = 1, width: int = 64, blocks: int = 9) -> None:
        super().__init__()
        conv = _conv(dim)
        transposed = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
        layers: list[nn.Module] = [_same_padding(dim, 3), conv(in_channels, width, 7), _norm(dim, width), nn.ReLU(True)]
        for level in range(2):
            channels = width * 2**level
            layers += [conv(channels, 2 * channels, 3, stride=2, padding=1), _norm(dim, 2 * channels), nn.ReLU(True)]
        layers += [ResidualBlock(dim, width * 4) for _ in range(blocks)]
        for level in (2, 1):
            channels = width * 2**level
            layers += [
                transposed(channels, channels // 2, 3, stride=2, padding=1, output_padding=1),
                _norm(dim, channels // 2),
                nn.ReLU(True),
            ]
        layers += [_same_padding(dim, 3), conv(width, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _DoubleConv(nn.Sequential):
    def __init__(self, dim: int, in_channels: int, out_channels: int) -> None:
        conv = _conv(dim)
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1), _norm(dim, out_channels), nn.LeakyReLU(0.2, True),
            conv(out_channels, out_channels, 3, padding=1), _norm(dim, out_channels), nn.LeakyReLU(0.2, True),
        )  # fmt: skip


def max_pool_by_two(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` or ``F.max_pool3d(x, 2)`` of ``x`` ``[N, C, *spatial]`` (odd sizes
    floored, as PyTorch does), as the maximum of strided views, axis by axis. PyTorch's CPU
    pooling also finds the indices of the maxima, which inference does not need: this is 10 to
    16 times faster at the light evaluator's first level (``make bench``, the evaluator's
    "Max pooling" table; one CPU thread): about 7 % of its 2D pass, where pooling took 8 % in a
    one-off profile (Documentation/Registration.md, session 21)."""
    for axis in range(2, x.dim()):
        pairs = x.narrow(axis, 0, 2 * (x.shape[axis] // 2)).unflatten(axis, (-1, 2))
        x = torch.maximum(pairs.select(axis + 1, 0), pairs.select(axis + 1, 1))
    return x


class LightUNet(nn.Module):
    """Our light evaluator: a U-Net with ``channels`` per level (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        in_channels: int = 2,
        out_channels: int = 1,
        channels: tuple[int, ...] | None = None,
        final_activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.dim = dim
        channels = channels or LIGHT_CHANNELS[dim]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in channels:
            self.encoders.append(_DoubleConv(dim, previous, width))
            previous = width
        self.decoders = nn.ModuleList(
            _DoubleConv(dim, channels[level + 1] + channels[level], channels[level]) for level in reversed(range(len(channels) - 1))
        )
        # The head sees the raw inputs beside the features: instance normalisation discards the
        # absolute intensities that the output (an intensity difference) is made of. It starts
        # at zero, so an untrained network predicts "aligned" rather than noise.
        self.head = _conv(dim)(channels[0] + in_channels, out_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.activation = {"tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[final_activation]

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.encoders) - 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if any(size % self.size_multiple for size in inputs.shape[2:]):
            raise ImageError(
                f"LightUNet needs spatial sizes divisible by {self.size_multiple}, got {tuple(inputs.shape[2:])}: "
                "pad the input with imse.networks.pad_to_multiple."
            )
        x, skips = inputs, []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else max_pool_by_two(x))
            skips.append(x)
        skips.pop()
        mode = "bilinear" if self.dim == 2 else "trilinear"
        for decoder in self.decoders:
            skip = skips.pop()
            x = decoder(torch.cat([F.interpolate(x, size=skip.shape[2:], mode=mode, align_corners=False), skip], 1))
        return self.activation(self.head(torch.cat([x, inputs], 1)))


def build_network(architecture: str, dim: int, in_channels: int = 2, out_channels: int = 1) -> nn.Module:
    """An evaluator network by name (``light`` or ``paper``), 2D or 3D."""
    if dim not in (2, 3):
        raise ImageError(f"Networks are 2D or 3D; got dim={dim}.")
    if architecture == "light":
        return LightUNet(dim, in_channels, out_channels)
    if architecture == "paper":
        return ResnetGenerator(dim, in_channels, out_channels)
    raise ImageError(f"Unknown architecture '{architecture}'; choose one of {list(ARCHITECTURES)}.")


class _WrappedEvaluator(nn.Module):
    """A test-time augmentation around an evaluator ``network``: it works in the wrapped
    network's dimension and, unless it pads its input itself, needs its size multiple."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    @property
    def dim(self) -> int | None:
        return network_dimension(self.network)

    @property
    def size_multiple(self) -> int:
        return size_multiple(self.network)


class FlipAveraged(_WrappedEvaluator):
    """``network`` averaged over the flips of its input's spatial axes: the mean of
    ``flip(network(flip(x)))`` over every subset of the axes (4 passes in 2D, 8 in 3D; a 2D
    network given a volume's slices flips them in-plane), so that flipping the input flips the
    output. Test-time augmentation for an evaluator: its errors are not flip-equivariant, and
    the mean cancels part of them (README, "Registration benchmark"). Differentiable; it keeps
    the wrapped network's dimension and size multiple."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flips = flip_subsets(inputs.dim())
        return sum(_flipped_pass(self.network, inputs, flip) for flip in flips) / len(flips)


class RotationAveraged(_WrappedEvaluator):
    """``network`` averaged over in-plane rotations of its input: the mean of
    ``rotate(network(rotate(x, a)), -a)`` for ``a`` in ``0, +degrees, -degrees`` (3 passes), each
    rotation about the grid's centre in the plane of the last two axes (every slice of a volume
    along its first axis), in voxel units (a rigid rotation where those voxels are square),
    bilinear with the border repeated. Test-time augmentation for an evaluator, like
    :class:`FlipAveraged`, which it may wrap: the evaluator's errors change with the images'
    orientation, and the mean cancels part of them (README, "Registration"). Differentiable; it
    keeps the wrapped network's dimension and size multiple."""

    def __init__(self, network: nn.Module, degrees: float) -> None:
        _check_turn(degrees)
        super().__init__(network)
        self.degrees = float(degrees)

    def extra_repr(self) -> str:
        return f"degrees={self.degrees}"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        angles = turn_angles(self.degrees)
        return sum(_turned_pass(self.network, inputs, angle) for angle in angles) / len(angles)


class OrientationCycled(_WrappedEvaluator):
    """``network`` shown its input in one orientation, the next one after each :meth:`advance`:
    a flip of the input's spatial axes (every subset, as :class:`FlipAveraged`, with ``flips``)
    and an in-plane turn by 0, +``degrees`` or -``degrees`` (as :class:`RotationAveraged`;
    ``degrees`` 0: no turn), each undone on the output. The flip and the turn advance together;
    4 or 8 flips and 3 turns have no common factor, so 12 advances (24 for a volume's flips)
    show every combination once: the passes that ``RotationAveraged(FlipAveraged(network),
    degrees)`` averages in every call.

    For the demons, which advance it once a step (through
    :meth:`imse.similarity.IMSESimilarity.in_common_modality`) and so average the orientations
    over their steps, at one pass a step instead of 12 (README, "Registration"); every call
    within a step (each slice of a volume, on the CPU) sees the same orientation. Not for an
    error map, which one orientation would bias. Differentiable; it keeps the wrapped network's
    dimension and size multiple."""

    def __init__(self, network: nn.Module, flips: bool, degrees: float) -> None:
        if degrees != 0:
            _check_turn(degrees)
        super().__init__(network)
        self.flips, self.degrees = bool(flips), float(degrees)
        self.advances = 0

    def extra_repr(self) -> str:
        return f"flips={self.flips}, degrees={self.degrees}"

    def advance(self) -> None:
        """Show the next orientation from the next call on."""
        self.advances += 1

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flips = flip_subsets(inputs.dim()) if self.flips else [()]
        angles = turn_angles(self.degrees) if self.degrees else (0.0,)
        flip, angle = flips[self.advances % len(flips)], angles[self.advances % len(angles)]
        return _turned_pass(lambda turned: _flipped_pass(self.network, turned, flip), inputs, angle)


def flip_subsets(input_dims: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes of a ``[N, C, *spatial]`` input with ``input_dims``
    axes, the empty one first: the flips of :class:`FlipAveraged` (4 in 2D, 8 in 3D)."""
    axes = range(2, input_dims)
    return [subset for count in range(len(axes) + 1) for subset in itertools.combinations(axes, count)]


def _check_turn(degrees: float) -> None:
    if not (math.isfinite(degrees) and 0 < degrees <= 90):
        raise ImageError(f"The evaluator's rotation must be an angle in degrees in (0, 90] (0: no rotation), got {degrees}.")


def turn_angles(degrees: float) -> tuple[float, float, float]:
    """The in-plane turns of :class:`RotationAveraged`, in degrees: 0, +``degrees``, -``degrees``."""
    return 0.0, degrees, -degrees


def _flipped_pass(network, inputs: torch.Tensor, flip: tuple[int, ...]) -> torch.Tensor:
    """``network`` on ``inputs`` flipped along the axes ``flip``, its output flipped back."""
    return network(inputs.flip(flip)).flip(flip) if flip else network(inputs)


def _turned_pass(network, inputs: torch.Tensor, degrees: float) -> torch.Tensor:
    """``network`` on ``inputs`` turned in-plane by ``degrees``, its output turned back."""
    return rotate_in_plane(network(rotate_in_plane(inputs, degrees)), -degrees) if degrees else network(inputs)


def rotate_in_plane(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x`` (``[N, C, (D,) H, W]``) rotated by ``degrees`` about the centre of its last two
    axes, in voxel units (at 90 degrees, ``torch.rot90(x, 1, dims=(-2, -1))``), bilinear, the
    border repeated; the same shape. The turn that :mod:`imse.spatial_augment`'s
    ``affine_displacement`` and ``apply_displacement`` make (equal to 1e-4), in under a third of
    their time (2.9 against 10.2 ms at 448 x 384 on one CPU thread), as it runs in every demons
    step."""
    height, width = x.shape[-2:]
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # affine_grid works in coordinates normalised to [-1, 1] along each axis: scale the rotation
    # of voxel coordinates by the axes' half-lengths so that it stays rigid in voxels
    theta = torch.tensor([[cos, -sin * height / width, 0.0], [sin * width / height, cos, 0.0]], dtype=x.dtype, device=x.device)
    planes = x if x.dim() == 4 else x.transpose(1, 2).reshape(-1, x.shape[1], height, width)
    grid = F.affine_grid(theta.expand(planes.shape[0], 2, 3), list(planes.shape), align_corners=False)
    rotated = F.grid_sample(planes, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if x.dim() == 4:
        return rotated
    return rotated.reshape(x.shape[0], x.shape[2], x.shape[1], height, width).transpose(1, 2)


class Zoomed(_WrappedEvaluator):
    """``network`` run on its input zoomed by ``factor`` (linear interpolation along every
    spatial axis of the input it is given; a 2D network given a volume's slices zooms them
    in-plane), its output resampled back to the input's size: the network sees voxels
    ``factor`` times smaller (a 1 mm misalignment of a 2 mm image zoomed 2 times spans a whole
    voxel, not half of one). Test-time augmentation for an evaluator: flip-averaged, the shipped
    2D evaluator (trained at 2 mm) drives the demons on the benchmark's 2 mm pairs better when it
    sees 1 mm voxels (README, "Registration benchmark"). About ``factor ** dim`` times the
    network's work. Differentiable; it pads the zoomed input to the wrapped network's multiple
    itself, so its own is 1."""

    def __init__(self, network: nn.Module, factor: float) -> None:
        if not (math.isfinite(factor) and factor > 0):
            raise ImageError(f"The evaluator's zoom must be a positive factor (1: no zoom), got {factor}.")
        super().__init__(network)
        self.factor = float(factor)

    size_multiple = 1  # it pads the zoomed input itself

    def extra_repr(self) -> str:
        return f"factor={self.factor}"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        spatial = inputs.shape[2:]
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(spatial)]
        zoomed = F.interpolate(inputs, size=[max(1, round(size * self.factor)) for size in spatial], mode=mode, align_corners=False)
        padded, crop = pad_to_multiple(zoomed, size_multiple(self.network))
        return F.interpolate(self.network(padded)[crop], size=tuple(spatial), mode=mode, align_corners=False)


def network_dimension(network: nn.Module) -> int | None:
    """The spatial dimension a network works in: its ``dim`` attribute, else that of its first
    convolution; ``None`` when neither tells."""
    dim = getattr(network, "dim", None)
    if isinstance(dim, int):
        return dim
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return 2
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            return 3
    return None


def evaluator_fits(network_dim: int, image_dim: int) -> bool:
    """Whether an evaluator network of ``network_dim`` works on images of ``image_dim``: the same
    dimension, or a 2D network on 3D volumes, slice by slice (:func:`imse.evaluator.predict`)."""
    return network_dim == image_dim or (network_dim, image_dim) == (2, 3)


def size_multiple(network: nn.Module) -> int:
    """The factor every spatial size must be divisible by (4 for the paper's two stride-2 levels)."""
    return getattr(network, "size_multiple", 4)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad ``[N, C, *spatial]`` at the end of each spatial axis (replicating the edge) up to a
    multiple of ``multiple``; returns the padded tensor and the index that crops it back."""
    spatial = x.shape[2:]
    extra = [(-size) % multiple for size in spatial]
    if not any(extra):
        return x, (slice(None),) * x.ndim
    padding = [value for amount in reversed(extra) for value in (0, amount)]
    crop = (slice(None), slice(None), *(slice(0, size) for size in spatial))
    return F.pad(x, padding, mode="replicate"), crop


def count_multiply_adds(network: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolutions (and transposed convolutions) in one forward pass of
    an input of ``input_shape`` ``[N, C, *spatial]``; normalisation and activations excluded."""
    total = 0

    def count(module: nn.modules.conv._ConvNd, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        kernel = math.prod(module.kernel_size)
        if isinstance(module, nn.modules.conv._ConvTransposeNd):  # each input value feeds a kernel
            total += inputs[0].numel() * kernel * module.out_channels // module.groups
        else:  # each output value sums a kernel over the input channels
            total += output.numel() * kernel * module.in_channels // module.groups

    handles = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    try:
        with torch.no_grad():
            network(torch.zeros(input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total
