"""Training data: the corpus's token files as id streams, cut into AWD-LSTM batches.

The train split's pieces are shuffled per epoch (from the run's seed) and joined into one
stream, laid out as `batch_size` contiguous rows so the hidden state carries from one batch
to the next. Sequence lengths vary around bptt (AWD-LSTM: bptt, or half of it one time in
twenty, then normal with sd 5), drawn from the shared seed so every rank takes the same
number of steps and none waits on another.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from clara_live.config import CorpusConfig
from clara_live.corpus.built import BuiltCorpus
from clara_live.errors import InputError


class Corpus(BuiltCorpus):
    """A built corpus as training reads it: its pieces, and the train split's keys to draw."""

    def augment(self, pieces: list[np.ndarray], vocabulary: list[str], config: CorpusConfig) -> Augment | None:
        """The train split's keys and weights (a corpus of format 2; format 1 stored every key);
        `pieces` are the train split's ids over vocabulary."""
        if self.manifest.get("format", 1) < 2:
            return None
        train = sorted((p for p in self.manifest["pieces"] if p["split"] == "train"), key=lambda p: p["line"])
        vocab = self.vocab(vocabulary)
        table = {shift: vocab.shifted(shift) for shift in sorted({s for p in train for s in p["shifts"]} - {0})}
        if len(train) != len(pieces):
            raise InputError(f"{self.folder}: manifest.json lists {len(train)} train pieces, "
                             f"train.txt has {len(pieces)}")
        shifts = []
        for p, piece in zip(train, pieces, strict=True):  # a key that would take a token out of range is not drawn
            ids = token_ids(piece)
            shifts.append([s for s in p["shifts"] if s == 0 or (s in table and bool((table[s][ids] >= 0).all()))])
        return Augment(shifts, [config.weight_of(p.get("corpus", "")) for p in train], table)


class Augment(NamedTuple):
    """How an epoch draws the train pieces: each piece's keys (semitone shifts that keep it in
    range), how often it is drawn (its corpus's weight) and the id tables that transpose."""

    shifts: list[list[int]]
    weights: list[float]
    table: dict[int, np.ndarray]  # shift -> id -> transposed id


class TrainSet(NamedTuple):
    """The train split's pieces and how an epoch draws them (None: each once, as stored)."""

    pieces: list[np.ndarray]
    augment: Augment | None = None

    def stream(self, seed: int, epoch: int) -> np.ndarray:
        return epoch_stream(self.pieces, seed, epoch, self.augment)


def epoch_stream(pieces: list[np.ndarray], seed: int, epoch: int, augment: Augment | None = None) -> np.ndarray:
    """The pieces in this epoch's order, joined. With `augment`, a piece of weight w is drawn
    floor(w) times and once more with probability w - floor(w), each copy in a key drawn from its
    shifts, all from the run's seed and the epoch (so every rank and every resume agree)."""
    if not pieces:
        return np.zeros(0, np.int64)
    if augment is None:
        order = np.random.default_rng([seed, epoch, 0]).permutation(len(pieces))
        return np.concatenate([pieces[i] for i in order])
    rng = np.random.default_rng([seed, epoch, 2])
    copies = []
    for i, weight in enumerate(augment.weights):
        count = int(weight) + int(rng.random() < weight - int(weight))
        copies += [(i, int(rng.choice(augment.shifts[i])) if augment.shifts[i] else 0) for _ in range(count)]
    order = rng.permutation(len(copies))
    parts = [transposed(pieces[copies[k][0]], augment.table[copies[k][1]]) if copies[k][1] else pieces[copies[k][0]]
             for k in order]
    return np.concatenate(parts) if parts else np.zeros((0, *pieces[0].shape[1:]), np.int64)


def token_ids(piece: np.ndarray) -> np.ndarray:
    """A piece's ids: the piece itself, or the first column of a piece with touch (tokens, 3)."""
    return piece[:, 0] if piece.ndim == 2 else piece


def transposed(piece: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A piece in another key (table: id -> transposed id); touch is the same in every key."""
    if piece.ndim == 1:
        return table[piece]
    moved = piece.copy()
    moved[:, 0] = table[piece[:, 0]]
    return moved


def batchify(stream: np.ndarray, batch_size: int) -> torch.Tensor:
    """(batch_size, columns) (and the touch columns, for a stream with touch): row r is the r-th
    contiguous slice of the stream."""
    columns = len(stream) // batch_size
    return torch.from_numpy(stream[:columns * batch_size].reshape(batch_size, columns, *stream.shape[1:]).copy())


def sequence_lengths(columns: int, bptt: int, seed: int, epoch: int) -> list[int]:
    """Lengths of the epoch's batches; each predicts `length` tokens, so they cover columns - 1."""
    rng = np.random.default_rng([seed, epoch, 1])
    lengths, used = [], 0
    while used < columns - 1:
        base = bptt if rng.random() < 0.95 else bptt / 2
        length = int(min(max(5, round(rng.normal(base, 5))), bptt + 20, columns - 1 - used))
        lengths.append(length)
        used += length
    return lengths


def rank_rows(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's share of the global batch's rows (batch_size must divide by world)."""
    rows = batch.size(0) // world
    return batch[rank * rows:(rank + 1) * rows]
