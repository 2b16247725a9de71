"""Evaluator training: pair recipes, a short run that lowers the loss, checkpoints and resume,
the model card, and two-process DistributedDataParallel on the CPU (gloo)."""

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
from imse.train_evaluator import EvaluatorTrainingConfig, make_training_pair, pair_displacements, train_evaluator

TINY = dict(dim=2, patch_size=(32, 32), batch_size=4, validation_pairs=8, validation_every=10, learning_rate=1e-3)


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


def test_bad_training_settings_are_refused(tmp_path):
    with pytest.raises(ImageError, match="recipe"):
        EvaluatorTrainingConfig(out=tmp_path, recipe="magic")
    with pytest.raises(ImageError, match="patch_size needs 3"):
        EvaluatorTrainingConfig(out=tmp_path, dim=3, patch_size=(32, 32))


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
