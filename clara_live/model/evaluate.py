"""Next-token NLL (nats/token), perplexity and accuracy of a model over token sequences.

Shared by `clara evaluate` and the trainer's validation, so both report the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clara_live.model.awd_lstm import AWDLSTM, detach
from clara_live.model.touch import (
    IGNORE,
    OFFSET_WIDTHS,
    exact_value_bits,
    previous_strike,
    value_bits,
    value_log_probs,
    velocity_width,
)
from clara_live.model.touch import targets as touch_targets


@torch.no_grad()
def score(model: AWDLSTM, sequences: Sequence[np.ndarray], chunk: int = 256, batch_size: int = 16,
          max_tokens: int = 0, progress: bool = False) -> dict:
    """Sum of NLL and hits over every predicted token; each sequence starts from a zero state.
    Sequences with touch ((tokens, 3): ids, velocity, offset; model/touch.py) give a model with
    touch its touch as input, and add its bits per known strike: `velocity_bits` (over the
    velocities 1..127), `offset_bits` (over the offsets in hundredths of a step) and `strikes`.

    Sequences are packed side by side (batch_size at a time, each padded to the longest of
    its batch) and run in chunks of `chunk` steps with the hidden state carried, which is
    exactly sequential evaluation. The first token of a sequence has no context and is not
    predicted. max_tokens > 0 stops after roughly that many predictions. progress: a bar on stderr
    counting the tokens scored (the model is nearly all the time: ~700 tokens a second on a busy
    2-core CPU for the shipped notewise model, so a 50 MB file of 11 million tokens takes hours).
    """
    was_training = model.training
    model.eval()
    device = model.embed.weight.device
    nll, hits, count = 0.0, 0, 0
    with_touch = model.touch is not None and any(s.ndim == 2 for s in sequences)
    velocity_bits, offset_bits, strikes = 0.0, 0.0, 0
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    total = sum(max(len(s) - 1, 0) for s in sequences)
    bar = tqdm(total=min(total, max_tokens) if max_tokens else total, desc="scoring", unit="token",
               unit_scale=True, disable=not progress, leave=False)
    for start in range(0, len(order), batch_size):
        group = [sequences[i] for i in order[start:start + batch_size] if len(sequences[i]) > 1]
        if not group:
            continue
        length = max(len(s) for s in group)
        table = torch.zeros(len(group), length, 3, dtype=torch.long)  # ids, velocity, offset (0: no touch)
        mask = torch.zeros(len(group), length, dtype=torch.bool)
        for row, seq in enumerate(group):
            seq = torch.as_tensor(seq)
            table[row, :len(seq)] = seq if seq.dim() == 2 else torch.stack([seq, *[torch.zeros_like(seq)] * 2], -1)
            mask[row, :len(seq)] = True
        table, mask = table.to(device), mask.to(device)
        ids = table[..., 0]
        hidden = model.init_hidden(len(group))
        previous = torch.zeros(len(group), 2, dtype=torch.long, device=device)  # the last known strike (format 2, 3)
        for t in range(0, length - 1, chunk):
            inputs, targets = ids[:, t:t + chunk], ids[:, t + 1:t + 1 + chunk]
            inputs = inputs[:, :targets.size(1)]
            valid = mask[:, t + 1:t + 1 + chunk]
            if with_touch:
                given = table[:, t:t + inputs.size(1)]
                logits, hidden, acts, heads = model(inputs, hidden, activations=True,
                                                    touch=(given[..., 1], given[..., 2]), struck=targets,
                                                    previous=previous)
                before = previous_strike(given[..., 1], given[..., 2], previous) if model.touch.format > 1 else None
                v, o, n = _touch_bits(heads, table[:, t + 1:t + 1 + chunk], valid, before)
                previous = before[:, -1] if before is not None else previous
                velocity_bits, offset_bits, strikes = velocity_bits + v, offset_bits + o, strikes + n
            else:
                logits, hidden = model(inputs, hidden)
            hidden = detach(hidden)
            losses = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
            nll += losses[valid].sum().item()
            hits += (logits.argmax(-1) == targets)[valid].sum().item()
            scored = int(valid.sum().item())
            count += scored
            bar.update(scored)
        if max_tokens and count >= max_tokens:
            break
    bar.close()
    model.train(was_training)
    mean = nll / count if count else float("nan")
    result = {"nll": mean, "perplexity": math.exp(mean) if count else float("nan"),
              "accuracy": hits / count if count else float("nan"), "tokens": count}
    if with_touch:
        result.update(velocity_bits=velocity_bits / strikes if strikes else float("nan"),
                      offset_bits=offset_bits / strikes if strikes else float("nan"), strikes=strikes)
    return result


def _touch_bits(heads: tuple[torch.Tensor, torch.Tensor], given: torch.Tensor, valid: torch.Tensor,
                previous: torch.Tensor | None = None) -> tuple[float, float, int]:
    """Summed bits of the known strikes' velocities and offsets under the touch head, and their count.
    `previous`: an exact head's (formats 2, 3) previous known strike before each (touch.previous_strike)."""
    velocity_target, offset_target = touch_targets(given[..., 1], given[..., 2])
    known = valid & (velocity_target != IGNORE)
    if not known.any():
        return 0.0, 0.0, 0
    if previous is not None:
        logs = value_log_probs(heads[0][known], heads[1][known], previous[known])
        velocity, offset = exact_value_bits(*logs, given[..., 1][known], given[..., 2][known], previous[known])
        return velocity.sum().item(), offset.sum().item(), int(known.sum().item())
    velocity = value_bits(F.log_softmax(heads[0].float()[known], -1), velocity_target[known],
                          velocity_width(velocity_target[known]).float())
    offset = value_bits(F.log_softmax(heads[1].float()[known], -1), offset_target[known],
                        OFFSET_WIDTHS.to(known.device)[offset_target[known]].float())
    return velocity.sum().item(), offset.sum().item(), int(known.sum().item())


def bits_per_note(nll: float, tokens: int, notes: int) -> float:
    """NLL per token x tokens / notes / ln 2: comparable across encodings (a chordwise token holds a
    step, a notewise one an event) and step grids; NaN with no notes."""
    return nll * tokens / notes / math.log(2) if notes else float("nan")
