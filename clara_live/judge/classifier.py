"""A classifier over the token stream: the AWD-LSTM's encoder with a concat-pooling head.

The encoder is the generator's own (embedding and LSTM layers, initialised from a shipped
model's weights: what it learnt about music transfers); the head reads the encoder's outputs
pooled three ways — the last real step, the mean and the max over the window's real steps
(padding masked) — concatenated, as ULMFiT's classifier does (Howard & Ruder 2018). A piece's
prediction averages its windows' probabilities (`piece_probabilities`).

Two head designs, named in judge.json:
- `pool_layers="last", norm="layer"` (the critic): the last layer pooled, LayerNorm, a hidden
  layer; trained end to end with the encoder.
- `pool_layers="all", norm="standard"` (the composer): every layer pooled (as ELMo mixes
  layers: the lower layers keep more of the texture, the top one is shaped for the next
  token), each feature standardised by its mean and deviation over the training windows
  (`Standardize`, fitted once), and a linear or one-hidden-layer head — made to be trained
  on features of a frozen encoder. Per-window LayerNorm instead cost 6 points of composer
  accuracy in cross-validation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clara_live.config import ModelConfig
from clara_live.model.awd_lstm import AWDLSTM

POOL_LAYERS = ("last", "all")
NORMS = ("layer", "standard")


class Classifier(nn.Module):
    def __init__(self, vocab_size: int, config: ModelConfig, classes: int, head_hidden: int = 128,
                 head_dropout: float = 0.3, pool_layers: str = "last", norm: str = "layer") -> None:
        super().__init__()
        if pool_layers not in POOL_LAYERS or norm not in NORMS or head_hidden < 0:
            raise ValueError(f"unknown head: pool_layers {pool_layers!r}, norm {norm!r}, hidden {head_hidden}")
        self.config = config
        self.classes = classes
        self.pool_layers, self.norm, self.head_hidden = pool_layers, norm, head_hidden
        self.encoder = AWDLSTM(vocab_size, config)  # its decoder is unused (and tied: no extra weights)
        widths = [layer.lstm.hidden_size for layer in self.encoder.layers]
        self.features = 3 * (sum(widths) if pool_layers == "all" else widths[-1])
        parts: list[nn.Module] = [nn.LayerNorm(self.features) if norm == "layer" else Standardize(self.features),
                                  nn.Dropout(head_dropout)]
        if head_hidden:
            parts += [nn.Linear(self.features, head_hidden), nn.ReLU(), nn.Dropout(head_dropout),
                      nn.Linear(head_hidden, classes)]
        else:
            parts.append(nn.Linear(self.features, classes))
        self.head = nn.Sequential(*parts)

    @classmethod
    def from_generator(cls, generator: AWDLSTM, classes: int, **head: object) -> Classifier:
        """A classifier whose encoder starts from a trained generator's weights."""
        model = cls(generator.vocab_size, generator.config, classes, **head)
        model.encoder.load_state_dict(generator.state_dict())
        return model

    def encode(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """tokens (batch, time) -> each layer's outputs (batch, time, width), from a zero state."""
        hidden = self.encoder.init_hidden(tokens.size(0), tokens.device)
        outputs, _ = self.encoder.encode(tokens, hidden)  # undropped: the head reads the layers' outputs
        return outputs

    def pooled(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (batch, time), right-padded; lengths (batch,) -> the head's input (batch, features)."""
        outputs = self.encode(tokens)
        if self.pool_layers == "last":
            return pool(outputs[-1], lengths)
        return torch.cat([pool(out, lengths) for out in outputs], dim=-1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (batch, time), right-padded; lengths (batch,) real steps (>= 1) -> logits (batch, classes)."""
        return self.head(self.pooled(tokens, lengths))


class Standardize(nn.Module):
    """x -> (x - mean) / std per feature, with the statistics fitted once on training features
    (buffers: saved with the weights, never trained)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def fit(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0, unbiased=False).clamp(min=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def pool(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, time, width) outputs -> (batch, 3 * width): last real step, mean and max over real steps."""
    steps = torch.arange(out.size(1), device=out.device)
    real = (steps[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    last = out[torch.arange(out.size(0), device=out.device), lengths - 1]  # (B, W)
    mean = (out * real).sum(1) / lengths[:, None].to(out.dtype)
    peak = out.masked_fill(~real, float("-inf")).amax(1)
    return torch.cat([last, mean, peak], dim=-1)


def piece_probabilities(logits: torch.Tensor, pieces: torch.Tensor, count: int) -> torch.Tensor:
    """Window logits (windows, classes) and each window's piece index -> (count, classes): the mean
    of each piece's window probabilities (a piece with no window gets a uniform row)."""
    probs = F.softmax(logits.float(), dim=-1)
    total = torch.zeros(count, probs.size(1)).index_add_(0, pieces, probs)
    windows = torch.zeros(count).index_add_(0, pieces, torch.ones(len(pieces)))
    uniform = torch.full_like(total, 1.0 / probs.size(1))
    return torch.where(windows[:, None] > 0, total / windows.clamp(min=1)[:, None], uniform)
