"""A judge's verdicts and how they are scored: each piece's class probabilities (the mean over its
windows), top-k accuracy and the confusion matrix. Used by the CLI, best-of-K ranking and training."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from clara_live.judge.classifier import Classifier, piece_probabilities
from clara_live.judge.data import pad_batch, windows


@torch.no_grad()
def predict_pieces(model: Classifier, pieces: Sequence[np.ndarray], window: int = 256, stride: int = 128,
                   batch_size: int = 32) -> torch.Tensor:
    """(pieces, classes) probabilities: each piece the mean over its windows."""
    model.eval()
    spans = [(p, ids[s:e]) for p, ids in enumerate(pieces) for s, e in windows(len(ids), window, stride)]
    logits = []
    for start in range(0, len(spans), batch_size):
        chunk = spans[start:start + batch_size]
        logits.append(model(*pad_batch([w for _, w in chunk])))
    if not logits:
        return torch.full((len(pieces), model.classes), 1.0 / model.classes)
    owner = torch.tensor([p for p, _ in spans])
    return piece_probabilities(torch.cat(logits), owner, len(pieces))


def top_k_accuracy(probs: torch.Tensor, labels: Sequence[int], k: int) -> float:
    """Share of rows whose label is among their k likeliest classes."""
    if len(labels) == 0:
        return math.nan
    top = probs.topk(min(k, probs.size(1)), dim=-1).indices
    return float((top == torch.as_tensor(labels)[:, None]).any(-1).float().mean())


def confusion(probs: torch.Tensor, labels: Sequence[int], classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true label, column = top-1 prediction."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    for truth, guess in zip(labels, probs.argmax(-1).tolist(), strict=True):
        matrix[truth, guess] += 1
    return matrix
