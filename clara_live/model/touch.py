"""Touch: the velocity and timing of each note the model strikes (issue 24).

The notewise tokens say which key is struck at which step of the grid; how hard, and how far
off the step the finger landed, they do not. Touch rides beside the tokens, one value per
note-on token (corpus `SPLIT.touch` files, codec/notewise.Touch), and enters the model twice:

- as input: each note-on token's embedding has its velocity bin's and offset bin's embeddings
  added, so the state knows how the music so far was played (a player's crescendo reaches the
  model as it happens). A note-on whose touch is unknown (a score, a file at one velocity) adds
  the `unknown` rows; every other token adds nothing.
- as output: a small head reads the last layer's output before a strike, the struck token's
  embedding (Notochord's sub-event order: the pitch first, then how it is played) and the level of
  the last LEVEL_WINDOW tokens' known strikes (`level`: their share, the mean and spread of their
  velocities and of their offsets: what a running-level model knows, given to the head outright
  rather than left for the LSTM to carry), and gives the velocity bin and the offset bin. Its loss
  is the cross-entropy of both, at known strikes only.

Velocity: 32 bins of 4 (Performance RNN's resolution): bin b holds velocities 4b+1..4b+4 (the last
125..127). Offset: 16 bins over [-0.5, 0.5) of a step. Sampled values are drawn uniformly inside
their bin, so the music is not confined to 32 loudnesses; the NLL of a value is its bin's, less
log(width): a distribution over the values themselves (velocities 1..127, offsets in whole
hundredths of a step), comparable with any other model of them.

In a piece's array a strike's velocity is 1..127, 0 for a token that strikes nothing, -1 for a
strike of unknown touch (TOUCH_UNKNOWN); its offset is in hundredths of a step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clara_live.codec.notewise import TOUCH_UNKNOWN

__all__ = ["TOUCH_UNKNOWN", "TouchLayers", "input_rows", "level_features", "sample", "targets", "touch_loss",
           "value_bits"]

VELOCITY_BINS = 32
OFFSET_BINS = 16
NONE, UNKNOWN = 0, 1  # input rows for a token that strikes nothing and a strike of unknown touch
IGNORE = -100  # F.cross_entropy's ignore_index: no touch target here
HEAD_SIZE = 128
LEVEL_WINDOW = 48  # tokens (about 16 strikes) the head's running level is taken over
LEVEL_FEATURES = 5


def velocity_bin(velocity: np.ndarray | torch.Tensor):
    """Bin 0..31 of velocities 1..127."""
    return (velocity.clip(1, 127) - 1) // 4


def offset_bin(hundredths: np.ndarray | torch.Tensor):
    """Bin 0..15 of offsets in hundredths of a step (-50..49)."""
    return ((hundredths.clip(-50, 49) + 50) * OFFSET_BINS) // 100


def velocity_width(bin_: np.ndarray | torch.Tensor):
    """How many velocities a bin holds (4, the last 3)."""
    return 4 - (bin_ == VELOCITY_BINS - 1) * 1


# how many offsets (whole hundredths of a step, -50..49, as the corpus stores them) each bin holds: 6 or 7
OFFSET_WIDTHS = torch.bincount(((torch.arange(-50, 50) + 50) * OFFSET_BINS) // 100, minlength=OFFSET_BINS)


def input_rows(velocity: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The touch input rows of each token (a piece array's velocity and offset columns)."""
    known = velocity > 0
    none = velocity == 0
    v = torch.where(known, velocity_bin(velocity) + 2, torch.where(none, NONE, UNKNOWN))
    o = torch.where(known, offset_bin(offset) + 2, torch.where(none, NONE, UNKNOWN))
    return v, o


def targets(velocity: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's targets for the tokens predicted: bins at known strikes, IGNORE elsewhere."""
    known = velocity > 0
    return (torch.where(known, velocity_bin(velocity), IGNORE), torch.where(known, offset_bin(offset), IGNORE))


class TouchLayers(nn.Module):
    """Touch's input embeddings and its head, beside an AWD-LSTM of embedding size `emb`.

    The input rows start at zero, so a model given touch starts out exactly as the model it was
    made from; the head starts as any fresh layer."""

    def __init__(self, emb: int) -> None:
        super().__init__()
        self.velocity_in = nn.Embedding(VELOCITY_BINS + 2, emb)
        self.offset_in = nn.Embedding(OFFSET_BINS + 2, emb)
        nn.init.zeros_(self.velocity_in.weight)
        nn.init.zeros_(self.offset_in.weight)
        self.head = nn.Sequential(nn.Linear(2 * emb + LEVEL_FEATURES, HEAD_SIZE), nn.GELU(),
                                  nn.Linear(HEAD_SIZE, VELOCITY_BINS + OFFSET_BINS))

    def embed(self, velocity_rows: torch.Tensor, offset_rows: torch.Tensor) -> torch.Tensor:
        return self.velocity_in(velocity_rows) + self.offset_in(offset_rows)

    def logits(self, output: torch.Tensor, struck: torch.Tensor, level: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity logits, offset logits) from the last layer's output before each strike, the
        struck token's embedding (both (..., emb)) and the running level there ((..., LEVEL_FEATURES))."""
        both = self.head(torch.cat([output, struck, level.to(output.dtype)], dim=-1))
        return both[..., :VELOCITY_BINS], both[..., VELOCITY_BINS:]


def level_features(velocity: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(..., time, LEVEL_FEATURES): at each position, the running level of the known strikes among
    the last LEVEL_WINDOW tokens up to it (a piece array's velocity and offset columns, (..., time)):
    their share of a full window's 16, their velocities' mean and spread, their offsets' mean and
    spread, scaled near unit size (0 where none is known)."""
    known = (velocity > 0).float()
    v, o = velocity.float() * known, offset.float() * known

    def window(x: torch.Tensor) -> torch.Tensor:
        total = torch.cumsum(x, dim=-1)
        before = torch.nn.functional.pad(total, (LEVEL_WINDOW, 0))[..., :x.size(-1)]
        return total - before

    count = window(known)
    n = count.clamp(min=1)
    mean_v, mean_o = window(v) / n, window(o) / n
    sd_v = (window(v * v) / n - mean_v ** 2).clamp(min=0).sqrt()
    sd_o = (window(o * o) / n - mean_o ** 2).clamp(min=0).sqrt()
    some = (count > 0).float()
    return torch.stack([(count / 16).clamp(max=1), (mean_v - 64) / 32 * some, sd_v / 32, mean_o / 50 * some,
                        sd_o / 50], dim=-1)


def touch_loss(velocity_logits: torch.Tensor, offset_logits: torch.Tensor, velocity_target: torch.Tensor,
               offset_target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the cross-entropy of velocity plus offset summed over the known strikes, their count)."""
    count = int((velocity_target != IGNORE).sum().item())
    if not count:
        return velocity_logits.sum() * 0.0, 0
    loss = F.cross_entropy(velocity_logits.float().reshape(-1, VELOCITY_BINS), velocity_target.reshape(-1),
                           ignore_index=IGNORE, reduction="sum") \
        + F.cross_entropy(offset_logits.float().reshape(-1, OFFSET_BINS), offset_target.reshape(-1),
                          ignore_index=IGNORE, reduction="sum")
    return loss, count


def value_bits(log_probs: torch.Tensor, bins: torch.Tensor, widths: torch.Tensor | float) -> torch.Tensor:
    """Bits of each value: its bin's -log2 probability plus log2 of the bin's width (a density over
    the values inside it, taken as uniform)."""
    return (-log_probs.gather(-1, bins.unsqueeze(-1)).squeeze(-1) + torch.log(torch.as_tensor(widths,
                                                                                              dtype=torch.float))
            ) / math.log(2)


def sample(velocity_logits: torch.Tensor, offset_logits: torch.Tensor, generator: torch.Generator,
           temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(velocities 1..127, offsets in steps) drawn from the head's logits ((streams, bins) each), a
    value uniform inside its bin."""
    t = max(temperature, 1e-3)
    v_bin = torch.multinomial(F.softmax(velocity_logits.float() / t, -1), 1, generator=generator).squeeze(-1)
    o_bin = torch.multinomial(F.softmax(offset_logits.float() / t, -1), 1, generator=generator).squeeze(-1)
    inside = torch.rand(2, v_bin.numel(), generator=generator)
    velocity = (v_bin * 4 + 1 + (inside[0] * velocity_width(v_bin)).long()).clamp(1, 127)
    offset = (o_bin + inside[1]) / OFFSET_BINS - 0.5
    return velocity, offset
