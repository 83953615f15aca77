"""DropConnect on an LSTM's hidden-to-hidden weights (AWD-LSTM's "weight drop").

Written for torch's public API: the LSTM keeps its own `weight_hh_l0` parameter as the raw
weight, and in training `torch.func.functional_call` runs the LSTM with a dropped copy in
its place. Gradients flow through the mask to the raw weight, and evaluation runs the
plain module (cuDNN/oneDNN fast paths intact). The 2017 version deleted parameters and
poked torch internals, and broke on four torch releases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Hidden = tuple[torch.Tensor, torch.Tensor]


class WeightDropLSTM(nn.Module):
    """A one-layer batch-first LSTM whose recurrent weights are masked per forward in training."""

    def __init__(self, input_size: int, hidden_size: int, weight_drop: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.weight_drop = weight_drop

    def forward(self, x: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """x: (batch, time, input) -> (batch, time, hidden); hidden: (h, c), each (1, batch, hidden)."""
        if self.training and self.weight_drop > 0.0:
            dropped = F.dropout(self.lstm.weight_hh_l0, self.weight_drop, training=True)
            return functional_call(self.lstm, {"weight_hh_l0": dropped}, (x, hidden))
        return self.lstm(x, hidden)
