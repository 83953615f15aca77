"""Judging a set of generations: the Inception-like score and the novelty count.

Inception-like score (Salimans et al. 2016, with the composer classifier in Inception's
place): exp(E_x KL(p(y|x) || p(y))), high when each piece clearly sounds like some composer
(confident p(y|x)) and the set covers many composers (broad p(y)); it runs from 1 to the
number of composers. Novelty, as Clara's author put it: pieces the critic takes for human
that no composer claims (the composer classifier's top probability below a threshold).
"""

from __future__ import annotations

import math

import torch


def inception_score(probs: torch.Tensor) -> float:
    """probs (pieces, composers), rows summing to 1 -> exp(mean KL(p(y|x) || p(y)))."""
    if probs.numel() == 0:
        return math.nan
    p = probs.double().clamp_min(1e-12)
    marginal = p.mean(0, keepdim=True)
    kl = (p * (p.log() - marginal.log())).sum(1)
    return float(kl.mean().exp())


def novel(human: torch.Tensor, composer: torch.Tensor, human_at: float = 0.5, claimed_at: float = 0.5) -> list[int]:
    """Indices of pieces the critic calls human (P(human) >= human_at) whose likeliest composer
    has probability below claimed_at."""
    return [i for i in range(len(human)) if human[i] >= human_at and composer[i].max() < claimed_at]
