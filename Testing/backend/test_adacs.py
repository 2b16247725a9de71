"""AdaCS: strict gradient separation of the two estimators, the losses' known answers (zero
at alignment, the closed-form optimal score, the momentum weight), the schedule, a short
training run on an LV phantom, per-pair scoring of corrupted sectors, model files, 2D/3D
forward passes and bad input."""

import math

import numpy as np
import pytest
import torch

from imse.adacs import (
    AdaCSAlternation,
    AdaCSConfig,
    AdaCSModel,
    AdaCSObjective,
    AdaCSPairSettings,
    AdaCSSchedule,
    MomentumSmoothness,
    _PairEstimators,
    adacs_pair,
    displacement_loss,
    displacement_objective,
    foreground_mask,
    load_adacs,
    minmax_normalize,
    register_frames,
    save_adacs,
    scoring_loss,
    scoring_objective,
    train_adacs,
)
from imse.errors import Cancelled, ImageError
from imse.geometry import Geometry
from imse.phantom import SectorCorruption, lv_phantom_2d, lv_phantom_3d

SMALL = (4, 8, 16)  # U-Net widths that keep the tests fast


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def cine_phantom():
    """6 frames of 32x32 at 2 mm, the ring moving up to about 3 mm, a dropout in two frames."""
    dropout = SectorCorruption(frames=(2, 3), start_deg=200.0, width_deg=70.0)
    return lv_phantom_2d(
        shape=(32, 32), spacing_mm=2.0, frames=6, inner_radius_mm=14.0, outer_radius_mm=24.0,
        end_systolic_inner_radius_mm=10.0, dropout=dropout, seed=1,
    )  # fmt: skip


def pair_phantom(kind: str):
    """48x48 at 1.5 mm with a corrupted sector in frame 0 (the target)."""
    strength = 1.0 if kind == "dropout" else 0.3
    corruption = {kind: SectorCorruption(frames=(0,), start_deg=30.0, width_deg=70.0, strength=strength)}
    return lv_phantom_2d(
        shape=(48, 48), spacing_mm=1.5, frames=6, inner_radius_mm=14.0, outer_radius_mm=24.0,
        end_systolic_inner_radius_mm=10.0, seed=3, **corruption,
    )  # fmt: skip


def random_pair(shape=(16, 16), batch=2):
    source = torch.rand(batch, 1, *shape)
    return source, torch.roll(source, 1, dims=-1)


def randomise_heads(model: AdaCSModel) -> None:
    """Non-zero heads, so that gradients reach every layer of both networks."""
    for network in (model.displacement_network, model.scoring_network):
        torch.nn.init.normal_(network.head.weight, std=0.1)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def unchanged(module: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(module.parameters(), before))


def all_pairs(phantom) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised sources (frames 1..T-1) and targets (frame 0) ``[T-1, 1, H, W]``."""
    frames = minmax_normalize(torch.from_numpy(phantom.frames)).unsqueeze(1)
    return frames[1:], frames[:1].expand(len(frames) - 1, -1, -1, -1)


def ring_endpoint_error(displacement: np.ndarray, phantom, t: int, region: np.ndarray | None = None) -> float:
    region = phantom.myocardium_masks[0] if region is None else region
    return float(np.linalg.norm(displacement - phantom.displacements[t], axis=0)[region].mean())


# --- Gradient separation -----------------------------------------------------------------


def test_each_step_leaves_the_other_network_untouched():
    geometry = Geometry.identity(2, 1.5)
    model = AdaCSModel(2, channels=SMALL)
    randomise_heads(model)
    displacement_optimizer = torch.optim.Adam(model.displacement_network.parameters(), lr=1e-2)
    scoring_optimizer = torch.optim.Adam(model.scoring_network.parameters(), lr=1e-2)
    schedule = AdaCSSchedule(iterations=6, displacement_warmup=1, scoring_warmup=1)
    alternation = AdaCSAlternation(model, schedule, AdaCSObjective(), displacement_optimizer, scoring_optimizer)
    source, target = random_pair()
    phases = []
    for step in range(6):
        phase = schedule.phase(step)
        other = model.scoring_network if phase == "displacement" else model.displacement_network
        own = model.displacement_network if phase == "displacement" else model.scoring_network
        other_parameters, own_parameters = snapshot(other), snapshot(own)
        other_gradients = [None if p.grad is None else p.grad.clone() for p in other.parameters()]
        alternation.step(step, source, target, geometry)
        assert unchanged(other, other_parameters), f"a {phase} step changed the other network"
        assert not unchanged(own, own_parameters), f"a {phase} step did not train its network"
        for parameter, gradient in zip(other.parameters(), other_gradients):
            assert (parameter.grad is None) == (gradient is None)
            assert gradient is None or torch.equal(parameter.grad, gradient)
        if step == 0:  # the first displacement step: the scoring network never had a gradient
            assert all(p.grad is None for p in model.scoring_network.parameters())
        phases.append(phase)
    assert phases == ["displacement", "scoring", "displacement", "scoring", "displacement", "scoring"]


@pytest.mark.parametrize("kind", ["network", "per_pair"])
def test_no_graph_path_between_the_two_losses(kind):
    """The scoring loss cannot reach the displacement estimator (the reference's leak), nor
    the displacement loss the scoring estimator."""
    geometry = Geometry.identity(2, 1.0)
    source, target = random_pair(batch=1)
    if kind == "network":
        estimators = AdaCSModel(2, channels=SMALL, diffeomorphic=True)
        randomise_heads(estimators)
        displacement_parameters = list(estimators.displacement_network.parameters())
        scoring_parameters = list(estimators.scoring_network.parameters())
    else:
        estimators = _PairEstimators((16, 16), 2, AdaCSPairSettings())
        with torch.no_grad():
            estimators.field_parameter.normal_()
            estimators.score_logit.normal_()
        displacement_parameters, scoring_parameters = [estimators.field_parameter], [estimators.score_logit]

    score_loss = scoring_objective(estimators, source, target, geometry, AdaCSObjective(), MomentumSmoothness())
    assert score_loss.total.requires_grad
    assert all(g is None for g in torch.autograd.grad(score_loss.total, displacement_parameters, allow_unused=True))
    assert any(g is not None for g in torch.autograd.grad(score_loss.total, scoring_parameters, allow_unused=True))

    field_loss = displacement_objective(estimators, source, target, geometry, AdaCSObjective())
    assert all(g is None for g in torch.autograd.grad(field_loss.total, scoring_parameters, allow_unused=True))
    assert any(g is not None for g in torch.autograd.grad(field_loss.total, displacement_parameters, allow_unused=True))


# --- Losses, momentum, schedule ----------------------------------------------------------


def test_displacement_loss_is_zero_at_alignment_and_weighted_by_the_score():
    geometry = Geometry.identity(2, 1.0)
    target = torch.rand(1, 1, 12, 12) + 0.1
    ones, zero_field = torch.ones_like(target), torch.zeros(1, 2, 12, 12)
    aligned = displacement_loss(target, target, zero_field, ones, ones, geometry)
    assert float(aligned.total) == 0.0 and float(aligned.similarity) == 0.0 and float(aligned.smoothness) == 0.0
    shifted = target + 0.2
    plain = displacement_loss(target, shifted, zero_field, ones, ones, geometry)
    assert float(plain.similarity) == pytest.approx(0.04, rel=1e-5)
    halved = displacement_loss(target, shifted, zero_field, 0.5 * ones, ones, geometry)
    assert float(halved.similarity) == pytest.approx(0.02, rel=1e-5)
    assert float(halved.mean_squared_residual) == pytest.approx(0.04, rel=1e-5)


def test_foreground_mask_is_the_union_of_non_zero_voxels():
    source = torch.tensor([[[[0.0, 0.5, 0.0, 0.02]]]])
    target = torch.tensor([[[[0.0, 0.0, 0.3, 0.01]]]])
    assert foreground_mask(source, target).flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    assert foreground_mask(source, target, threshold=0.05).flatten().tolist() == [0.0, 1.0, 1.0, 0.0]


def test_optimal_score_is_the_closed_form_of_the_per_voxel_loss():
    """Minimising ``S r + alpha (1 - S)^2`` over a free score gives
    ``S* = clip(1 - r / (2 alpha), 0, 1)``: 1 where the residual is 0, 0 where it is large."""
    alpha = 0.02
    geometry = Geometry.identity(2, 1.0)
    residual = torch.linspace(0.0, 0.08, 64).reshape(1, 1, 8, 8)
    target = torch.full_like(residual, 0.5)
    warped = target - residual.sqrt()
    logit = torch.zeros_like(residual, requires_grad=True)
    optimizer = torch.optim.Adam([logit], lr=0.1)
    for _ in range(400):
        loss = scoring_loss(target, warped, torch.sigmoid(logit), torch.ones_like(target), geometry, alpha, 0.0)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
    expected = (1.0 - residual / (2 * alpha)).clamp(0.0, 1.0)
    score = torch.sigmoid(logit).detach()
    assert torch.allclose(score, expected, atol=0.03)
    assert score.flatten()[0] > 0.97 and score.flatten()[-1] < 0.03


def test_momentum_weight_follows_the_paper_formula():
    mus = [0.6, 0.3, 0.1, 0.05, 0.01]
    b = [math.cos(math.pi / 2 * mu) for mu in mus]
    fixed = MomentumSmoothness(gamma=0.9, beta=2.0)
    expected = b[0]
    for index, mu in enumerate(mus):
        expected = b[0] if index == 0 else 0.9 * expected + 0.1 * b[index]
        assert fixed.update(mu) == pytest.approx(2.0 * expected)
    ramp = MomentumSmoothness()  # gamma_T = min(1 - 1/(T+1), 0.99): the running mean of b
    for index, mu in enumerate(mus):
        assert ramp.update(mu) == pytest.approx(np.mean(b[: index + 1]))
    reference_scaling = MomentumSmoothness(scale=50 * math.pi, beta=1.5)
    assert reference_scaling.update(0.02) == 0.0  # cos(pi) = -1, clipped to 0
    assert reference_scaling.update(0.0) == pytest.approx(1.5 * 0.5)


def test_schedule_warms_up_then_alternates():
    schedule = AdaCSSchedule(iterations=8, displacement_warmup=2, scoring_warmup=2)
    assert [schedule.phase(s) for s in range(8)] == ["displacement"] * 2 + ["scoring"] * 2 + ["displacement", "scoring"] * 2
    assert [schedule.uses_score(s) for s in range(3)] == [False, False, True]
    baseline = AdaCSSchedule(iterations=8, displacement_warmup=2, scoring_warmup=2, scoring=False)
    assert {baseline.phase(s) for s in range(8)} == {"displacement"} and not baseline.uses_score(5)


@pytest.mark.parametrize("iterations", [12, 60, 300])
def test_pair_settings_for_any_step_count_score_in_the_last_half(iterations):
    """Fixed warm-ups (100 + 50 steps) never scored below 151 steps; scaled ones always do."""
    schedule = AdaCSPairSettings.for_iterations(iterations, device="cpu").schedule
    assert "scoring" in [schedule.phase(step) for step in range(iterations)]
    assert all(schedule.uses_score(step) for step in range(iterations // 2, iterations))
    assert AdaCSPairSettings.for_iterations(300).schedule == AdaCSPairSettings().schedule  # the defaults' proportions


# --- Training ----------------------------------------------------------------------------


def test_short_training_lowers_both_losses(cine_phantom):
    config = AdaCSConfig(
        iterations=120, displacement_warmup=40, scoring_warmup=20, displacement_learning_rate=3e-3,
        scoring_learning_rate=3e-3, channels=SMALL, batch_size=4, device="cpu", seed=0,
    )  # fmt: skip
    calls = []
    warmed_up = train_adacs(cine_phantom.frames, cine_phantom.geometry, AdaCSConfig(**{**vars(config), "iterations": 40}))
    trained = train_adacs(cine_phantom.frames, cine_phantom.geometry, config, progress=lambda *a: calls.append(a))
    assert len(calls) == 120 and calls[-1][:2] == (120, 120)
    assert {entry["phase"] for entry in trained.history} == {"displacement", "scoring"}

    geometry, objective = cine_phantom.geometry, config.objective
    sources, targets = all_pairs(cine_phantom)
    untrained = AdaCSModel(2, channels=SMALL)
    with torch.no_grad():
        mse = {name: float(displacement_objective(model, sources, targets, geometry, objective, use_score=False).mean_squared_residual)
               for name, model in (("start", untrained), ("end", trained.model))}  # fmt: skip
        score_loss = {name: float(scoring_objective(model, sources, targets, geometry, objective, MomentumSmoothness()).total)
                      for name, model in (("warm", warmed_up.model), ("end", trained.model))}  # fmt: skip
    assert mse["end"] < 0.8 * mse["start"]
    assert score_loss["end"] < 0.8 * score_loss["warm"]

    errors = []
    for t in range(1, 6):
        displacement, warped, score = register_frames(trained.model, cine_phantom.frames[t], cine_phantom.frames[0], geometry)
        assert displacement.shape == (1, 2, 32, 32) and warped.shape == score.shape == (1, 1, 32, 32)
        errors.append((ring_endpoint_error(displacement[0].numpy(), cine_phantom, t), ring_endpoint_error(0 * displacement[0].numpy(), cine_phantom, t)))
    after, before = np.mean(errors, axis=0)
    assert after < 0.85 * before


def test_training_can_be_cancelled_and_trains_a_baseline(cine_phantom, tmp_path):
    config = AdaCSConfig(iterations=50, displacement_warmup=2, scoring_warmup=2, channels=SMALL, batch_size=1, device="cpu")
    with pytest.raises(Cancelled):
        train_adacs(cine_phantom.frames, cine_phantom.geometry, config, should_stop=lambda: True)
    baseline = AdaCSConfig(iterations=3, scoring=False, pairing="consecutive", channels=SMALL, batch_size=2, device="cpu")
    result = train_adacs([cine_phantom.frames, cine_phantom.frames[::-1].copy()], cine_phantom.geometry, baseline)
    assert result.model.scoring_network is None
    assert {entry["phase"] for entry in result.history} == {"displacement"}
    assert result.summary["data"].startswith("2 cine(s), 12 frames, 10 pairs")
    loaded = load_adacs(save_adacs(result.model, tmp_path, "baseline", result.summary))
    assert loaded.card.training["config"]["scoring"] is False and loaded.card.patch_size == [32, 32]
    assert loaded.card.training["network"]["spacing_mm"] == [2.0, 2.0]


def test_3d_training_on_the_3d_phantom_tracks_the_shell():
    phantom = lv_phantom_3d(
        shape=(8, 20, 20), spacing_mm=(3.0, 3.0, 4.0), frames=4, inner_radius_mm=12.0, outer_radius_mm=20.0,
        end_systolic_inner_radius_mm=9.0, length_mm=24.0, seed=0,
    )  # fmt: skip
    config = AdaCSConfig(
        iterations=40, displacement_warmup=20, scoring_warmup=6, displacement_learning_rate=3e-3,
        scoring_learning_rate=3e-3, channels=SMALL, batch_size=2, device="cpu",
    )  # fmt: skip
    trained = train_adacs(phantom.frames, phantom.geometry, config)
    assert trained.model.dim == 3 and {entry["phase"] for entry in trained.history} == {"displacement", "scoring"}
    assert trained.summary["frame_shape"] == [8, 20, 20] and not trained.summary["stopped_at_time_limit"]
    ring, t = phantom.myocardium_masks[0], 2  # end-systole: about 2 mm of motion in the shell
    displacement, warped, score = register_frames(trained.model, phantom.frames[t], phantom.frames[0], phantom.geometry)
    assert displacement.shape == (1, 3, 8, 20, 20) and warped.shape == score.shape == (1, 1, 8, 20, 20)
    error = ring_endpoint_error(displacement[0].numpy(), phantom, t)
    assert error < 0.9 * ring_endpoint_error(0 * displacement[0].numpy(), phantom, t)  # measured: 0.79x


def test_training_stops_at_its_time_limit_and_keeps_the_model(cine_phantom):
    config = AdaCSConfig(iterations=10_000, displacement_warmup=2, scoring_warmup=2, channels=SMALL, batch_size=1, device="cpu", time_limit_minutes=0.02)
    trained = train_adacs(cine_phantom.frames, cine_phantom.geometry, config)
    assert 1 <= len(trained.history) < 10_000 and trained.summary["stopped_at_time_limit"]
    assert trained.summary["iterations"] == len(trained.history)
    with pytest.raises(ImageError, match="time limit"):
        AdaCSConfig(time_limit_minutes=0)


# --- Per-pair AdaCS ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dropout", "noise_burst"])
def test_per_pair_scores_are_low_where_the_target_is_corrupted(kind):
    phantom, t = pair_phantom(kind), 3
    ring = phantom.myocardium_masks[0]
    corrupted = phantom.corruption_masks[kind][0] & ring
    settings = AdaCSPairSettings(iterations=200, displacement_warmup=80, scoring_warmup=40, device="cpu")
    result = adacs_pair(phantom.frames[t], phantom.frames[0], phantom.geometry, settings)
    score = result.score[0, 0].numpy()
    assert score[corrupted].mean() < 0.5 * score[ring & ~corrupted].mean()
    displacement = result.displacement[0].numpy()
    assert ring_endpoint_error(displacement, phantom, t) < 0.5 * ring_endpoint_error(0 * displacement, phantom, t)
    if kind == "dropout":  # scoring keeps the field from chasing the missing signal
        baseline = adacs_pair(phantom.frames[t], phantom.frames[0], phantom.geometry, AdaCSPairSettings(**{**vars(settings), "scoring": False}))
        assert ring_endpoint_error(displacement, phantom, t) < ring_endpoint_error(baseline.displacement[0].numpy(), phantom, t)
        assert torch.all(baseline.score == 1.0)


def test_per_pair_reports_progress_and_cancels():
    source, target = random_pair(batch=1)
    calls = []
    settings = AdaCSPairSettings(iterations=4, displacement_warmup=1, scoring_warmup=1, diffeomorphic=True, device="cpu")
    result = adacs_pair(source, target, Geometry.identity(2, 1.0), settings, progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)] and len(result.loss_curve) == 4
    with pytest.raises(Cancelled):
        adacs_pair(source, target, Geometry.identity(2, 1.0), settings, should_stop=lambda: len(calls) > 5, progress=lambda *a: calls.append(a))


# --- Model files, forward passes, bad input ----------------------------------------------


@pytest.mark.parametrize("scoring", [True, False])
def test_save_and_load_reproduce_the_outputs(tmp_path, scoring):
    model = AdaCSModel(2, scoring=scoring, diffeomorphic=True, channels=SMALL, spacing_mm=(1.5, 1.5))
    torch.nn.init.normal_(model.displacement_network.head.weight, std=0.1)
    if scoring:
        torch.nn.init.normal_(model.scoring_network.head.weight, std=0.1)
    source, target = np.random.default_rng(0).random((2, 20, 24)).astype(np.float32)
    expected = register_frames(model, source, target)
    path = save_adacs(model, tmp_path, "cardiac", {"frame_shape": [20, 24], "iterations": 0})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    loaded = load_adacs(path.with_suffix(".json"))
    assert loaded.card.task == "adacs" and loaded.card.patch_size == [20, 24] and loaded.card.spacing_mm == 1.5
    assert loaded.network.settings == model.settings
    for before, after in zip(expected, register_frames(loaded.network, source, target)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("dim, shape", [(2, (30, 27)), (3, (10, 12, 9))])
def test_forward_pass_in_2d_and_3d(dim, shape):
    geometry = Geometry.identity(dim, 2.0)
    model = AdaCSModel(dim, diffeomorphic=True, channels=SMALL)
    rng = np.random.default_rng(1)
    source, target = rng.random(shape), rng.random(shape)
    displacement, warped, score = register_frames(model, source, target, geometry)
    assert displacement.shape == (1, dim, *shape) and warped.shape == score.shape == (1, 1, *shape)
    assert torch.all(displacement == 0) and torch.allclose(score, torch.full_like(score, 0.5))  # zero heads
    torch.nn.init.normal_(model.displacement_network.head.weight, std=0.05)
    displacement, _, _ = register_frames(model, source, target, geometry)
    assert torch.isfinite(displacement).all() and displacement.abs().max() > 0


def test_bad_inputs_raise_image_errors(cine_phantom):
    model = AdaCSModel(2, channels=SMALL)
    frame = cine_phantom.frames[0]
    geometry = cine_phantom.geometry
    with pytest.raises(ImageError, match="share one grid"):
        register_frames(model, frame, frame[:16], geometry)
    with pytest.raises(ImageError, match="NaN"):
        register_frames(model, np.full_like(frame, np.nan), frame, geometry)
    with pytest.raises(ImageError, match="single intensity"):
        register_frames(model, np.ones_like(frame), np.ones_like(frame), geometry)
    with pytest.raises(ImageError, match="3D"):
        register_frames(model, frame, frame, Geometry.identity(3, 1.0))
    with pytest.raises(ImageError, match="2D image"):
        register_frames(model, frame[None], frame, geometry)
    with pytest.raises(ImageError, match="T >= 2"):
        train_adacs(cine_phantom.frames[:1], geometry, AdaCSConfig(iterations=1, device="cpu"))
    with pytest.raises(ImageError, match="reference frame"):
        train_adacs(cine_phantom.frames, geometry, AdaCSConfig(iterations=1, reference_frame=9, device="cpu"))
    with pytest.raises(ImageError, match="one frame shape"):
        train_adacs([cine_phantom.frames, cine_phantom.frames[:, :16]], geometry, AdaCSConfig(iterations=1, device="cpu"))
    with pytest.raises(ImageError, match="pairing"):
        AdaCSConfig(pairing="random")
    with pytest.raises(ImageError, match="warm-ups"):
        AdaCSConfig(displacement_warmup=-1)
    with pytest.raises(ImageError, match=">= 0"):
        AdaCSObjective(score_regularization=-0.1)
    with pytest.raises(ImageError, match="gamma"):
        AdaCSObjective(momentum_gamma=1.0)
    with pytest.raises(ImageError, match="2D or 3D"):
        AdaCSModel(4)


def test_load_rejects_missing_or_foreign_files(tmp_path):
    with pytest.raises(ImageError, match="needs both"):
        load_adacs(tmp_path / "absent.safetensors")
    (tmp_path / "other.safetensors").write_bytes(b"")
    card = {"name": "other", "task": "evaluator", "architecture": "light", "dim": 2, "modality": "T1",
            "normalization": {}, "patch_size": [8, 8], "spacing_mm": 1.0}  # fmt: skip
    (tmp_path / "other.json").write_text(__import__("json").dumps(card))
    with pytest.raises(ImageError, match="not an AdaCS model"):
        load_adacs(tmp_path / "other")
