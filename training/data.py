"""Training data: the corpus's token files as id streams, cut into AWD-LSTM batches.

The train split's pieces are shuffled per epoch (from the run's seed) and joined into one
stream, laid out as `batch_size` contiguous rows so the hidden state carries from one batch
to the next. Sequence lengths vary around bptt (AWD-LSTM: bptt, or half of it one time in
twenty, then normal with sd 5), drawn from the shared seed so every rank takes the same
number of steps and none waits on another.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from clara_live.errors import InputError
from clara_live.model.evaluate import token_ids


class Corpus:
    """A built corpus folder: manifest.json plus train/valid/test.txt."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{self.folder}: no manifest.json (build the corpus with `clara corpus`)") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{self.folder / 'manifest.json'}: not valid JSON") from None
        self.vocabulary: list[str] = self.manifest["vocabulary"]
        self.unknown: str | None = self.manifest.get("unknown_token")

    def pieces(self, split: str, vocabulary: list[str] | None = None) -> list[np.ndarray]:
        """Each line of split.txt as an id array over vocabulary (the corpus's own by default)."""
        index = {t: i for i, t in enumerate(vocabulary or self.vocabulary)}
        path = self.folder / f"{split}.txt"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InputError(f"{path}: missing") from None
        try:
            return [token_ids(line.split(), index, self.unknown, f"{path}:{n + 1}")
                    for n, line in enumerate(lines) if line.strip()]
        except ValueError as exc:
            raise InputError(str(exc)) from None


def epoch_stream(pieces: list[np.ndarray], seed: int, epoch: int) -> np.ndarray:
    """The pieces in this epoch's order, joined."""
    order = np.random.default_rng([seed, epoch, 0]).permutation(len(pieces))
    return np.concatenate([pieces[i] for i in order]) if pieces else np.zeros(0, np.int64)


def batchify(stream: np.ndarray, batch_size: int) -> torch.Tensor:
    """(batch_size, columns): row r is the r-th contiguous slice of the stream."""
    columns = len(stream) // batch_size
    return torch.from_numpy(stream[:columns * batch_size].reshape(batch_size, columns).copy())


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
