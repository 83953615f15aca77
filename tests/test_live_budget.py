"""The best-of-K budget: as many candidates as fit before the answer is due, from measured costs."""

from __future__ import annotations

import pytest

from clara_live.live.budget import CHOICE_MARGIN, SAFETY, ChoiceBudget


def test_the_most_candidates_that_fit_and_halving_until_they_do():
    budget = ChoiceBudget(8)
    budget.step_costs = {1: 0.001, 2: 0.0012, 4: 0.0016, 8: 0.0024}
    budget.judge_cost = 0.0001
    budget.tokens_per_step = 1.0
    cost = {k: SAFETY * 48 * (budget.step_cost(k) + k * budget.judge_cost) for k in (8, 4, 2)}
    assert budget.affordable(48, CHOICE_MARGIN + cost[8] + 1e-9) == 8
    assert budget.affordable(48, CHOICE_MARGIN + cost[8] * 0.99) == 4
    assert budget.affordable(48, CHOICE_MARGIN + cost[2] * 0.99) == 1
    assert budget.affordable(48, 0.0) == 1


def test_costs_learnt_from_answers_as_they_happen():
    budget = ChoiceBudget(4)
    assert budget.step_cost(4) == pytest.approx(0.001 * 1.45)  # a guess before anything is measured
    budget.streamed(seconds=0.02, sampled=40, steps=48)
    assert budget.step_costs[1] == pytest.approx(0.0005)
    assert budget.tokens_per_step == pytest.approx(0.8 + 0.2 * 40 / 48)
    budget.batched(4, seconds=0.04, tokens=40, steps=48)
    assert budget.step_costs[4] == pytest.approx(0.001)
    before = budget.judge_cost
    budget.judged(seconds=0.008, tokens=80)
    assert budget.judge_cost == pytest.approx(0.5 * before + 0.5 * 0.0001)
