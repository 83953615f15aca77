"""A trained model prepared for generation: the fastest honest path on the machine at hand.

Generation runs the model one token at a time at batch 1 (or K candidates), where the
cost is per-call overhead and reading the weights, not arithmetic. Measured on this
project's CPU (benchmarks/step_latency.py): PyTorch's default LSTM path goes through
oneDNN and is several times slower than the plain CPU kernels, and dynamic int8
quantisation of the LSTM and decoder weights (a quarter of the memory traffic) is faster
again. The engine therefore copies the trained weights into plain `nn.LSTM` layers with
no dropout machinery, run by the model's own layer loop (`run_layers`), turns oneDNN off, and
on CPU quantises them to int8 unless told not to.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from clara_live.config import InferenceConfig
from clara_live.errors import ClaraError
from clara_live.model.awd_lstm import AWDLSTM, run_layers
from clara_live.model.touch import input_rows
from clara_live.model.weight_drop import Hidden


class Engine(nn.Module):
    """`forward(ids, hidden) -> (logits, hidden)` like the AWD-LSTM, for inference only.

    With `outputs=True` a third value is the last LSTM layer's output at every step (the
    decoder's input; batch, time, emb), which the continuous cache keys on (sampling/memory.py).
    """

    def __init__(self, model: AWDLSTM) -> None:
        super().__init__()
        self.vocab_size = model.vocab_size
        self.embed = copy.deepcopy(model.embed)
        self.lstms = nn.ModuleList(copy.deepcopy(layer.lstm) for layer in model.layers)
        # untied copy: a quantised decoder must not share its weight with the embedding
        self.decoder = nn.Linear(model.decoder.in_features, model.decoder.out_features)
        self.decoder.load_state_dict(model.decoder.state_dict())
        # touch's layers stay float32 (int8 would gain nothing on layers this small): built apart
        # from the module tree that quantize_dynamic walks
        self._touch = [copy.deepcopy(model.touch).eval()] if model.touch is not None else []
        self.precision = "fp32"
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def init_hidden(self, batch_size: int) -> list[Hidden]:
        return [(torch.zeros(1, batch_size, lstm.hidden_size, device=self.device),
                 torch.zeros(1, batch_size, lstm.hidden_size, device=self.device)) for lstm in self.lstms]

    @property
    def output_size(self) -> int:
        """The width of the last layer's output (what `outputs=True` returns per step)."""
        return self.lstms[-1].hidden_size

    @property
    def touch(self) -> bool:
        """Whether the model learned touch (model/touch.py): its strikes' velocity and timing."""
        return bool(self._touch)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, hidden: list[Hidden], outputs: bool = False,
                touch: tuple[torch.Tensor, torch.Tensor] | None = None):
        """ids: (batch, time) -> logits (batch, time, vocab), float32 on the engine's device, and
        the new hidden state; with outputs=True also the last layer's output (batch, time, emb).
        `touch`: each token's velocity and offset (model/touch.py's columns), for a model with touch."""
        x = self.embed(ids)
        if self._touch and touch is not None:
            x = x + self._touch[0].embed(*(t.to(x.device) for t in input_rows(*touch)))
        layers, hidden = run_layers(self.lstms, x, hidden)
        logits = self.decoder(layers[-1]).float()
        return (logits, hidden, layers[-1].float()) if outputs else (logits, hidden)

    @property
    def touch_format(self) -> int:
        """The touch head's format (model/touch.py: 1 bins, 2 and 3 exact values too); 0 without touch."""
        return self._touch[0].format if self._touch else 0

    def touch_features(self, velocity: torch.Tensor, offset: torch.Tensor, before: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """What the touch head reads beside the state (model/touch.py's TouchLayers.features)."""
        return self._touch[0].features(velocity, offset, before=before)

    @torch.inference_mode()
    def touch_logits(self, output: torch.Tensor, struck: torch.Tensor, level: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity logits, offset logits) of striking `struck` (ids) after the last layer's `output`,
        with the head's features `level` (touch_features)."""
        return self._touch[0].logits(output.float(), self.embed(struck).float(), level.float())

    def to(self, *args, **kwargs):
        for layers in self._touch:
            layers.to(*args, **kwargs)
        return super().to(*args, **kwargs)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ClaraError("inference.device: cuda was asked for, but torch sees no CUDA device")
    return torch.device(device)


def build_engine(model: AWDLSTM, config: InferenceConfig | None = None) -> Engine:
    """The generation engine for a loaded model, on the configured device and precision."""
    config = config or InferenceConfig()
    device = resolve_device(config.device)
    precision = config.precision
    if precision == "auto":
        precision = "int8" if device.type == "cpu" else "fp32"
    if precision == "int8" and device.type != "cpu":
        raise ClaraError("inference.precision: int8 runs on the CPU only; use fp32 with cuda")
    if device.type == "cpu":
        torch.backends.mkldnn.enabled = False  # oneDNN's batch-1 LSTM is the slow path here
        if config.threads:
            torch.set_num_threads(config.threads)
    engine = Engine(model.cpu())
    if precision == "int8":
        with warnings.catch_warnings():  # torch.ao's eager quantisation warns that it will move to torchao
            warnings.simplefilter("ignore")
            engine = torch.ao.quantization.quantize_dynamic(engine, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    engine.precision = precision
    return engine.to(device)
