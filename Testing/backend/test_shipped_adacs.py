"""The shipped AdaCS model of the echo cine: registered, small enough for git, documented by its
card, and it explains the motion from end-diastole of the loop it was trained on far better
than no motion at all."""

import numpy as np
import pytest

from imse.adacs import load_adacs, register_frames
from imse.data import load_echo_cine
from imse.image import Image, resample_to_spacing
from imse.models import find_model

NAME = "echo-a4c-adacs-2d-ed"
END_DIASTOLE = 50


@pytest.fixture(scope="module")
def echo_model():
    return load_adacs(find_model(NAME, task="adacs", dim=2))


def test_shipped_echo_model_is_registered_small_and_documented(echo_model):
    assert echo_model.path.stat().st_size < 10 * 2**20
    card = echo_model.card
    assert card.task == "adacs" and card.dim == 2 and echo_model.network.scoring
    training = card.training
    assert "adacs train echo" in training["command"] and training["config"]["pairing"] == "reference"
    assert training["config"]["reference_frame"] == END_DIASTOLE
    assert training["iterations"] > training["config"]["displacement_warmup"] + training["config"]["scoring_warmup"]  # it alternated
    assert training["network"]["spacing_mm"] == [2.0, 2.0]


@pytest.mark.parametrize("t", [55, 59])  # mid- and end-systole, where the walls have moved most
def test_shipped_echo_model_explains_the_motion_from_end_diastole(echo_model, t):
    cine = load_echo_cine()
    target, source = (resample_to_spacing(Image(cine.frames[i], cine.geometry), 2.0) for i in (END_DIASTOLE, t))
    displacement, warped, score = register_frames(echo_model.network, source.array, target.array, target.geometry)
    inside = target.array > 0
    before = np.square(target.array - source.array)[inside].mean()
    after = np.square(target.array - warped[0, 0].numpy())[inside].mean()
    assert after < 0.6 * before  # measured: 0.40 at both frames
    assert np.abs(displacement.numpy()).max() < 25.0  # mm: the mitral annulus moves about 15 mm
    assert 0.0 < score.min() and score.max() < 1.0
