"""Inflating a 2D light evaluator to 3D: exact on depth-constant volumes, narrowing keeps the
channels that are read most, and bad requests are refused."""

import pytest
import torch

from imse.errors import ImageError
from imse.inflation import inflate_evaluator, narrow
from imse.networks import LightUNet


def _trained_looking(network: LightUNet) -> LightUNet:
    """Random weights everywhere, the zero-initialised head included (an untrained head would
    make every comparison trivially 0 = 0)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0.0, 0.3)
    return network


def test_inflated_network_computes_the_2d_network_on_every_slice_of_a_depth_constant_volume():
    network = _trained_looking(LightUNet(2, channels=(6, 8, 10)))
    image = torch.randn(1, 2, 24, 32)
    volume = image[:, :, None].expand(1, 2, 8, 24, 32).contiguous()  # the slice repeated along depth
    inflated = inflate_evaluator(network, channels=(6, 8, 10))
    assert inflated.dim == 3
    expected = network(image)
    output = inflated(volume)
    assert torch.allclose(output, expected[:, :, None].expand_as(output), atol=1e-5)
    # on a volume that varies along depth it is no longer the slice-by-slice network, but close
    varying = volume + 0.05 * torch.randn_like(volume)
    assert not torch.allclose(inflated(varying), expected[:, :, None].expand_as(output), atol=1e-5)


def test_narrowing_to_the_same_widths_is_a_copy_and_narrower_keeps_the_most_read_channels():
    network = _trained_looking(LightUNet(2, channels=(6, 8, 10)))
    x = torch.randn(2, 2, 16, 16)
    assert torch.equal(narrow(network, (6, 8, 10))(x), network(x))
    with torch.no_grad():  # the last feature channel of level 0 is what the head reads most
        network.head.weight[:, 5] = 50.0
    narrowed = narrow(network, (5, 8, 10))
    assert narrowed.head.weight.shape[1] == 5 + 2
    assert narrowed.head.weight[0, 4].item() == 50.0  # kept, now the last of 5
    assert torch.equal(narrowed.head.weight[:, -2:], network.head.weight[:, -2:])  # the raw-input weights


def test_narrowed_network_has_the_asked_widths_and_inflation_refuses_bad_requests():
    network = _trained_looking(LightUNet(2, channels=(6, 8, 10)))
    x = torch.randn(2, 2, 16, 16)
    kept = narrow(network, (5, 8, 10))
    assert [encoder[0].out_channels for encoder in kept.encoders] == [5, 8, 10]
    assert kept(x).shape == network(x).shape
    with pytest.raises(ImageError, match="at most as many"):
        inflate_evaluator(network, channels=(8, 8, 10))
    with pytest.raises(ImageError, match="Only a 2D 'light'"):
        inflate_evaluator(LightUNet(3, channels=(6, 8, 10)))
