"""The Inception-like score's bounds and the novelty rule."""

from __future__ import annotations

import pytest
import torch

from clara_live.judge.score import inception_score, novel


def test_inception_score_runs_from_one_to_the_number_of_classes():
    one_hot = torch.eye(4)
    assert inception_score(one_hot) == pytest.approx(4.0)  # confident and covering every class
    assert inception_score(torch.full((5, 4), 0.25)) == pytest.approx(1.0)  # says nothing
    assert inception_score(one_hot[[0, 0, 0]]) == pytest.approx(1.0)  # confident, but always the same class
    mixed = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    assert 1.0 < inception_score(mixed) < 2.0


def test_novel_pieces_are_human_sounding_and_unclaimed():
    human = torch.tensor([0.9, 0.9, 0.2, 0.6])
    composer = torch.tensor([[0.4, 0.3, 0.3], [0.8, 0.1, 0.1], [0.34, 0.33, 0.33], [0.45, 0.45, 0.1]])
    assert novel(human, composer) == [0, 3]
