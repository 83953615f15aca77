"""A training run's state, in one place, and its checkpoint.

`Run` holds what training/trainer.py's loop trains and how (the model, its data and each
epoch's batch lengths, the optimiser and schedule, where and in what precision) and how far it
has got (`Position`, the hidden state carried between batches, a stop signal caught).
`save_checkpoint` writes the part a resume needs to `checkpoint.pt`, atomically; `load_checkpoint`
puts it back, each rank taking its own rows of the hidden state.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import torch
import torch.distributed as dist

from clara_live.atomic import write_bytes
from clara_live.config import Config, TrainingConfig
from clara_live.errors import InputError
from clara_live.model import AWDLSTM
from training.data import Corpus, TrainSet
from training.hardware import Precision

CHECKPOINT = "checkpoint.pt"


@dataclasses.dataclass
class Position:
    """How far a run has got; a checkpoint's `position`, field for field."""

    epoch: int = 0
    step: int = 0  # batches done in this epoch
    global_step: int = 0
    best_valid: float = math.inf
    onednn: bool | None = None  # the run's oneDNN switch (None: left alone); --resume keeps it


@dataclasses.dataclass(frozen=True)
class Place:
    """Where this process trains: its rank among `world` processes (torchrun) and its device."""

    rank: int
    world: int
    device: torch.device


@dataclasses.dataclass
class Run:
    """The training loop's state, in one place: what it trains and how (built once by trainer._build_run),
    how far it has got (position and hidden: what a checkpoint saves and --resume restores) and
    the signal, if any, that asked it to stop."""

    config: Config
    out: Path
    source: str | Path  # the corpus folder
    init: str | None  # the base model fine-tuned (--init), or none
    place: Place
    precision: Precision  # its oneDNN switch settled by trainer._begin
    progress: bool
    corpus: Corpus
    model: AWDLSTM
    vocabulary: list[str]
    train_set: TrainSet
    valid_pieces: list
    plans: list[list[int]]  # each epoch's batch lengths
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    net: torch.nn.Module | None = None  # the model, or its DDP wrapper under torchrun (set by trainer._begin)
    position: Position = dataclasses.field(default_factory=Position)
    hidden: list | None = None  # the LSTM state carried from batch to batch within an epoch
    stop_signal: int | None = None  # Ctrl-C or SIGTERM, caught by on_signal
    touch_window: tuple[float, int] = (0.0, 0)  # touch loss x strikes since the last log line, and strikes

    @property
    def cfg(self) -> TrainingConfig:
        return self.config.training

    @property
    def total(self) -> int:
        """Every planned step of every epoch."""
        return sum(len(p) for p in self.plans)

    @property
    def at_max_steps(self) -> bool:
        return bool(self.cfg.max_steps) and self.position.global_step >= self.cfg.max_steps

    def on_signal(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.stop_signal = signum


def _gather_rows(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """The whole global batch's hidden rows (batch is dim 1), from every rank."""
    if world == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=1)


def save_checkpoint(run: Run) -> None:
    """Called on every rank (the hidden state is gathered); rank 0 writes, atomically."""
    hidden, world = run.hidden, run.place.world
    if hidden is not None:
        hidden = [(_gather_rows(h, world).cpu(), _gather_rows(c, world).cpu()) for h, c in hidden]
    if run.place.rank != 0:
        return
    state = {
        "model": run.model.state_dict(),
        "optimiser": run.optimiser.state_dict(),
        "schedule": run.schedule.state_dict(),
        "position": dataclasses.asdict(run.position),
        "hidden": [list(h) for h in hidden] if hidden is not None else None,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(run.out / CHECKPOINT, buffer.getvalue())


def load_checkpoint(run: Run) -> None:
    """run's model, optimiser, schedule, RNG, position and hidden state (this rank's rows) as the
    checkpoint left them."""
    path, place = run.out / CHECKPOINT, run.place
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        run.model.load_state_dict(state["model"])
        run.optimiser.load_state_dict(state["optimiser"])
        run.schedule.load_state_dict(state["schedule"])
    except FileNotFoundError:
        raise InputError(f"{path}: no checkpoint to resume") from None
    except (KeyError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: not a checkpoint of this run ({exc.__class__.__name__})") from None
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def mine(t: torch.Tensor) -> torch.Tensor:  # this rank's rows of the global batch
        rows = t.size(1) // place.world
        return t[:, place.rank * rows:(place.rank + 1) * rows].to(place.device)

    run.hidden = [(mine(h), mine(c)) for h, c in state["hidden"]] if state["hidden"] else None
    run.position = Position(**state["position"])
