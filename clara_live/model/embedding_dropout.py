"""Embedding dropout: whole rows of the embedding matrix dropped, so a token vanishes
everywhere it occurs in the batch (Gal & Ghahramani 2016; AWD-LSTM `embed_regularize.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def embedding_dropout(embed: nn.Embedding, tokens: torch.Tensor, p: float) -> torch.Tensor:
    """tokens: (batch, time) -> (batch, time, emb); rows of embed.weight zeroed with probability p."""
    weight = embed.weight
    if embed.training and p > 0.0:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
        weight = weight * mask
    return F.embedding(tokens, weight)
