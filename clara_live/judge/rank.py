"""The critic as a candidate ranker: best-of-K keeps the candidate most likely human-composed."""

from __future__ import annotations

import numpy as np

from clara_live.judge.store import LoadedJudge
from clara_live.sampling.search import Scorer


def critic_scorer(critic: LoadedJudge) -> Scorer:
    """A Scorer (sequences, mean log-probs) -> each candidate's probability of being human, by
    the critic; a token the critic's vocabulary lacks counts as its <unk> or is dropped."""
    from clara_live.judge.predict import predict_pieces

    index = {t: i for i, t in enumerate(critic.vocabulary)}
    human = critic.classes.index("human")
    unk = index.get("<unk>")

    def score(sequences: list[list[str]], mean_logprob: np.ndarray) -> np.ndarray:  # noqa: ARG001
        pieces = [np.array([index.get(t, unk) for t in seq if t in index or unk is not None] or [0], dtype=np.int64)
                  for seq in sequences]
        return predict_pieces(critic.model, pieces, critic.window, critic.stride)[:, human].numpy()

    return score
