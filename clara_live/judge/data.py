"""Pieces to labelled windows for the judges: split by piece (never by window), cut into
windows, and batched with padding.

Clara's classifier split its windows at random, so one piece's windows sat in train and in
test and the test score measured memory. Here every window of a piece stays with its piece,
and the split is stratified by label with a stable hash, so each composer with enough pieces
has some in every split and a file keeps its split from run to run.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from clara_live.codec.vocabulary import Vocabulary, move_ids


def split_pieces(items: Sequence[tuple[str, str]], valid_fraction: float = 0.1,
                 test_fraction: float = 0.15) -> dict[str, str]:
    """(piece key, label) pairs -> {key: "train" | "valid" | "test"}, stratified by label.

    Within a label the pieces are ordered by a stable hash of their key; the first
    round(n * test_fraction) go to test (at least one when the label has 3 or more pieces),
    the next round(n * valid_fraction) to valid (at least one when 3 or more are left), the
    rest to train. A key given twice is refused: one piece, one split.
    """
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("a piece key appears twice: every piece must have one label and one split")
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, label in items:
        by_label[label].append(key)
    split: dict[str, str] = {}
    for keys_of_label in by_label.values():
        ordered = hash_order(keys_of_label)
        n = len(ordered)
        test = max(1, round(n * test_fraction)) if n >= 3 else 0
        valid = max(1, round(n * valid_fraction)) if n - test >= 3 else 0
        for i, key in enumerate(ordered):
            split[key] = "test" if i < test else "valid" if i < test + valid else "train"
    return split


def hash_order(keys: Sequence[str]) -> list[str]:
    """Keys in the order of their SHA-256: arbitrary, but the same on every machine and run."""
    return sorted(keys, key=lambda k: hashlib.sha256(k.encode("utf-8")).hexdigest())


def windows(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) windows of `size` tokens every `stride` covering a sequence of `length`
    tokens; the last is aligned to the end; a shorter sequence is one window of itself."""
    if size < 1 or stride < 1:
        raise ValueError("window size and stride must be at least 1")
    if length <= size:
        return [(0, length)] if length else []
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return [(s, s + size) for s in starts]


def pad_batch(sequences: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (tokens (batch, longest), lengths (batch,)), right-padded with `pad`."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("every window needs at least one token")
    longest = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), longest), pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return tokens, torch.tensor([len(s) for s in sequences], dtype=torch.long)


def transposed_versions(ids: np.ndarray, vocab: Vocabulary, semitones: int) -> list[np.ndarray]:
    """A notewise piece as it is, then moved by each of -semitones..+semitones but 0 (a note moved
    off the keyboard is dropped with its end)."""
    shifts = [s for s in range(-semitones, semitones + 1) if s]
    return [ids] + [move_ids(ids, vocab.shifted(s)) for s in shifts]
