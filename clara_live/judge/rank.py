"""The critic as a candidate ranker: best-of-K keeps the candidate most likely human-composed."""

from __future__ import annotations

import numpy as np

from clara_live.codec.vocabulary import Vocabulary
from clara_live.judge.store import LoadedJudge
from clara_live.sampling.search import Scorer


def critic_scorer(critic: LoadedJudge) -> Scorer:
    """A Scorer (sequences, mean log-probs) -> each candidate's probability of being human, by
    the critic; a token the critic's vocabulary lacks counts as its <unk> or is dropped."""
    from clara_live.judge.predict import predict_pieces

    vocab = Vocabulary(critic.vocabulary, critic.codec)
    human = critic.classes.index("human")

    def ids(seq: list[str]) -> np.ndarray:
        known = seq if vocab.unknown is not None else [t for t in seq if t in vocab.index]
        return vocab.ids(known or vocab.tokens[:1], "a candidate", unknown=True)  # an empty one: the first token

    def score(sequences: list[list[str]], mean_logprob: np.ndarray) -> np.ndarray:  # noqa: ARG001
        pieces = [ids(seq) for seq in sequences]
        return predict_pieces(critic.model, pieces, critic.window, critic.stride)[:, human].numpy()

    return score
