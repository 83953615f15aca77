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

Exact values (`model.touch_format`): a binned head pays log2(width) bits inside a bin even where
the value is certain, and the corpora hold exact values often: onsets exactly on their step
(piano-midi.de 93 % of strikes), a strike at exactly the previous strike's velocity (the rolls
39 %), at exactly the previous strike's non-zero offset (POP909 82 %: its onsets sit on its own
16th grid, a steady shift from Clara's 1/12-beat steps). Format 2 adds a class to each head:
velocity SAME (the previous known strike's velocity in this piece) and offset ON (exactly 0);
format 3 also offset REPEAT (the previous known strike's offset, where it is not 0). Both give the
head the previous known strike as input (`previous_strike`). A value's probability is its class's
where it is that exact value, else its bin's spread evenly over the bin's other values, so the
values still sum to 1 (`exact_value_bits`). SAME and REPEAT have no value where no strike is known
yet (REPEAT none where the previous offset is 0: ON's), and are masked there. Format 1 (the first
models) has none of them and behaves as it always did.

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

__all__ = ["TOUCH_UNKNOWN", "TouchLayers", "exact_value_bits", "input_rows", "level_features", "previous_strike",
           "sample", "sample_exact", "targets", "touch_loss", "value_bits", "value_log_probs"]

VELOCITY_BINS = 32
OFFSET_BINS = 16
NONE, UNKNOWN = 0, 1  # input rows for a token that strikes nothing and a strike of unknown touch
IGNORE = -100  # F.cross_entropy's ignore_index: no touch target here
HEAD_SIZE = 128
LEVEL_WINDOW = 48  # tokens (about 16 strikes) the head's running level is taken over
LEVEL_FEATURES = 5
FORMATS = (1, 2, 3)  # 1: bins only; 2: bins, SAME and ON; 3: also REPEAT (the module docstring)
SAME, ON, REPEAT = VELOCITY_BINS, OFFSET_BINS, OFFSET_BINS + 1  # the exact classes, after the bins
EXTRA_CLASSES = {1: (0, 0), 2: (1, 1), 3: (1, 2)}  # per format: (velocity, offset) classes beyond the bins
# per format: the previous strike's features (whether one is known, its velocity scaled, format 3 its offset)
PREVIOUS_FEATURES = {1: 0, 2: 2, 3: 3}
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


def targets(velocity: torch.Tensor, offset: torch.Tensor, previous: torch.Tensor | None = None,
            repeat: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's targets for the tokens predicted: bins at known strikes, IGNORE elsewhere. With
    `previous` (formats 2 and 3: the last known strike's (velocity, offset) before each, (..., 2),
    velocity 0 where none; `previous_strike`): SAME where the velocity is the previous one, ON where
    the offset is exactly 0, and with `repeat` (format 3) REPEAT where it is the previous non-zero one."""
    known = velocity > 0
    v, o = velocity_bin(velocity), offset_bin(offset)
    if previous is not None:
        some = previous[..., 0] > 0
        v = torch.where((velocity == previous[..., 0]) & some, SAME, v)
        if repeat:
            o = torch.where((offset == previous[..., 1]) & some, REPEAT, o)
        o = torch.where(offset == 0, ON, o)
    return torch.where(known, v, IGNORE), torch.where(known, o, IGNORE)


def previous_strike(velocity: torch.Tensor, offset: torch.Tensor, before: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """(..., time, 2): at each position the (velocity, offset) of the last known strike at or before
    it (a piece array's columns, (..., time)), (0, 0) where none is; `before` ((..., 2)) carries the
    last one known before these tokens (a chunk after another)."""
    time = torch.arange(velocity.size(-1), device=velocity.device).expand_as(velocity)
    last = torch.cummax(torch.where(velocity > 0, time, -1), dim=-1).values
    found = torch.stack([velocity.gather(-1, last.clamp(min=0)), offset.gather(-1, last.clamp(min=0))], -1)
    earlier = torch.zeros_like(found) if before is None else before.unsqueeze(-2).expand_as(found)
    return torch.where((last >= 0).unsqueeze(-1), found, earlier)


def previous_features(previous: torch.Tensor, format: int) -> torch.Tensor:
    """(..., PREVIOUS_FEATURES[format]) of the previous known strike ((..., 2); velocity 0: none):
    whether one is known, its velocity scaled, and for format 3 its offset scaled."""
    some = (previous[..., 0] > 0).float()
    both = [some, (previous[..., 0].float() - 64) / 32 * some, previous[..., 1].float() / 50 * some]
    return torch.stack(both[:PREVIOUS_FEATURES[format]], dim=-1)


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
        self.velocity_classes, self.offset_classes = (VELOCITY_BINS + EXTRA_CLASSES[format][0],
                                                      OFFSET_BINS + EXTRA_CLASSES[format][1])
        self.velocity_in = nn.Embedding(VELOCITY_BINS + 2, emb)
        self.offset_in = nn.Embedding(OFFSET_BINS + 2, emb)
        nn.init.zeros_(self.velocity_in.weight)
        nn.init.zeros_(self.offset_in.weight)
        self.head = nn.Sequential(nn.Linear(2 * emb + LEVEL_FEATURES + PREVIOUS_FEATURES[format], HEAD_SIZE), nn.GELU(),
                                  nn.Linear(HEAD_SIZE, self.velocity_classes + self.offset_classes))

    def features(self, velocity: torch.Tensor, offset: torch.Tensor, before: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """(..., time, features) the head reads beside the state at each position, from the touch
        columns up to it ((..., time)): the running level, and from format 2 the previous known
        strike (`before`: the last one known before these tokens, (..., 2); previous_strike)."""
        level = level_features(velocity, offset)
        if self.format == 1:
            return level
        return torch.cat([level, previous_features(previous_strike(velocity, offset, before), self.format)], dim=-1)

    def embed(self, velocity_rows: torch.Tensor, offset_rows: torch.Tensor) -> torch.Tensor:
        return self.velocity_in(velocity_rows) + self.offset_in(offset_rows)

    def logits(self, output: torch.Tensor, struck: torch.Tensor, level: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity logits, offset logits) from the last layer's output before each strike, the
        struck token's embedding (both (..., emb)) and the features there (`features`: the running
        level, (..., LEVEL_FEATURES), and from format 2 the previous strike's)."""
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
    """(the cross-entropy of velocity plus offset summed over the known strikes, their count). Formats
    2 and 3 give `previous` (the last known strike before each, (..., 2); value_log_probs masks there)."""
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
    """The head's class log-probabilities (velocity, offset). Formats 2 and 3 (with `previous`, the last
    known strike's (velocity, offset), (..., 2), velocity 0: none): SAME and REPEAT are impossible where
    no strike is known before (they have no value), REPEAT too where the previous offset is 0 (ON's)."""
    velocity_logits, offset_logits = velocity_logits.float(), offset_logits.float()
    if previous is not None:
        none = (previous[..., 0] <= 0).unsqueeze(-1)
        classes = torch.arange(velocity_logits.size(-1), device=previous.device)
        velocity_logits = velocity_logits.masked_fill(none & (classes == SAME), float("-inf"))
        if offset_logits.size(-1) > REPEAT:
            classes = torch.arange(offset_logits.size(-1), device=previous.device)
            no_repeat = none | (previous[..., 1] == 0).unsqueeze(-1)
            offset_logits = offset_logits.masked_fill(no_repeat & (classes == REPEAT), float("-inf"))
    return F.log_softmax(velocity_logits, -1), F.log_softmax(offset_logits, -1)


def exact_value_bits(velocity_log_probs: torch.Tensor, offset_log_probs: torch.Tensor, velocity: torch.Tensor,
                     offset: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Formats 2 and 3: the bits of each known strike's velocity (1..127) and offset (hundredths,
    -50..49), given the class log-probabilities ((n, classes); value_log_probs) and the previous
    strike ((n, 2)): an exact class's where the value is its (SAME, ON, REPEAT), else its bin's
    spread evenly over the bin's other values (the values' probabilities sum to 1)."""
    repeat = offset_log_probs.size(-1) > REPEAT
    v_target, o_target = targets(velocity, offset, previous, repeat)
    some = previous[..., 0] > 0
    v_bin, o_bin = velocity_bin(velocity), offset_bin(offset)
    v_width = velocity_width(v_bin) - (some & (velocity_bin(previous[..., 0]) == v_bin)).long()
    o_width = OFFSET_WIDTHS.to(offset.device)[o_bin] - (o_bin == ON_BIN).long()
    if repeat:  # the previous offset, where not 0, is REPEAT's
        o_width = o_width - (some & (previous[..., 1] != 0) & (offset_bin(previous[..., 1]) == o_bin)).long()
    v = -velocity_log_probs.gather(-1, v_target.unsqueeze(-1)).squeeze(-1) \
        + torch.where(v_target == SAME, 0.0, torch.log(v_width.float()))
    o = -offset_log_probs.gather(-1, o_target.unsqueeze(-1)).squeeze(-1) \
        + torch.where(o_target >= ON, 0.0, torch.log(o_width.float()))
    return v / math.log(2), o / math.log(2)


def level_bias(logits: torch.Tensor, previous: torch.Tensor, target: float, pull: float) -> torch.Tensor:
    """(streams, classes) log-odds that move each stream's expected velocity `pull` of the way to `target`
    (the player's level; 1: all the way), the shape of its distribution kept: an exponential tilt, each
    class's log-odds + theta x its value (a bin's middle; SAME's, the stream's previous velocity), theta the
    step that moves the mean by the gap for a distribution of this variance. Velocity `logits`: (streams,
    classes); `previous`: (streams, 2) as in sample_exact."""
    classes = logits.size(-1)
    values = (torch.arange(classes, dtype=torch.float) * 4 + 2.5).expand(len(previous), -1).clone()
    logits = logits.float()
    if classes > VELOCITY_BINS:  # SAME: the previous velocity (none known: SAME is never drawn, nor counted here)
        values[:, SAME] = previous[:, 0].float()
        logits = logits.masked_fill((previous[:, 0] <= 0).view(-1, 1) & (torch.arange(classes) == SAME), -torch.inf)
    p = torch.softmax(logits, -1)
    mean = (p * values).sum(-1, keepdim=True)
    variance = (p * (values - mean) ** 2).sum(-1, keepdim=True).clamp(min=16.0)  # at least a bin's spread
    return pull * (target - mean) / variance * values


def sample_exact(velocity_logits: torch.Tensor, offset_logits: torch.Tensor, previous: torch.Tensor,
                 generator: torch.Generator, temperature: float = 1.0, offset_temperature: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Formats 2 and 3: (velocities 1..127, offsets in steps) drawn from the head's logits ((streams,
    classes) each) and each stream's previous known strike ((streams, 2): velocity, offset in
    hundredths; velocity 0: none). SAME gives the previous velocity, ON offset 0, REPEAT the previous
    offset; a bin a value uniform among its others (never an exact class's value). Offsets are whole
    hundredths of a step, as the corpus holds them and as value_bits counts them. The offset's classes
    are drawn at `offset_temperature` (None: `temperature`)."""
    t = max(temperature, 1e-3)
    to = t if offset_temperature is None else max(offset_temperature, 1e-3)
    v_log, o_log = value_log_probs(velocity_logits.float() / t, offset_logits.float() / to, previous)
    v_class = torch.multinomial(v_log.exp(), 1, generator=generator).squeeze(-1)
    o_class = torch.multinomial(o_log.exp(), 1, generator=generator).squeeze(-1)
    inside = torch.rand(2, v_class.numel(), generator=generator)
    some = previous[:, 0] > 0
    v_bin = v_class.clamp(max=VELOCITY_BINS - 1)
    taken = some & (velocity_bin(previous[:, 0]) == v_bin)  # the previous velocity is SAME's, not the bin's
    drawn = v_bin * 4 + 1 + (inside[0] * (velocity_width(v_bin) - taken.long())).long()
    drawn = drawn + (taken & (drawn >= previous[:, 0])).long()
    velocity = torch.where(v_class == SAME, previous[:, 0], drawn).clamp(1, 127)
    o_bin = o_class.clamp(max=OFFSET_BINS - 1)
    on_bin = (o_bin == ON_BIN).long()  # whose first value, 0, is ON's
    repeated = some & (previous[:, 1] != 0) & (offset_bin(previous[:, 1]) == o_bin) if o_log.size(-1) > REPEAT \
        else torch.zeros_like(some)  # the previous offset is REPEAT's
    hundredths = OFFSET_STARTS[o_bin] + on_bin + (inside[1] * (OFFSET_WIDTHS[o_bin] - on_bin - repeated.long())).long()
    hundredths = hundredths + (repeated & (hundredths >= previous[:, 1])).long()
    hundredths = torch.where(o_class == ON, 0, torch.where(o_class == REPEAT, previous[:, 1], hundredths))
    return velocity, hundredths / 100


def sample(velocity_logits: torch.Tensor, offset_logits: torch.Tensor, generator: torch.Generator,
           temperature: float = 1.0, offset_temperature: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(velocities 1..127, offsets in steps) drawn from the head's logits ((streams, bins) each), a
    value uniform inside its bin; the offset's bin at `offset_temperature` (None: `temperature`)."""
    t = max(temperature, 1e-3)
    to = t if offset_temperature is None else max(offset_temperature, 1e-3)
    v_bin = torch.multinomial(F.softmax(velocity_logits.float() / t, -1), 1, generator=generator).squeeze(-1)
    o_bin = torch.multinomial(F.softmax(offset_logits.float() / to, -1), 1, generator=generator).squeeze(-1)
    inside = torch.rand(2, v_bin.numel(), generator=generator)
    velocity = (v_bin * 4 + 1 + (inside[0] * velocity_width(v_bin)).long()).clamp(1, 127)
    offset = (o_bin + inside[1]) / OFFSET_BINS - 0.5
    return velocity, offset
