"""A 3D light evaluator started from a trained 2D one, for training where 3D from scratch is
too slow (on this project's 2-core CPU, 90 minutes of 3D training from random weights did not
beat the zero predictor).

*Inflation*: every ``k x k`` kernel becomes a ``k x k x k`` kernel that is zero except its
central depth slice, which is the 2D kernel. On a volume that is constant along the depth
axis the inflated network computes exactly what the 2D network computes on one slice (every
layer of :class:`~imse.networks.LightUNet` then keeps the volume constant along depth), and
on real volumes it starts as a close cousin of the slice-by-slice 2D evaluator; 3D training
then teaches it to look across slices.

*Narrowing*: when the 3D network has fewer channels per level than the 2D one
(:data:`~imse.networks.LIGHT_CHANNELS` keeps 3D under a tenth of the paper network's cost),
each convolution keeps the output channels that the layers reading them weigh most (the L2
norm of the readers' weights on that channel; the instance normalisation after every
convolution gives each channel unit variance, so the readers' weights say what it is worth).
"""

from __future__ import annotations

import torch

from .errors import ImageError
from .networks import LIGHT_CHANNELS, LightUNet


def inflate_evaluator(network: LightUNet, channels: tuple[int, ...] | None = None) -> LightUNet:
    """A 3D :class:`LightUNet` with ``channels`` per level (default: the 3D default, at most
    the 2D network's) whose kernels are ``network``'s, inflated and narrowed as the module
    docstring says. ``network`` is left unchanged."""
    if not isinstance(network, LightUNet) or network.dim != 2:
        raise ImageError("Only a 2D 'light' evaluator can be inflated to 3D.")
    channels = tuple(channels or LIGHT_CHANNELS[3])
    narrowed = narrow(network, channels)
    inflated = LightUNet(3, network.encoders[0][0].in_channels, network.head.out_channels, channels=channels)
    inflated.load_state_dict({key: _inflate_kernel(value) for key, value in narrowed.state_dict().items()})
    return inflated


def _inflate_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``[out, in, k, k]`` -> ``[out, in, k, k, k]``, zero but for the central depth slice;
    biases (1D) unchanged."""
    if weight.dim() != 4:
        return weight.clone()
    inflated = weight.new_zeros(*weight.shape[:2], weight.shape[2], *weight.shape[2:])
    inflated[:, :, weight.shape[2] // 2] = weight
    return inflated


def _level_widths(network: LightUNet) -> tuple[int, ...]:
    return tuple(encoder[0].out_channels for encoder in network.encoders)


def narrow(network: LightUNet, channels: tuple[int, ...]) -> LightUNet:
    """A copy of ``network`` with ``channels`` per level (each at most the current width),
    keeping the channels its layers read most (see the module docstring). With the current
    widths it is an exact copy."""
    widths = _level_widths(network)
    if len(channels) != len(widths) or any(new > old for new, old in zip(channels, widths)):
        raise ImageError(f"A network with channels {widths} can be narrowed to at most as many per level, got {tuple(channels)}.")
    levels = len(widths)
    decoder = {levels - 2 - index: block for index, block in enumerate(network.decoders)}  # by level
    inputs = torch.arange(network.encoders[0][0].in_channels)

    # Which outputs of each convolution survive, decided from the weights that read them.
    kept_encoder_middle = [_strongest([(network.encoders[level][3].weight, 0)], widths[level], channels[level]) for level in range(levels)]
    kept_encoder = []
    for level in range(levels):
        if level < levels - 1:  # read by the next level's encoder and, as the skip, by this level's decoder
            readers = [(network.encoders[level + 1][0].weight, 0), (decoder[level][0].weight, widths[level + 1])]
        else:  # the bottom: read (upsampled) by the decoder one level up
            readers = [(decoder[level - 1][0].weight, 0)]
        kept_encoder.append(_strongest(readers, widths[level], channels[level]))
    kept_decoder_middle = {level: _strongest([(decoder[level][3].weight, 0)], widths[level], channels[level]) for level in decoder}
    kept_decoder = {
        level: _strongest([(decoder[level - 1][0].weight if level else network.head.weight, 0)], widths[level], channels[level])
        for level in decoder
    }

    narrowed = LightUNet(network.dim, len(inputs), network.head.out_channels, channels=tuple(channels))
    for level in range(levels):
        source, target = network.encoders[level], narrowed.encoders[level]
        _copy(source[0], target[0], kept_encoder_middle[level], inputs if level == 0 else kept_encoder[level - 1])
        _copy(source[3], target[3], kept_encoder[level], kept_encoder_middle[level])
    for index, target in enumerate(narrowed.decoders):
        level = levels - 2 - index
        below = kept_encoder[level + 1] if level == levels - 2 else kept_decoder[level + 1]
        read = torch.cat([below, widths[level + 1] + kept_encoder[level]])  # [upsampled, skip]
        _copy(decoder[level][0], target[0], kept_decoder_middle[level], read)
        _copy(decoder[level][3], target[3], kept_decoder[level], kept_decoder_middle[level])
    head_read = torch.cat([kept_decoder[0], widths[0] + inputs])  # [features, raw inputs]
    _copy(network.head, narrowed.head, torch.arange(network.head.out_channels), head_read)
    return narrowed


def _strongest(readers: list[tuple[torch.Tensor, int]], count: int, keep: int) -> torch.Tensor:
    """Sorted indices of the ``keep`` of ``count`` channels with the largest summed L2 norm of
    the weights that read them; ``readers`` are (weight ``[out, in, ...]``, index of the
    channel block's first input)."""
    score = sum(weight.detach().transpose(0, 1)[offset : offset + count].reshape(count, -1).norm(dim=1) for weight, offset in readers)
    return torch.topk(score, keep).indices.sort().values


def _copy(source: torch.nn.Module, target: torch.nn.Module, outputs: torch.Tensor, inputs: torch.Tensor) -> None:
    with torch.no_grad():
        target.weight.copy_(source.weight[outputs][:, inputs])
        target.bias.copy_(source.bias[outputs])
