"""The player's motifs: a short-term model of the top line's intervals, after the short-term
model of IDyOM (Pearce 2005, "The construction and evaluation of statistical models of melodic
structure"): a model built on the piece so far, beside the long-term one built on the corpus.

The top line is the highest pitch of each onset set (the notes struck in one step). From the
top lines of the music *fed* to the sampler (a prompt, the player's phrases) the model counts
which interval followed each pair of intervals and each single interval, over the last WINDOW
onset sets. Its prediction of the next interval blends the two orders by Witten-Bell escape
(the order-1 context takes the share of the order-2 context's escape); an interval neither
context saw gets nothing. What Clara samples extends each stream's top line but is not learnt:
she takes up the player's cells, not her own.

The sampler uses the prediction as a pull (`sampling.motif_pull`, log-odds): a note token whose
top pitch would continue the stream's top line by a predicted interval gains pull × its
probability, and the note tokens together keep the probability they had, so the pull changes
which notes she strikes, never how often or when.

Pure values: `Motifs` holds its history as a tuple (a snapshot is the tuple itself); the
counts are derived once per history and cached.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

WINDOW = 128  # onset sets of fed music the counts cover (about the last minute of playing)
ORDER = 2  # intervals of context (the interval 3-grams a listener hears as a motif's cell)


class Motifs:
    """Interval n-gram counts over the top line of the music fed, and their prediction."""

    def __init__(self, pull: float) -> None:
        self.pull = float(pull)
        self.history: tuple[int, ...] = ()  # fed top-line pitches, the last WINDOW + ORDER
        self._tables: tuple[tuple[int, ...], list[dict[tuple[int, ...], Counter]]] | None = None

    def reset(self) -> None:
        self.history = ()

    def learn(self, top: int) -> None:
        """One more onset set of fed music, by its top pitch."""
        self.history = (*self.history, int(top))[-(WINDOW + ORDER):]

    def _counts(self) -> list[dict[tuple[int, ...], Counter]]:
        """Per context length 1..ORDER: context intervals -> Counter of the interval that followed."""
        if self._tables is not None and self._tables[0] is self.history:
            return self._tables[1]
        steps = np.diff(self.history).tolist() if len(self.history) > 1 else []
        tables: list[dict[tuple[int, ...], Counter]] = []
        for order in range(1, ORDER + 1):
            table: dict[tuple[int, ...], Counter] = defaultdict(Counter)
            for i in range(order, len(steps)):
                table[tuple(steps[i - order:i])][steps[i]] += 1
            tables.append(dict(table))
        self._tables = (self.history, tables)
        return tables

    def predict(self, tops: tuple[int, ...]) -> dict[int, float]:
        """The next interval's probabilities after a top line ending in `tops` (its last pitches);
        they sum to less than 1, the rest being the escape to 'no motif'."""
        if len(tops) < 2 or len(self.history) < 3:
            return {}
        last = tops[-(ORDER + 1):]
        steps = [b - a for a, b in zip(last, last[1:], strict=False)]
        tables = self._counts()
        prediction: dict[int, float] = {}
        for order in range(1, min(ORDER, len(steps)) + 1):  # lower orders first: each higher one escapes to them
            seen = tables[order - 1].get(tuple(steps[-order:]))
            if not seen:
                continue
            total, types = sum(seen.values()), len(seen)
            escape = types / (total + types)
            prediction = {i: escape * p for i, p in prediction.items()}
            for interval, n in seen.items():
                prediction[interval] = prediction.get(interval, 0.0) + n / (total + types)
        return prediction

    def bias(self, tops: tuple[int, ...], step_top: int, top_pitch: np.ndarray) -> np.ndarray | None:
        """(vocab,) log-odds for one stream: pull × the predicted probability of the interval a
        note token's top pitch (`top_pitch`, -1 for tokens that strike nothing) would make from
        the top line's last pitch, for tokens that would be the step's new top (above
        `step_top`, the highest pitch struck in this step so far, -1 for none). None: nothing
        predicted."""
        if not self.pull or not tops:
            return None
        prediction = self.predict(tops)
        if not prediction:
            return None
        out = np.zeros(len(top_pitch), dtype=np.float32)
        last = tops[-1]
        if len(tops) > 1 and tops[-2] == last:
            prediction.pop(0, None)  # a repeated note is the model's to strike a third time, not the pull's
        for interval, p in prediction.items():
            hit = (top_pitch == last + interval) & (top_pitch > step_top)
            out[hit] += self.pull * p
        return out if out.any() else None


def apply_bias(logits: torch.Tensor, bias: torch.Tensor, notes: torch.Tensor) -> torch.Tensor:
    """Add `bias` (streams, vocab) to the note tokens' logits (`notes`: their ids) and give the
    note tokens together back the probability they had before: the pull moves probability
    between notes, never between striking and waiting. Disallowed tokens (-inf) stay so."""
    before = logits[:, notes]
    moved = before + bias[:, notes]
    shift = torch.logsumexp(moved, -1, keepdim=True) - torch.logsumexp(before, -1, keepdim=True)
    out = logits.clone()
    out[:, notes] = moved - torch.nan_to_num(shift, nan=0.0, posinf=0.0, neginf=0.0)  # no note allowed: no shift
    return out
