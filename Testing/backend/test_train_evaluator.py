"""Evaluator training: patch sampling, pair recipes, registration-produced misalignments, a
short run that lowers the loss, fine-tuning from a model, checkpoints and resume, the model
card, and two-process DistributedDataParallel on the CPU (gloo)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from imse.errors import Cancelled, ImageError
from imse.remap import RemapAugmentation
from imse.spatial_augment import apply_displacement
from imse.evaluator import Evaluator
from imse.inflation import inflate_evaluator
from imse.train_evaluator import EvaluatorTrainingConfig, PatchSampler, RegistrationAttack, make_training_pair, pair_displacements, train_evaluator

TINY = dict(dim=2, patch_size=(32, 32), batch_size=4, validation_pairs=8, validation_every=10, learning_rate=1e-3)


def test_patches_are_centred_on_foreground_drawn_from_every_volume_and_axis_and_seeded():
    # Two volumes whose foreground is one known block each, told apart by their value.
    volumes = [torch.full((20, 24, 28), -1.0) for _ in range(2)]
    volumes[0][5:9, 6:10, 7:11] = 0.25
    volumes[1][12:14, 3:6, 20:24] = 0.75

    def draw(seed):
        return PatchSampler(volumes, (8, 8), torch.Generator().manual_seed(seed)).sample(64)

    batch = draw(0)
    assert batch.shape == (64, 1, 8, 8)
    assert torch.equal(batch[:, 0, 4, 4].unique(), torch.tensor([0.25, 0.75]))  # both volumes, centre on foreground
    assert ((batch == -1) | (batch == 0.25) | (batch == 0.75)).all()  # outside the volume is padded with -1
    # The 2D slices come along every axis: the 2 x 3 x 4 block's extent in a slice tells which.
    extents = {(int((patch > -1).any(1).sum()), int((patch > -1).any(0).sum())) for patch in batch[:, 0]}
    assert extents == {(4, 4), (3, 4), (2, 4), (2, 3)}
    assert torch.equal(draw(0), batch) and not torch.equal(draw(1), batch)


def test_our_recipe_mixes_aligned_and_graded_misalignments_and_the_paper_never_aligns():
    generator = torch.Generator().manual_seed(0)
    first, second = pair_displacements((32, 32), 64, "ours", 0.25, generator)
    misalignment = (second - first).flatten(2).norm(dim=1).mean(1)  # mean voxels per pair
    aligned = misalignment < 1e-4
    assert 8 <= aligned.sum() <= 24  # about a quarter of 64
    assert (misalignment[~aligned] < 0.5).any() and misalignment.max() > 1.5  # small errors too
    first, second = pair_displacements((32, 32), 64, "paper", 0.25, generator)
    assert (second - first).flatten(2).norm(dim=1).mean(1).min() > 0.5


def test_training_pair_target_is_half_the_difference():
    x = torch.rand(4, 1, 24, 24) * 2 - 1
    inputs, target = make_training_pair(x, "ours", 1.0, RemapAugmentation(), torch.Generator().manual_seed(0))
    assert inputs.shape == (4, 2, 24, 24) and target.abs().max() < 1e-5  # all aligned: zero target
    inputs, target = make_training_pair(x, "paper", 0.0, RemapAugmentation(), torch.Generator().manual_seed(0))
    first, second = pair_displacements((24, 24), 4, "paper", 0.0, torch.Generator().manual_seed(0))
    x1, x2 = apply_displacement(x, first), apply_displacement(x, second)
    assert torch.allclose(inputs[:, 1:], x2) and torch.allclose(target, (x2 - x1) / 2)
    assert not torch.allclose(inputs[:, :1], x1)  # channel 0 is remapped


def _shipped_network() -> torch.nn.Module:
    """The shipped 2D evaluator (an untrained network outputs zeros: nothing to attack)."""
    return Evaluator.load("mni-t1-light-2d", dim=2).network


def _smooth_batch(count: int, size: int = 32) -> torch.Tensor:
    """Blobs in [-1, 1]: images whose misalignment a network's output can react to."""
    generator = torch.Generator().manual_seed(3)
    coarse = torch.rand(count, 1, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.mark.parametrize("channel", [0, 1])
def test_registration_attack_warps_one_side_smoothly_and_lowers_the_networks_error(channel):
    network = _shipped_network()
    x = _smooth_batch(4)
    other, reference = -x, torch.roll(x, 2, dims=-1)  # a negated image and a shifted one
    attack = RegistrationAttack(network, steps=6, step_voxels=0.5)
    displacement = attack.displacement(other, reference, channel, control_spacing=8)
    pair = [other, reference]
    before = network(torch.cat(pair, 1)).abs().mean()
    pair[channel] = apply_displacement(pair[channel], displacement)
    after = network(torch.cat(pair, 1)).abs().mean()
    assert after < before
    assert 0.1 < displacement.abs().max() < 6 * 0.5 + 1e-4  # it moved, by at most steps x step
    roughness = (displacement[..., 1:] - displacement[..., :-1]).abs().max()
    assert roughness < displacement.abs().max() / 4  # interpolated from control points 8 voxels apart


def test_attacked_pairs_keep_the_true_target_of_whichever_side_moved():
    network = _shipped_network()
    x = _smooth_batch(2)
    for seed in range(6):  # both channels are drawn among these seeds
        generator = torch.Generator().manual_seed(seed)
        plain_inputs, plain_target = make_training_pair(x, "ours", 0.0, _negate, torch.Generator().manual_seed(seed))
        inputs, target = make_training_pair(x, "ours", 0.0, _negate, generator, RegistrationAttack(network, steps=3))
        other_moved = not torch.allclose(inputs[:, :1], plain_inputs[:, :1])
        reference_moved = not torch.allclose(inputs[:, 1:], plain_inputs[:, 1:])
        assert other_moved != reference_moved  # exactly one side was warped
        # the target stays (x o T2 - x o T1) / 2 of the warped pair: here channel 0 is -x o T1
        assert torch.allclose(target, (inputs[:, 1:] + inputs[:, :1]) / 2, atol=1e-5)


def _negate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return -x


def test_short_training_lowers_the_validation_loss_and_writes_a_full_card(tmp_path):
    """Same-modality training (no Shuffle Remap) learns within a few dozen steps; the
    multi-modal task needs far longer than a test (see the benchmark)."""
    config = EvaluatorTrainingConfig(out=tmp_path, name="tiny", iterations=40, command="imse test", remap=False, recipe="paper", **TINY)
    weights = train_evaluator(config)
    card = json.loads(weights.with_suffix(".json").read_text())
    history = card["training"]["history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == 40
    assert history[-1]["validation_l1"] < 0.8 * history[0]["validation_l1"]
    assert card["task"] == "evaluator" and card["dim"] == 2 and card["modality"] == "T1"
    assert card["training"]["command"] == "imse test" and "MNI" in card["training"]["data"]
    assert card["training"]["iterations"] == 40 and card["training"]["recipe"] == "paper"
    assert card["training"]["shuffle_remap"] is False
    assert set(load_file(str(weights))) == set(torch.nn.Module.state_dict(__import__("imse.networks").networks.build_network("light", 2)))


def test_resume_continues_exactly_where_training_stopped(tmp_path):
    whole = train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "whole", iterations=12, checkpoint_every=6, **TINY))
    with pytest.raises(Cancelled, match="cancelled at step 8"):
        train_evaluator(
            EvaluatorTrainingConfig(out=tmp_path / "parts", iterations=12, checkpoint_every=6, **TINY),
            should_stop=iter([False] * 8 + [True]).__next__,  # cancelled before step 9
        )
    assert not (tmp_path / "parts" / "evaluator.safetensors").exists()
    resumed = train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "parts", iterations=12, checkpoint_every=6, resume=True, **TINY))
    expected, actual = load_file(str(whole)), load_file(str(resumed))
    assert all(torch.allclose(expected[key], actual[key], atol=1e-6) for key in expected)
    with pytest.raises(ImageError, match="Nothing to resume"):
        train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "none", iterations=2, resume=True, **TINY))


def test_fine_tuning_starts_from_the_initial_model_and_records_the_adversarial_settings(tmp_path):
    first = train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "first", name="first", iterations=6, **TINY))
    tuned = train_evaluator(
        EvaluatorTrainingConfig(
            out=tmp_path / "tuned", name="tuned", iterations=4, initial_model=str(first), adversarial_fraction=1.0, adversarial_steps=2, **TINY
        )
    )
    first_card = json.loads(first.with_suffix(".json").read_text())["training"]
    training = json.loads(tuned.with_suffix(".json").read_text())["training"]
    # the same validation pairs: the tuned run's starting loss is the first model's final loss
    assert training["history"][0]["validation_l1"] == pytest.approx(first_card["history"][-1]["validation_l1"], rel=1e-5)
    assert training["initial_model"] == str(first) and training["adversarial_fraction"] == 1.0 and training["adversarial_steps"] == 2


def test_the_noise_elastic_width_flip_and_rotation_options_change_the_pairs_and_are_recorded(tmp_path):
    """From the command line: the pairs differ from the default recipe's (the validation loss at
    step 0 changes), and the card records the settings."""
    from imse.cli import main

    common = ["train-evaluator", "--dim", "2", "--patch-size", "32", "32", "--batch-size", "2", "--iterations", "2", "--validation-every", "1", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "plain"), "--name", "plain"]) == 0
    options = ["--noise-probability", "0.6", "--noise-std", "0.1", "--random-noise-std", "--elastic-sigma", "5", "12", "--flip-augment", "--rotation-augment", "45"]
    assert main([*common, "--out", str(tmp_path / "varied"), "--name", "varied", *options]) == 0
    plain = json.loads((tmp_path / "plain" / "plain.json").read_text())["training"]
    varied = json.loads((tmp_path / "varied" / "varied.json").read_text())["training"]
    assert plain["elastic_sigma_voxels"] == [12.0, 12.0] and plain["noise"] == {"probability": 0.2, "std": 0.05, "random_std": False}
    assert varied["elastic_sigma_voxels"] == [5.0, 12.0] and varied["noise"] == {"probability": 0.6, "std": 0.1, "random_std": True}
    assert varied["flip_augment"] and not plain["flip_augment"]
    assert varied["rotation_augment_degrees"] == 45.0 and plain["rotation_augment_degrees"] == 0.0
    assert varied["history"][0]["validation_l1"] != plain["history"][0]["validation_l1"]


def test_a_2d_evaluator_starts_a_3d_training_inflated_and_the_reverse_is_refused(tmp_path):
    first = train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "first", name="first", iterations=2, **TINY))
    three = dict(TINY, dim=3, patch_size=(16, 16, 16), batch_size=1, validation_pairs=1)
    # a learning rate so small that the one step leaves the starting weights as they were
    inflated = train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "3d", initial_model=str(first), iterations=1, **{**three, "learning_rate": 1e-12}))
    expected = inflate_evaluator(Evaluator.load(first).network).state_dict()
    actual = load_file(str(inflated))
    assert expected.keys() == actual.keys()
    assert all(torch.allclose(expected[key], actual[key], atol=1e-9) for key in expected)
    with pytest.raises(ImageError, match="3D 'light' evaluator; this training is 2D"):
        train_evaluator(EvaluatorTrainingConfig(out=tmp_path / "bad", initial_model=str(inflated), iterations=1, **TINY))


def test_a_3d_training_turns_its_patches_and_crops_them_to_the_patch_size(tmp_path, monkeypatch):
    """The larger patches drawn for the turns reach the pair maker cropped back to the configured
    size, in 3D too."""
    import imse.train_evaluator as module

    shapes = []

    def recording(batch, *args, **kwargs):
        shapes.append(tuple(batch.shape))
        return make_pair(batch, *args, **kwargs)

    make_pair = module.make_training_pair
    monkeypatch.setattr(module, "make_training_pair", recording)
    three = dict(TINY, dim=3, patch_size=(16, 16, 16), batch_size=1, validation_pairs=1)
    weights = train_evaluator(EvaluatorTrainingConfig(out=tmp_path, name="turned", iterations=2, rotation_augment_degrees=30.0, **three))
    assert shapes[-2:] == [(1, 1, 16, 16, 16)] * 2  # the two training steps (the validation pairs come first)
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["patch_size"] == [16, 16, 16] and card["training"]["rotation_augment_degrees"] == 30.0
    assert card["training"]["iterations"] == 2


def test_bad_training_settings_are_refused(tmp_path):
    with pytest.raises(ImageError, match="recipe"):
        EvaluatorTrainingConfig(out=tmp_path, recipe="magic")
    with pytest.raises(ImageError, match="patch_size needs 3"):
        EvaluatorTrainingConfig(out=tmp_path, dim=3, patch_size=(32, 32))
    with pytest.raises(ImageError, match="adversarial_fraction"):
        EvaluatorTrainingConfig(out=tmp_path, adversarial_fraction=1.5)
    with pytest.raises(ImageError, match="elastic_sigma_voxels"):
        EvaluatorTrainingConfig(out=tmp_path, elastic_sigma_voxels=(12.0, 5.0))
    with pytest.raises(ImageError, match="noise_probability"):
        EvaluatorTrainingConfig(out=tmp_path, noise_probability=2.0)
    with pytest.raises(ImageError, match="rotation_augment_degrees must lie between 0 and 180"):
        EvaluatorTrainingConfig(out=tmp_path, rotation_augment_degrees=-5.0)


def test_two_process_distributed_training_on_cpu(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
        "-m", "imse", "train-evaluator", "--out", str(tmp_path), "--name", "ddp", "--dim", "2",
        "--patch-size", "32", "32", "--batch-size", "2", "--iterations", "6", "--validation-every", "3",
        "--device", "cpu",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=300, env=environment)
    assert finished.returncode == 0, finished.stderr[-2000:]
    card = json.loads((tmp_path / "ddp.json").read_text())
    assert card["training"]["processes"] == 2 and card["training"]["batch_size"] == 4
    assert card["training"]["iterations"] == 6
