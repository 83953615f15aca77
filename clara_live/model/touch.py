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

Exact values (format 2, `model.touch_format`): a binned head pays log2(width) bits inside a bin even
where the value is certain, and most onsets of the sequenced and quantised corpora sit exactly on
their step (piano-midi.de 94 %), and many strikes repeat the previous one's velocity exactly (the
rolls 40 %). Format 2 adds a class to each: velocity SAME (the previous known strike's velocity in
this piece) and offset ON (exactly 0), and gives the head the previous known velocity as input
(`previous_velocity`, two more features). A value's probability is its class's where it is the
previous velocity / 0, else its bin's spread over the bin's other values, so the values still sum
to 1 (`value_log_probs`). SAME has no value where no strike is known yet, and is masked there.
Format 1 (the first models) has neither and behaves as it always did.

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

__all__ = ["TOUCH_UNKNOWN", "TouchLayers", "input_rows", "level_features", "previous_velocity", "sample", "targets",
           "touch_loss", "value_bits", "value_log_probs"]

VELOCITY_BINS = 32
OFFSET_BINS = 16
NONE, UNKNOWN = 0, 1  # input rows for a token that strikes nothing and a strike of unknown touch
IGNORE = -100  # F.cross_entropy's ignore_index: no touch target here
HEAD_SIZE = 128
LEVEL_WINDOW = 48  # tokens (about 16 strikes) the head's running level is taken over
LEVEL_FEATURES = 5
FORMATS = (1, 2)  # 1: bins only; 2: bins, SAME and ON, and the previous velocity as input
SAME, ON = VELOCITY_BINS, OFFSET_BINS  # format 2's extra classes: the last velocity logit, the last offset one
PREVIOUS_FEATURES = 2  # format 2: whether a strike is known before, and its velocity scaled
ON_BIN = (50 * OFFSET_BINS) // 100  # the bin that holds offset 0


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
OFFSET_STARTS = torch.cumsum(OFFSET_WIDTHS, 0) - OFFSET_WIDTHS - 50  # each bin's first offset (hundredths)


def input_rows(velocity: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The touch input rows of each token (a piece array's velocity and offset columns)."""
    known = velocity > 0
    none = velocity == 0
    v = torch.where(known, velocity_bin(velocity) + 2, torch.where(none, NONE, UNKNOWN))
    o = torch.where(known, offset_bin(offset) + 2, torch.where(none, NONE, UNKNOWN))
    return v, o


def targets(velocity: torch.Tensor, offset: torch.Tensor, previous: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's targets for the tokens predicted: bins at known strikes, IGNORE elsewhere. With
    `previous` (format 2: the last known velocity before each, 0 where none; `previous_velocity`)
    SAME where the velocity is the previous one and ON where the offset is exactly 0."""
    known = velocity > 0
    v, o = velocity_bin(velocity), offset_bin(offset)
    if previous is not None:
        v = torch.where((velocity == previous) & (previous > 0), SAME, v)
        o = torch.where(offset == 0, ON, o)
    return torch.where(known, v, IGNORE), torch.where(known, o, IGNORE)


def previous_velocity(velocity: torch.Tensor, before: torch.Tensor | None = None) -> torch.Tensor:
    """(..., time): at each position the velocity of the last known strike at or before it (a piece
    array's velocity column, (..., time)), 0 where none is; `before` ((...,)) carries the last one
    known before these tokens (a chunk after another)."""
    time = torch.arange(velocity.size(-1), device=velocity.device).expand_as(velocity)
    last = torch.cummax(torch.where(velocity > 0, time, -1), dim=-1).values
    found = velocity.gather(-1, last.clamp(min=0))
    earlier = torch.zeros_like(velocity) if before is None else before.unsqueeze(-1).expand_as(velocity)
    return torch.where(last >= 0, found, earlier)


def previous_features(previous: torch.Tensor) -> torch.Tensor:
    """(..., PREVIOUS_FEATURES) of the previous known velocity ((...), 0: none): known, and scaled."""
    some = (previous > 0).float()
    return torch.stack([some, (previous.float() - 64) / 32 * some], dim=-1)


class TouchLayers(nn.Module):
    """Touch's input embeddings and its head, beside an AWD-LSTM of embedding size `emb`.

    The input rows start at zero, so a model given touch starts out exactly as the model it was
    made from; the head starts as any fresh layer. `format` 2 adds SAME and ON to the head's
    classes and the previous velocity to its inputs (the module docstring)."""

    def __init__(self, emb: int, format: int = 1) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"touch format {format} is not one of {FORMATS}")
        self.format = format
        extra = int(format == 2)
        self.velocity_classes, self.offset_classes = VELOCITY_BINS + extra, OFFSET_BINS + extra
        self.velocity_in = nn.Embedding(VELOCITY_BINS + 2, emb)
        self.offset_in = nn.Embedding(OFFSET_BINS + 2, emb)
        nn.init.zeros_(self.velocity_in.weight)
        nn.init.zeros_(self.offset_in.weight)
        self.head = nn.Sequential(nn.Linear(2 * emb + LEVEL_FEATURES + PREVIOUS_FEATURES * extra, HEAD_SIZE), nn.GELU(),
                                  nn.Linear(HEAD_SIZE, self.velocity_classes + self.offset_classes))

    def features(self, velocity: torch.Tensor, offset: torch.Tensor, before: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """(..., time, features) the head reads beside the state at each position, from the touch
        columns up to it ((..., time)): the running level, and for format 2 the previous known
        velocity (`before`: the last one known before these tokens, (...,))."""
        level = level_features(velocity, offset)
        if self.format == 1:
            return level
        return torch.cat([level, previous_features(previous_velocity(velocity, before))], dim=-1)

    def embed(self, velocity_rows: torch.Tensor, offset_rows: torch.Tensor) -> torch.Tensor:
        return self.velocity_in(velocity_rows) + self.offset_in(offset_rows)

    def logits(self, output: torch.Tensor, struck: torch.Tensor, level: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity logits, offset logits) from the last layer's output before each strike, the
        struck token's embedding (both (..., emb)) and the features there (`features`: the running
        level, (..., LEVEL_FEATURES), and for format 2 the previous velocity's)."""
        both = self.head(torch.cat([output, struck, level.to(output.dtype)], dim=-1))
        return both[..., :self.velocity_classes], both[..., self.velocity_classes:]


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
               offset_target: torch.Tensor, previous: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(the cross-entropy of velocity plus offset summed over the known strikes, their count). Format
    2 gives `previous` (the last known velocity before each strike; SAME masked where it is 0)."""
    count = int((velocity_target != IGNORE).sum().item())
    if not count:
        return velocity_logits.sum() * 0.0, 0
    known = velocity_target != IGNORE
    if previous is not None:
        v_log, o_log = value_log_probs(velocity_logits[known], offset_logits[known], previous[known])
        return -(v_log.gather(-1, velocity_target[known].unsqueeze(-1)).sum()
                 + o_log.gather(-1, offset_target[known].unsqueeze(-1)).sum()), count
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


def value_log_probs(velocity_logits: torch.Tensor, offset_logits: torch.Tensor, previous: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's class log-probabilities (velocity, offset). Format 2 (with `previous`, the last
    known velocity, 0: none): SAME is impossible where no strike is known before (it has no value)."""
    if previous is not None:
        velocity_logits = velocity_logits.float().masked_fill(
            (previous <= 0).unsqueeze(-1) & (torch.arange(velocity_logits.size(-1), device=previous.device) == SAME),
            float("-inf"))
    return F.log_softmax(velocity_logits.float(), -1), F.log_softmax(offset_logits.float(), -1)


def exact_value_bits(velocity_log_probs: torch.Tensor, offset_log_probs: torch.Tensor, velocity: torch.Tensor,
                     offset: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Format 2's bits of each known strike's velocity (1..127) and offset (hundredths, -50..49),
    given the class log-probabilities ((n, classes); value_log_probs) and the previous velocity:
    SAME's / ON's where the value is the previous velocity / 0, else its bin's spread evenly over
    the bin's other values (the values' probabilities sum to 1)."""
    v_target, o_target = targets(velocity, offset, previous)
    v_bin, o_bin = velocity_bin(velocity), offset_bin(offset)
    v_width = velocity_width(v_bin) - ((previous > 0) & (velocity_bin(previous) == v_bin)).long()
    o_width = OFFSET_WIDTHS.to(offset.device)[o_bin] - (o_bin == ON_BIN).long()
    v = -velocity_log_probs.gather(-1, v_target.unsqueeze(-1)).squeeze(-1) \
        + torch.where(v_target == SAME, 0.0, torch.log(v_width.float()))
    o = -offset_log_probs.gather(-1, o_target.unsqueeze(-1)).squeeze(-1) \
        + torch.where(o_target == ON, 0.0, torch.log(o_width.float()))
    return v / math.log(2), o / math.log(2)


def sample_exact(velocity_logits: torch.Tensor, offset_logits: torch.Tensor, previous: torch.Tensor,
                 generator: torch.Generator, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Format 2's draw: (velocities 1..127, offsets in steps) from the head's logits ((streams,
    classes) each) and each stream's previous known velocity ((streams,), 0: none). SAME gives the
    previous velocity, ON offset 0; a bin a value uniform inside it, never the previous velocity
    (SAME's) nor an offset of exactly 0 (ON's)."""
    t = max(temperature, 1e-3)
    v_log, o_log = value_log_probs(velocity_logits.float() / t, offset_logits.float() / t, previous)
    v_class = torch.multinomial(v_log.exp(), 1, generator=generator).squeeze(-1)
    o_class = torch.multinomial(o_log.exp(), 1, generator=generator).squeeze(-1)
    inside = torch.rand(2, v_class.numel(), generator=generator)
    v_bin = v_class.clamp(max=VELOCITY_BINS - 1)
    taken = (previous > 0) & (velocity_bin(previous) == v_bin)  # the previous velocity is SAME's, not the bin's
    drawn = v_bin * 4 + 1 + (inside[0] * (velocity_width(v_bin) - taken.long())).long()
    drawn = drawn + (taken & (drawn >= previous)).long()
    velocity = torch.where(v_class == SAME, previous, drawn).clamp(1, 127)
    o_bin = o_class.clamp(max=OFFSET_BINS - 1)
    on_bin = (o_bin == ON_BIN).long()  # whose first value, 0, is ON's
    hundredths = OFFSET_STARTS[o_bin] + on_bin + (inside[1] * (OFFSET_WIDTHS[o_bin] - on_bin)).long()
    return velocity, torch.where(o_class == ON, 0, hundredths) / 100


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
