"""The run settings both checkpointed trainings share (imse.training_run)."""

from pathlib import Path

import pytest

from imse.errors import ImageError
from imse.registration_network import RegistrationTrainingConfig
from imse.train_evaluator import EvaluatorTrainingConfig
from imse.training_run import invoked_command

CONFIGS = (EvaluatorTrainingConfig, RegistrationTrainingConfig)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be at least 1"),
        ("iterations", 0, "iterations must be at least 1"),
        ("validation_every", 0, "validation_every must be at least 1"),
        ("checkpoint_every", -1, "checkpoint_every must be at least 1"),
        ("max_minutes", 0.0, "max_minutes must be a positive"),
        ("learning_rate", 0.0, "learning rate must be positive"),
    ],
)
def test_bad_run_settings_are_refused(tmp_path, config, setting, value, message):
    with pytest.raises(ImageError, match=message):
        config(out=tmp_path, **{setting: value})


@pytest.mark.parametrize("config", CONFIGS)
def test_run_settings_fill_in_the_folder_and_the_command(config):
    settings = config(out="models")
    assert settings.out == Path("models")
    assert settings.command  # this process's command line, for the model card
    assert config(out="models", command="imse train").command == "imse train"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/opt/venv/lib/python3.12/site-packages/imse/__main__.py", "train-evaluator", "--out", "my models"], "imse train-evaluator --out 'my models'"),
        (["/opt/venv/bin/imse", "train-registration"], "imse train-registration"),
        (["train.py", "--fast"], "train.py --fast"),
    ],
)
def test_the_recorded_command_names_the_imse_command_however_it_was_started(monkeypatch, argv, expected):
    monkeypatch.setattr("sys.argv", argv)
    assert invoked_command() == expected


def test_each_training_keeps_its_own_defaults():
    assert (EvaluatorTrainingConfig(out="x").learning_rate, EvaluatorTrainingConfig(out="x").validation_pairs) == (1e-4, 32)
    assert (RegistrationTrainingConfig(out="x").learning_rate, RegistrationTrainingConfig(out="x").validation_pairs) == (1e-3, 8)
    assert EvaluatorTrainingConfig(out="x").name == "evaluator"
    assert RegistrationTrainingConfig(out="x").name == "registration"
