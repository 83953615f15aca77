"""AWD-LSTM (Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM Language Models").

The model is a pure function of (tokens, hidden): the hidden state is passed in and handed
back, never kept in the module, so a sampler, a trainer and an evaluator can each own theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import nn

from clara_live.config import ModelConfig
from clara_live.model.embedding_dropout import embedding_dropout
from clara_live.model.locked_dropout import LockedDropout
from clara_live.model.touch import TouchLayers, input_rows
from clara_live.model.weight_drop import Hidden, WeightDropLSTM

Layer = Callable[[torch.Tensor, Hidden], tuple[torch.Tensor, Hidden]]  # (x, state) -> (output, state)


class Activations(NamedTuple):
    """The last layer's output before and after its dropout, for AR and TAR."""

    raw: torch.Tensor  # (batch, time, emb)
    dropped: torch.Tensor  # (batch, time, emb)


class Dropouts(NamedTuple):
    """The dropout probabilities of one forward: AWD-LSTM's dropoute, dropouti, dropouth and dropout."""

    emb: float  # whole embedding rows
    input: float  # locked, on the embeddings
    hidden: float  # locked, between layers
    output: float  # locked, on the last layer's output


class AWDLSTM(nn.Module):
    def __init__(self, vocab_size: int, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, config.emb_size)
        sizes = [config.emb_size] + [config.hidden_size] * (config.num_layers - 1)
        # tying needs the last layer to emit embedding-sized vectors
        sizes.append(config.emb_size if config.tie_weights else config.hidden_size)
        self.layers = nn.ModuleList(
            WeightDropLSTM(sizes[i], sizes[i + 1], config.weight_drop) for i in range(config.num_layers))
        self.decoder = nn.Linear(sizes[-1], vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embed.weight
        self.touch = TouchLayers(config.emb_size, config.touch_format) if config.touch else None
        self.drop = LockedDropout()
        self.dropouts = Dropouts(config.dropout_emb, config.dropout_input, config.dropout_hidden,
                                 config.dropout_output)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch_size: int, device: torch.device | str | None = None) -> list[Hidden]:
        """Zero state: per layer (h, c), each (1, batch, layer size)."""
        device = device or self.embed.weight.device
        return [(torch.zeros(1, batch_size, layer.lstm.hidden_size, device=device),
                 torch.zeros(1, batch_size, layer.lstm.hidden_size, device=device)) for layer in self.layers]

    def forward(self, tokens: torch.Tensor, hidden: list[Hidden], activations: bool = False,
                touch: tuple[torch.Tensor, torch.Tensor] | None = None, struck: torch.Tensor | None = None,
                previous: torch.Tensor | None = None):
        """tokens: (batch, time) ids -> logits (batch, time, vocab) and the new hidden state.

        With activations=True a third value holds the last layer's outputs for AR/TAR (a flag
        rather than a second method, so DistributedDataParallel sees one forward). Every layer's
        output, without the logits: `encode`. `touch`: each token's velocity and offset (a piece
        array's columns; model/touch.py), for a model with touch; with `struck` (the next ids, in
        training; `touch` given too) a fourth value holds touch's (velocity, offset) logits for
        striking them; `previous` (batch, 2): the last known strike before these tokens (velocity 0:
        none), which an exact head (formats 2, 3) reads (touch.TouchLayers.features).
        """
        outputs, new_hidden = self.encode(tokens, hidden, touch=touch)
        x = self.drop(outputs[-1], self.dropouts.output)
        logits = self.decoder(x)
        if not activations:
            return logits, new_hidden
        if struck is None:
            return logits, new_hidden, Activations(outputs[-1], x)
        return logits, new_hidden, Activations(outputs[-1], x), self.touch_logits(
            x, struck, self.touch.features(*touch, before=previous))

    def encode(self, tokens: torch.Tensor, hidden: list[Hidden], dropouts: Dropouts | None = None,
               touch: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[Hidden]]:
        """The model short of its output dropout and decoder (a classifier's encoder needs no
        logits): tokens (batch, time) -> every layer's output (batch, time, size_i) and the new
        hidden state. `dropouts` replaces the config's probabilities for this call. Without
        `touch` a model with touch adds no touch rows (as for tokens that strike nothing)."""
        p = dropouts or self.dropouts
        x = embedding_dropout(self.embed, tokens, p.emb)  # (B, T, emb)
        if self.touch is not None and touch is not None:
            x = x + self.touch.embed(*input_rows(*touch))
        x = self.drop(x, p.input)
        return run_layers(self.layers, x, hidden, lambda out: self.drop(out, p.hidden))


    def touch_logits(self, output: torch.Tensor, struck: torch.Tensor, level: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity logits, offset logits) of striking `struck` (ids, (batch, time)) after the last
        layer's `output` (batch, time, emb), with the head's features `level` (touch.TouchLayers.features
        of the touch up to there); a model with touch only."""
        if self.touch is None:
            raise ValueError("this model has no touch (model.touch is false)")
        return self.touch.logits(output, self.embed(struck), level)


def run_layers(layers: Iterable[Layer], x: torch.Tensor, hidden: list[Hidden],
               between: Callable[[torch.Tensor], torch.Tensor] | None = None,
               ) -> tuple[list[torch.Tensor], list[Hidden]]:
    """The stacked LSTM, for the model and the engine: x (batch, time, input) through each layer
    from its own state -> every layer's output (batch, time, size_i) and the new hidden state.
    `between` (dropout, in training) is applied to each output but the last before the next layer."""
    outputs, new_hidden = [], []
    for layer, state in zip(layers, hidden, strict=True):
        if outputs and between is not None:
            x = between(x)
        x, state = layer(x, state)
        outputs.append(x)
        new_hidden.append(state)
    return outputs, new_hidden


def detach(hidden: list[Hidden]) -> list[Hidden]:
    """Cut the graph between batches (truncated backpropagation through time)."""
    return [(h.detach(), c.detach()) for h, c in hidden]
