"""Training and evaluating a judge (composer classifier or critic) on labelled pieces.

Two ways to train:
- `train_judge`, end to end (the critic): each epoch cuts every training piece into windows at
  a fresh random offset (so the model sees each piece from new angles without repeating a
  window), shuffles them, and minimises a class-weighted cross-entropy (labels are unbalanced:
  43 Chopin pieces, 1 of Sinding).
- `train_head`, on a frozen encoder (the composer, ULMFiT's first stage): every window's pooled
  features are computed once (`window_features`), then only the head is trained on them, for
  as many epochs as it needs at almost no cost. Each piece counts once whatever its length,
  and each composer as much as any other.
A piece is judged by the mean probability of its windows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clara_live.judge.classifier import Classifier, Standardize, piece_probabilities
from clara_live.judge.data import pad_batch, windows


@dataclasses.dataclass(frozen=True)
class JudgeTraining:
    """How `train_judge` trains end to end: windows of `window` tokens, `per_piece` > 0 of them drawn
    from each piece per epoch (long pieces no longer outweigh short ones), 0 all of them; AdamW at
    `lr` on batches of `batch_size` windows; `seed` draws the windows and the dropout."""

    window: int = 256
    epochs: int = 4
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0
    per_piece: int = 0


@dataclasses.dataclass(frozen=True)
class HeadTraining:
    """How `train_head` trains the head alone: AdamW at `lr` and `weight_decay` on batches of
    `batch_size` windows' features; `seed` orders the batches and draws the dropout."""

    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 256
    seed: int = 0


def train_judge(model: Classifier, pieces: Sequence[np.ndarray], labels: Sequence[int],
                options: JudgeTraining = JudgeTraining(), *, log: Callable[[str], None] | None = None,
                after_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Train in place; returns the mean training loss of each epoch. after_epoch(epoch) runs after
    each (validation, keeping the best)."""
    window, epochs, batch_size = options.window, options.epochs, options.batch_size
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)
    counts = np.bincount(np.asarray(labels), minlength=model.classes).astype(float)
    weights = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / model.classes, 0.0),
                           dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.01)
    history = []
    for epoch in range(epochs):
        batch = _epoch_windows(pieces, labels, window, rng, options.per_piece)
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
def window_features(model: Classifier, ids: np.ndarray, window: int, stride: int,
                    batch_size: int = 32, most: int = 0) -> torch.Tensor:
    """(windows, features): the head's input for each window of a piece, the encoder in eval mode;
    with `most` > 0 at most that many windows, evenly spread over the piece."""
    model.eval()
    spans = [ids[s:e] for s, e in windows(len(ids), window, stride)]
    if 0 < most < len(spans):
        spans = [spans[i] for i in np.linspace(0, len(spans) - 1, most).round().astype(int).tolist()]
    out = [model.pooled(*pad_batch(spans[i:i + batch_size])) for i in range(0, len(spans), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.features)


def train_head(model: Classifier, features: Sequence[Sequence[torch.Tensor]], labels: Sequence[int],
               options: HeadTraining = HeadTraining(), *, log: Callable[[str], None] | None = None,
               after_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Train model.head in place on fixed features: features[i] holds piece i's versions (say its
    transpositions), each a (windows, features) tensor. A window weighs 1 / (its version's windows
    x the piece's versions) x its class's weight, so every piece and every class count alike.
    A `Standardize` head is fitted to the training windows first. Returns each epoch's mean loss."""
    epochs, batch_size = options.epochs, options.batch_size
    rng = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)  # dropout
    rows, targets, weights = [], [], []
    for versions, label in zip(features, labels, strict=True):
        versions = [v for v in versions if len(v)]
        for version in versions:
            rows.append(version)
            targets += [label] * len(version)
            weights += [1.0 / (len(version) * len(versions))] * len(version)
    if not rows:
        raise ValueError("no training windows")
    x, y, w = torch.cat(rows).float(), torch.tensor(targets), torch.tensor(weights)
    per_class = torch.zeros(model.classes).index_add_(0, y, w)
    w = w / per_class[y]
    w = w / w.mean()
    if isinstance(model.head[0], Standardize):
        model.head[0].fit(x)
    opt = torch.optim.AdamW(model.head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    history = []
    for epoch in range(epochs):
        model.head.train()
        order = torch.randperm(len(x), generator=rng)
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows_ = order[start:start + batch_size]
            loss = (F.cross_entropy(model.head(x[rows_]), y[rows_], reduction="none") * w[rows_]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows_)
        history.append(total / len(x))
        model.head.eval()
        if log:
            log(f"head epoch {epoch + 1}/{epochs}: {len(x)} windows, train loss {history[-1]:.4f}")
        if after_epoch:
            after_epoch(epoch)
    return history


@torch.no_grad()
def head_probabilities(model: Classifier, features: Sequence[torch.Tensor]) -> torch.Tensor:
    """(pieces, classes): each piece's mean window probability, from its cached features."""
    model.eval()
    if not features:
        return torch.zeros(0, model.classes)
    owner = torch.repeat_interleave(torch.arange(len(features)), torch.tensor([len(rows) for rows in features]))
    return piece_probabilities(model.head(torch.cat(list(features)).float()), owner, len(features))


def log_loss(probs: torch.Tensor, labels: Sequence[int]) -> float:
    """Mean negative log probability of the true labels (smoother than accuracy on a small split)."""
    if len(labels) == 0:
        return math.nan
    picked = probs[torch.arange(len(labels)), torch.as_tensor(labels)]
    return float(-picked.clamp(min=1e-9).log().mean())
