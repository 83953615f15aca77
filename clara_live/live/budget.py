"""What a best-of-K answer costs here, and how many candidates fit before it is due.

Sampling K candidates at once costs a batched sampler step per token, and the critic's judging a
time per candidate token; both are measured (`calibrate` before the first answer, then every answer
and choice as it happens). `affordable` takes the most candidates (K, K/2, ... 2, else 1) whose
estimated cost, times SAFETY, fits in the time left before the answer's first note.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CHOICE_MARGIN = 0.03  # seconds kept free between choosing a best-of-K answer and its first note
SAFETY = 1.5  # the estimate of a choice's cost is multiplied by this before it is compared with the time left


class ChoiceBudget:
    def __init__(self, candidates: int) -> None:
        self.candidates = candidates
        self.chosen: list[int] = []  # how many candidates each answer could afford
        self.choices: list[tuple[float, float]] = []  # per best-of-K answer: (seconds taken, seconds there were)
        self.tokens_per_step = 1.0  # running estimate of an answer's density (cautious until answers are seen)
        self.judge_cost = 0.0005  # seconds per judged candidate token
        self.step_costs: dict[int, float] = {}  # seconds per batched sampler step of k streams

    def step_cost(self, k: int) -> float:
        """Seconds per batched sampler step of k streams: measured, else one stream's times a guess."""
        return self.step_costs.get(k, self.step_costs.get(1, 0.001) * (1 + 0.15 * (k - 1)))

    def affordable(self, steps: int, time_left: float) -> int:
        """The most candidates whose sampling and judging fit in time_left (seconds) for `steps` steps."""
        budget = time_left - CHOICE_MARGIN
        tokens = steps * self.tokens_per_step
        k = self.candidates
        while k > 1:
            if SAFETY * tokens * (self.step_cost(k) + k * self.judge_cost) <= budget:
                return k
            k //= 2
        return 1

    def calibrate(self, sampler, scorer, filler: str, clock: Callable[[], float], tokens: int = 64,
                  steps: int = 8) -> None:
        """Measure batched sampler steps for each K tried, and the scorer per candidate token (on
        `tokens` of `filler`); the sampler is left exactly as it was."""
        before = sampler.snapshot()
        k = self.candidates
        while k >= 1:
            sampler.expand(k)
            started = clock()
            for _ in range(steps):
                sampler.step()
            self.step_costs[k] = (clock() - started) / steps
            sampler.restore(before)
            k = k // 2 if k > 2 else k - 1
        if scorer is not None:
            sample = [[filler] * tokens] * self.candidates
            started = clock()
            scorer(sample, np.zeros(self.candidates))
            self.judge_cost = (clock() - started) / (self.candidates * tokens)

    def streamed(self, seconds: float, sampled: int, steps: int) -> None:
        """An answer streamed one token at a time: `sampled` tokens in `seconds`, over `steps` steps."""
        self.step_costs[1] = seconds / sampled
        self.tokens_per_step = 0.8 * self.tokens_per_step + 0.2 * sampled / max(1, steps)

    def batched(self, k: int, seconds: float, tokens: int, steps: int) -> None:
        """A best-of-k answer: sampling took `seconds` (judging aside) for the winner's `tokens`."""
        self.step_costs[k] = seconds / max(1, tokens)  # per step of the batch (the winner's length: rough)
        self.tokens_per_step = 0.8 * self.tokens_per_step + 0.2 * tokens / max(1, steps)

    def judged(self, seconds: float, tokens: int) -> None:
        self.judge_cost = 0.5 * self.judge_cost + 0.5 * seconds / max(1, tokens)
