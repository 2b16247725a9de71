"""The backend on a CUDA device: the trainers (evaluator, registration network, AdaCS) run
there end to end, and the inference paths there (error maps, per-pair registration with each
optimiser, one-shot network registration, AdaCS) agree with the CPU. The whole module is
skipped on a machine without CUDA (CI has none): run it where there is a GPU."""

import json

import numpy as np
import pytest
import torch

from imse.adacs import AdaCSConfig, AdaCSPairSettings, adacs_pair, register_frames, train_adacs
from imse.data import make_pair
from imse.evaluator import Evaluator
from imse.phantom import lv_phantom_2d
from imse.register import RegistrationSettings, register_pair
from imse.registration_network import RegistrationTrainingConfig, register_with_network, train_registration_network
from imse.train_evaluator import EvaluatorTrainingConfig, train_evaluator

from conftest import brain_endpoint_error, unregistered_endpoint_error

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def pair():
    """A T2-like slice deformed by up to 4 mm onto the MNI T1 at 3 mm."""
    return make_pair(dim=2, moving_contrast="t2", spacing_mm=3.0, max_displacement_mm=4.0, seed=2)


def test_evaluator_training_with_attacks_runs_and_resumes_on_cuda(tmp_path):
    tiny = dict(dim=2, patch_size=(32, 32), batch_size=4, validation_pairs=4, validation_every=2, checkpoint_every=2, device="cuda")
    train_evaluator(EvaluatorTrainingConfig(out=tmp_path, iterations=2, adversarial_fraction=1.0, adversarial_steps=2, **tiny))
    weights = train_evaluator(EvaluatorTrainingConfig(out=tmp_path, iterations=4, resume=True, **tiny))
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["training"]["device"].startswith("cuda") and card["training"]["iterations"] == 4
    assert all(np.isfinite(entry["validation_l1"]) for entry in card["training"]["history"])
    Evaluator.load(weights, dim=2, device="cpu")  # the weights load on a machine without CUDA


def test_error_maps_on_cuda_match_the_cpu(pair):
    on_cpu = Evaluator.load(dim=2, device="cpu").error_map(pair.fixed, pair.moving).magnitude
    on_cuda = Evaluator.load(dim=2, device="cuda").error_map(pair.fixed, pair.moving).magnitude
    assert on_cuda.geometry == on_cpu.geometry
    assert np.abs(on_cuda.array - on_cpu.array).max() < 1e-3


@pytest.mark.parametrize("optimizer", ["adam", "discrete"])
def test_registration_on_cuda_recovers_the_deformation_as_well_as_the_cpu(pair, optimizer):
    errors = {}
    for device in ("cpu", "cuda"):
        settings = RegistrationSettings(similarity="mind", optimizer=optimizer, levels=2, iterations=60, device=device)
        result = register_pair(pair.fixed, pair.moving, settings)
        assert result.displacement.geometry == pair.fixed.geometry and np.isfinite(result.jacobian_determinant.array).all()
        errors[device] = brain_endpoint_error(result.displacement, pair)
    assert errors["cuda"] < 0.7 * unregistered_endpoint_error(pair)
    assert abs(errors["cuda"] - errors["cpu"]) < 0.1  # mm: float rounding only, not another result


def test_imse_demons_on_cuda_match_the_cpu(pair):
    """The demons driven by the shipped 2D evaluator, averaged over flips and turns and zoomed
    (IMSE's best configuration), give the CPU's field on CUDA."""
    fields = {}
    options = {"flip_average": True, "rotation": 60.0, "zoom": 2.0}
    for device in ("cpu", "cuda"):
        settings = RegistrationSettings(similarity="imse", similarity_options=options, optimizer="demons", levels=1, device=device)
        fields[device] = register_pair(pair.fixed, pair.moving, settings, evaluator=Evaluator.load(dim=2, device=device)).displacement
    assert fields["cuda"].geometry == fields["cpu"].geometry
    assert np.abs(fields["cuda"].array - fields["cpu"].array).max() < 0.05  # mm: float rounding only


def test_a_2d_evaluator_maps_a_volume_in_one_batch_on_cuda():
    """On a GPU every slice of a volume goes to the 2D evaluator in one batch (the CPU takes
    them one at a time), with the CPU's result."""
    from imse.evaluator import predict
    from imse.networks import build_network

    torch.manual_seed(0)
    network = build_network("light", 2).eval()
    torch.nn.init.normal_(network.head.weight, std=0.1)
    other, reference = torch.rand(1, 1, 6, 32, 40), torch.rand(1, 1, 6, 32, 40)
    batches = []
    hook = network.register_forward_pre_hook(lambda module, inputs: batches.append(inputs[0].shape[0]))
    with torch.no_grad():
        on_gpu = predict(network.cuda(), other.cuda(), reference.cuda()).cpu()
        assert batches == [6]
        on_cpu = predict(network.cpu(), other, reference)
    hook.remove()
    assert batches[1:] == [1] * 6 and torch.allclose(on_gpu, on_cpu, atol=1e-4)


def test_registration_network_trains_and_registers_on_cuda(tmp_path, pair):
    config = RegistrationTrainingConfig(
        out=tmp_path, name="tiny", dim=2, similarity="mind", spacing_mm=4.0, patch_size=(48, 48), pool_size=6,
        batch_size=3, validation_pairs=2, iterations=3, validation_every=3, checkpoint_every=3, device="cuda",
    )  # fmt: skip
    weights = train_registration_network(config)
    assert json.loads(weights.with_suffix(".json").read_text())["training"]["device"].startswith("cuda")
    fields = {device: register_with_network(pair.fixed, pair.moving, weights, device=device).displacement for device in ("cpu", "cuda")}
    assert fields["cuda"].geometry == fields["cpu"].geometry
    assert np.abs(fields["cuda"].array - fields["cpu"].array).max() < 1e-3  # mm


def test_adacs_trains_and_registers_on_cuda():
    phantom = lv_phantom_2d(shape=(32, 32), spacing_mm=2.0, frames=4, inner_radius_mm=14.0, outer_radius_mm=24.0, end_systolic_inner_radius_mm=10.0, seed=1)
    config = AdaCSConfig(iterations=4, displacement_warmup=2, scoring_warmup=1, channels=(4, 8, 16), batch_size=2, device="cuda")
    trained = train_adacs(phantom.frames, phantom.geometry, config)
    assert next(trained.model.parameters()).device.type == "cuda"
    displacement, _, score = register_frames(trained.model, phantom.frames[2], phantom.frames[0], phantom.geometry)
    assert displacement.device.type == "cuda" and torch.isfinite(displacement).all() and torch.isfinite(score).all()
    on_cpu = register_frames(trained.model.cpu(), phantom.frames[2], phantom.frames[0], phantom.geometry)[0]
    assert torch.allclose(displacement.cpu(), on_cpu, atol=1e-3)

    settings = AdaCSPairSettings(iterations=6, displacement_warmup=2, scoring_warmup=1, device="cuda")
    result = adacs_pair(phantom.frames[2], phantom.frames[0], phantom.geometry, settings)
    assert torch.isfinite(result.displacement).all() and len(result.loss_curve) == 6
