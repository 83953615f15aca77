"""Locked (variational) dropout: one mask per sequence, the same at every time step.

Gal & Ghahramani 2016, as used by AWD-LSTM (Merity et al. 2017, `locked_dropout.py`).
"""

from __future__ import annotations

import torch
from torch import nn


class LockedDropout(nn.Module):
    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """x: (batch, time, features); the mask is drawn per (batch, feature), shared over time."""
        if not self.training or p == 0.0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
        return x * mask
