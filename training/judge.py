"""Training and evaluating a judge (composer classifier or critic) on labelled pieces.

Each epoch cuts every training piece into windows at a fresh random offset (so the model sees
each piece from new angles without repeating a window), shuffles them, and minimises a
class-weighted cross-entropy (labels are unbalanced: 48 Chopin pieces, 3 of Borodin). A piece
is judged by the mean probability of its windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clara_live.judge.classifier import Classifier, piece_probabilities
from clara_live.judge.data import pad_batch, windows


def train_judge(model: Classifier, pieces: Sequence[np.ndarray], labels: Sequence[int], *, window: int = 256,
                epochs: int = 4, lr: float = 1e-3, batch_size: int = 16, seed: int = 0, per_piece: int = 0,
                log: Callable[[str], None] | None = None,
                after_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Train in place; returns the mean training loss of each epoch. per_piece > 0 draws that many
    windows from each piece per epoch (long pieces no longer outweigh short ones); 0 takes them all.
    after_epoch(epoch) runs after each (validation, keeping the best)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    counts = np.bincount(np.asarray(labels), minlength=model.classes).astype(float)
    weights = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / model.classes, 0.0),
                           dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    history = []
    for epoch in range(epochs):
        batch = _epoch_windows(pieces, labels, window, rng, per_piece)
        model.train()
        losses = []
        for start in range(0, len(batch), batch_size):
            chunk = batch[start:start + batch_size]
            tokens, lengths = pad_batch([w for w, _ in chunk])
            target = torch.tensor([y for _, y in chunk])
            loss = F.cross_entropy(model(tokens, lengths), target, weight=weights)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)) if losses else math.nan)
        if log:
            log(f"epoch {epoch + 1}/{epochs}: {len(batch)} windows, train loss {history[-1]:.4f}")
        if after_epoch:
            after_epoch(epoch)
    return history


def _epoch_windows(pieces: Sequence[np.ndarray], labels: Sequence[int], window: int,
                   rng: np.random.Generator, per_piece: int = 0) -> list[tuple[np.ndarray, int]]:
    out = []
    for ids, label in zip(pieces, labels, strict=True):
        if per_piece:  # a piece no longer than a window is that one window
            starts = rng.integers(0, max(1, len(ids) - window + 1), size=per_piece if len(ids) > window else 1)
            out += [(ids[s:s + window], label) for s in starts.tolist()]
            continue
        offset = int(rng.integers(0, window)) if len(ids) > window else 0
        for start, end in windows(len(ids) - offset, window, window):
            out.append((ids[offset + start:offset + end], label))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


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
