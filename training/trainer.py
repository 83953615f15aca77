"""The training loop: AWD-LSTM on a corpus folder, on one process or many (torchrun, DDP).

One readable loop built from small functions. A run folder holds `checkpoint.pt` (model,
optimiser, schedule, RNG, data position and hidden state, written atomically every
checkpoint_every steps and at each epoch), `model/` (the best model on the valid split, in
the shipped format), `metrics.jsonl` and `loss.png`. `resume` continues exactly where the
checkpoint left off; Ctrl-C or SIGTERM saves a checkpoint and stops cleanly. Steps run in
`training.precision` (training/hardware.py: auto is bf16 autocast where the GPU or CPU has
native bf16, else fp32); weights, optimiser state and checkpoints are fp32 either way. Under
fp32 on a CPU, `training.onednn: auto` times the real model's step with oneDNN on and off at the
start of a fresh run and keeps the faster (_settle_onednn); the checkpoint records the choice, so
a resumed run keeps it without measuring. The loop's state lives in one `Run` (training/run.py,
with the checkpoint's saving and loading); train is its named steps: build the run, begin or
resume it, run the epochs (each validated and checkpointed), finish.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from clara_live import finite_json
from clara_live.atomic import make_folder, remove_stale_temps, write_text
from clara_live.codec import make_codec
from clara_live.config import Config, ConfigError, TrainingConfig
from clara_live.errors import ClaraError, InputError
from clara_live.model import AWDLSTM, detach, load_model, save_model
from clara_live.model.evaluate import score
from clara_live.model.store import CONFIG, WEIGHTS, parameter_count
from clara_live.model.touch import previous_strike
from clara_live.model.touch import targets as touch_targets
from clara_live.model.touch import touch_loss as touch_cross_entropy
from training.data import Corpus, TrainSet, batchify, epoch_stream, rank_rows, sequence_lengths
from training.hardware import (
    Precision,
    choose_precision,
    measured,
    memory_bytes,
    native_bf16,
    onednn,
    time_onednn,
    training_bytes,
)
from training.heldout import SPLITS, write_splits
from training.plot import plot_metrics, read_metrics
from training.run import CHECKPOINT, Place, Position, Run, load_checkpoint, save_checkpoint

METRICS = "metrics.jsonl"


class Stop(Exception):
    """Raised inside the loop after Ctrl-C or SIGTERM, once the checkpoint is safe."""


def _device(config: TrainingConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ClaraError("training.device is cuda but no CUDA device is available")
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _world() -> tuple[int, int]:
    """(rank, world size), starting the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _base_model(corpus: Corpus, config: Config, init: str | None, place: Place) -> tuple[AWDLSTM, list[str]]:
    """A fresh model over the corpus vocabulary, or a base model to fine-tune (--init); either
    refused first if its training cannot fit in memory (_check_fits)."""
    if init is None:
        size = len(corpus.vocabulary)
        _check_fits(parameter_count(lambda: AWDLSTM(size, config.model)), size, config, place)
        return AWDLSTM(size, config.model), corpus.vocabulary
    base = load_model(init)
    _check_fits(sum(p.numel() for p in base.model.parameters()), len(base.vocabulary),
                dataclasses.replace(config, model=base.model.config), place)
    codec = corpus.manifest["codec"]
    for key in ("encoding", "sample_freq", "chamber", "low_pitch", "num_pitches"):
        if key == "chamber" and codec.get(key) and not base.codec.chamber:
            continue  # a piano model grows into a chamber one (grown: its v rows start as its p rows)
        if codec.get(key) != getattr(base.codec, key):
            raise InputError(f"{init}: codec.{key} is {getattr(base.codec, key)!r} but the corpus has "
                             f"{codec.get(key)!r}; rebuild the corpus with the base model's settings")
    model, vocabulary = base.model, base.vocabulary
    missing = [t for t in corpus.vocabulary if t not in set(base.vocabulary)]
    if missing and not corpus.unknown:
        if not make_codec(corpus.codec).streams_events:  # a chordwise vocabulary is the corpus's chords
            raise InputError(f"{init}: {len(missing)} corpus tokens are not in the base model's vocabulary "
                             f"(e.g. {missing[0]!r})")
        model, vocabulary = grown(model, vocabulary, missing)
    if config.model.touch and not model.config.touch:
        model = with_touch(model)
    return model.train(), vocabulary


def grown(model: AWDLSTM, vocabulary: list[str], added: list[str]) -> tuple[AWDLSTM, list[str]]:
    """The model with rows for tokens its vocabulary lacks (a notewise corpus's `v` family, its
    style tokens), appended after its own so its ids keep their meaning: a `v` note's row starts as
    the same `p` note's (a violin's A is still an A), any other as a small random one; the
    decoder's bias as the model's for the same (or the mean of its note-ons')."""
    index = {t: i for i, t in enumerate(vocabulary)}
    state = model.state_dict()
    embed, bias = state["embed.weight"], state["decoder.bias"]
    rows, biases = [], []
    for token in added:
        twin = index.get("p" + token[1:] if token.startswith("v") else
                         "endp" + token[4:] if token.startswith("endv") else "")
        if twin is not None:
            rows.append(embed[twin].clone())
            biases.append(bias[twin].clone())
        else:
            rows.append(torch.empty(embed.size(1)).uniform_(-0.1, 0.1))
            biases.append(torch.tensor(float(bias.min())))  # rare until learned otherwise
    state["embed.weight"] = torch.cat([embed, torch.stack(rows)])
    state["decoder.bias"] = torch.cat([bias, torch.stack(biases)])
    decoder = state["decoder.weight"]  # tied: the embedding again; untied: new rows at its mean
    state["decoder.weight"] = state["embed.weight"] if model.config.tie_weights else \
        torch.cat([decoder, decoder.mean(0).expand(len(added), -1)])
    bigger = AWDLSTM(len(vocabulary) + len(added), model.config)
    bigger.load_state_dict(state)
    return bigger, [*vocabulary, *added]


def with_touch(model: AWDLSTM) -> AWDLSTM:
    """The model with touch layers added (their input rows zero: it predicts the tokens exactly as
    before), for a run that learns touch from a model that had none."""
    grown = AWDLSTM(model.vocab_size, dataclasses.replace(model.config, touch=True))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("touch.") for name in missing), (missing, unexpected)
    return grown


def _check_fits(parameters: int, vocabulary: int, config: Config, place: Place) -> None:
    """Refuse, before anything is allocated, a model whose training needs more memory than the device
    has (training_bytes: a lower bound; under torchrun on CPUs every rank holds a whole copy), rather
    than end in the allocator's RuntimeError."""
    available = memory_bytes(place.device)
    copies = 1 if place.device.type == "cuda" else int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    need = copies * training_bytes(parameters, config.training.batch_size // place.world, config.training.bptt,
                                   vocabulary)
    if available is not None and need > available:
        m, where = config.model, "this GPU's" if place.device.type == "cuda" else "this machine's"
        raise ConfigError(f"model.emb_size {m.emb_size}, hidden_size {m.hidden_size}, num_layers {m.num_layers}: "
                          f"{parameters:,} parameters need ~{_size(need)} to train, more than {where} "
                          f"{_size(available)} of memory; choose smaller model sizes or training.batch_size")


def _size(count: int) -> str:
    return f"{count / 1e9:,.3g} GB" if count >= 1e9 else f"{count / 1e6:.3g} MB"


def train(corpus_dir: str | Path, out: str | Path, config: Config, init: str | None = None,
          resume: bool = False, progress: bool = True) -> dict:
    """Train, returning the final metrics; rank 0 writes the run folder."""
    cfg = config.training
    rank, world = _world()
    if cfg.batch_size % world:
        raise ClaraError(f"training.batch_size {cfg.batch_size} does not divide among {world} processes")
    place = Place(rank, world, _device(cfg))
    precision = choose_precision(cfg.precision, place.device.type, native_bf16(place.device), cfg.onednn)
    if rank == 0:
        print(precision, file=sys.stderr)
    # the whole run, validation too; the process's setting comes back after (a measured switch is set in _begin)
    with onednn(precision.onednn):
        run = _build_run(corpus_dir, Path(out), config, init, place, precision, progress)
        _begin(run, resume)
        _run_epochs(run)
        _finish(run)
        if run.stop_signal is not None:
            raise KeyboardInterrupt(_stopped(run))  # cli.main prints it: `clara: interrupted at step ...`
        return {"epoch": run.position.epoch, "step": run.position.global_step,
                "best_valid_nll": run.position.best_valid, "model": run.model}


def _stopped(run: Run) -> str:
    """What Ctrl-C or SIGTERM left: the step, where the checkpoint is, the command that resumes it."""
    how = "terminated" if run.stop_signal == signal.SIGTERM else "interrupted"
    command = ["clara", "train", "--corpus", str(run.source), "--out", str(run.out), "--resume"]
    command += ["--init", run.init] if run.init else []
    return (f"{how} at step {run.position.global_step}; checkpoint saved in {run.out / CHECKPOINT}; resume with: "
            f"{shlex.join(command)} (and any --config/--set given)")


def _build_run(corpus_dir: str | Path, out: Path, config: Config, init: str | None, place: Place,
               precision: Precision, progress: bool) -> Run:
    """The model (fresh or --init), its train and valid pieces, each epoch's batch lengths, the
    optimiser and the schedule; nothing written yet."""
    cfg = config.training
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    corpus = Corpus(corpus_dir)
    model, vocabulary = _base_model(corpus, config, init, place)
    model.to(place.device)
    touch = model.touch is not None
    train_pieces = corpus.pieces("train", vocabulary, touch=touch)
    valid_pieces = corpus.pieces("valid", vocabulary, touch=touch)
    if not train_pieces:
        raise InputError(f"{corpus_dir}: the train split is empty")
    train_set = TrainSet(train_pieces, corpus.augment(train_pieces, vocabulary, config.corpus))
    plans = [sequence_lengths(len(train_set.stream(cfg.seed, e)) // cfg.batch_size, cfg.bptt, cfg.seed, e)
             for e in range(cfg.epochs)]
    # the schedule spans every planned step, so a run stopped by max_steps or Ctrl-C and
    # resumed follows exactly the curve of one that was never stopped
    total = sum(len(p) for p in plans)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=max(total, 2),
                                                   pct_start=cfg.warmup_fraction)
    return Run(config=config, out=out, source=corpus_dir, init=init, place=place, precision=precision,
               progress=progress, corpus=corpus, model=model, vocabulary=vocabulary, train_set=train_set,
               valid_pieces=valid_pieces, plans=plans, optimiser=optimiser, schedule=schedule)


def _begin(run: Run, resume: bool) -> None:
    """The run folder made; the checkpoint loaded (--resume), or a fresh run refused over one;
    the oneDNN switch settled; the model wrapped for DDP; each rank's dropout seeded."""
    out, rank = run.out, run.place.rank
    if rank == 0:
        make_folder(out)  # a --out that is a file is said now, not at the first log line
    if resume:
        if rank == 0:  # a run killed mid-write (SIGKILL) left temporary files; rank 0 is the one writer
            for target in (out / CHECKPOINT, out / "loss.png", out / "model" / WEIGHTS, out / "model" / CONFIG,
                           out / "model" / SPLITS):
                remove_stale_temps(target)
        load_checkpoint(run)
        if rank == 0:
            _trim_metrics(out, run.position)
    elif rank == 0 and (out / CHECKPOINT).exists():
        raise ClaraError(f"{out}: holds a checkpoint already; pass --resume to continue it or choose another --out")
    run.precision = _settle_onednn(run, resume)
    if run.precision.onednn is not None:
        torch.backends.mkldnn.enabled = run.precision.onednn  # train()'s onednn() block restores it after
    run.position.onednn = run.precision.onednn
    run.net = DistributedDataParallel(run.model) if run.place.world > 1 else run.model
    if not resume:
        torch.manual_seed(run.cfg.seed * 1000 + rank)  # each rank its own dropout masks


def _run_epochs(run: Run) -> None:
    """Epochs until the last or max_steps, each validated and checkpointed; Ctrl-C or SIGTERM
    stops at the next step, once its checkpoint is saved (run.stop_signal says which)."""
    cfg, position = run.cfg, run.position
    previous = {s: signal.signal(s, run.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.time()
    try:
        while position.epoch < cfg.epochs and (not cfg.max_steps or position.global_step < cfg.max_steps):
            _run_epoch(run)
            if run.at_max_steps and position.step < len(run.plans[position.epoch]):
                break
            _validate(run, started)
            position.epoch, position.step, run.hidden = position.epoch + 1, 0, None
            save_checkpoint(run)
    except Stop:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _validate(run: Run, started: float) -> None:
    """The epoch's valid scores logged (rank 0), the model saved when they are the best yet."""
    position = run.position
    valid = score(run.model, run.valid_pieces, max_tokens=run.cfg.eval_tokens) if run.valid_pieces else {}
    if run.place.rank != 0:
        return
    _log(run.out, {"epoch": position.epoch + 1, "step": position.global_step,
                   **{f"valid_{k}": v for k, v in valid.items()}, "elapsed_s": round(time.time() - started)})
    if valid and valid["nll"] < position.best_valid:
        position.best_valid = valid["nll"]
        _save_model(run, {"valid": valid, "epoch": position.epoch + 1})
    plot_metrics(run.out / METRICS, run.out / "loss.png")


def _save_model(run: Run, extra: dict) -> None:
    """model/ in the shipped format, its info saying how it was trained (and `extra`)."""
    cfg, device, precision = run.cfg, run.place.device, run.precision
    codec = dataclasses.replace(run.config.codec, **run.corpus.manifest["codec"])
    info = {"corpus": str(run.source), "sources": run.corpus.manifest.get("sources"),
            "training": dataclasses.asdict(cfg), "world_size": run.place.world,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(), "precision": precision.name,
            "onednn": precision.onednn, "init": run.init}
    save_model(run.out / "model", run.model, codec, run.vocabulary, {**info, **extra})
    if run.corpus.manifest.get("sources"):  # its held-out music with it: a model copied mid-run is measured on it
        write_splits(run.corpus.manifest, run.out / "model")


def _finish(run: Run) -> None:
    """Rank 0: a model/ (with its held-out splits) even if no epoch finished, the loss plot; under
    torchrun the ranks wait for each other."""
    out = run.out
    if run.place.rank == 0:
        if not (out / "model" / CONFIG).exists():  # no epoch finished: keep what we have
            valid = score(run.model, run.valid_pieces, max_tokens=run.cfg.eval_tokens) if run.valid_pieces else None
            _save_model(run, {"valid": valid})
        plot_metrics(out / METRICS, out / "loss.png")
    if run.place.world > 1:
        digests = os.environ.get("CLARA_RANK_DIGESTS")  # tests: every rank's final parameters
        if digests:
            flat = torch.cat([p.detach().cpu().flatten() for p in run.model.state_dict().values()])
            torch.save(flat, Path(digests) / f"rank{run.place.rank}.pt")
        dist.barrier()


def _settle_onednn(run: Run, resumed: bool) -> Precision:
    """run.precision with its oneDNN switch decided where it was left to measure (CPU fp32 under
    training.onednn: auto). A resumed run takes the switch its checkpoint records (off for a
    checkpoint from before the switch was recorded: the trainer then always ran fp32 with it off).
    A fresh run times the real model on its first real batch (_time_step; no batch in the first
    epoch: nothing to time, off); under torchrun rank 0 measures and broadcasts its choice, so
    every rank runs the same kernels."""
    precision, cfg, place, lengths = run.precision, run.cfg, run.place, run.plans[0]
    if not precision.measure:
        return precision
    if not lengths:
        return dataclasses.replace(precision, onednn=False, measure=False, reason="no training batch to time")
    if resumed:
        precision = dataclasses.replace(precision, onednn=bool(run.position.onednn), measure=False,
                                        reason="as the run began; not measured again on resume")
    elif place.rank == 0:
        data = rank_rows(batchify(epoch_stream(run.train_set.pieces, cfg.seed, 0), cfg.batch_size), place.rank,
                         place.world)
        precision = measured(precision, *_time_step(run.model, data[:, :lengths[0] + 1].to(place.device),
                                                    place.device))
    if place.rank == 0:
        print(f"oneDNN {'on' if precision.onednn else 'off'} for fp32 ({precision.reason})", file=sys.stderr)
    if not resumed and place.world > 1:
        choice = torch.tensor([int(bool(precision.onednn))])
        dist.broadcast(choice, 0)  # gloo: a CPU tensor (only CPU runs measure)
        if place.rank != 0:
            precision = dataclasses.replace(precision, onednn=bool(choice.item()), measure=False,
                                            reason="measured on rank 0")
    return precision


def _time_step(model: AWDLSTM, batch: torch.Tensor, device: torch.device, timer=time_onednn) -> tuple[float, float]:
    """(seconds, seconds): timer's measure of one forward + backward pass of the model on batch
    ((rows, time + 1) token ids) with oneDNN on and off. No optimiser step; the gradients are
    dropped after, and the torch RNG state comes back as it was, so the run's dropout masks are
    exactly those it would draw without the measurement."""
    batch = batch[..., 0] if batch.dim() == 3 else batch  # the tokens alone: touch's cost is small beside them
    inputs, targets = batch[:, :-1], batch[:, 1:]
    hidden = model.init_hidden(batch.size(0), device)
    model.train()

    def step() -> None:
        logits, _ = model(inputs, hidden)
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).backward()

    with torch.random.fork_rng(devices=[]):
        try:
            return timer(step)
        finally:
            model.zero_grad(set_to_none=True)


@dataclasses.dataclass
class _Window:
    """The training loss and tokens since the last log line, and when that was."""

    loss: float = 0.0
    tokens: int = 0
    start: float = dataclasses.field(default_factory=time.time)


def _run_epoch(run: Run) -> None:
    """The epoch's batches from run.position on (a resumed run: where its checkpoint left off),
    one optimiser step each, logged every log_every steps and checkpointed every checkpoint_every;
    raises Stop, once the checkpoint is safe, when a signal has asked to stop."""
    cfg, position, place = run.cfg, run.position, run.place
    lengths = run.plans[position.epoch]
    data = rank_rows(batchify(run.train_set.stream(cfg.seed, position.epoch), cfg.batch_size), place.rank,
                     place.world)
    offset = sum(lengths[:position.step])
    if run.hidden is None:
        run.hidden = run.model.init_hidden(data.size(0), place.device)
    bar = tqdm(total=run.total, initial=position.global_step, desc=f"epoch {position.epoch + 1}/{cfg.epochs}",
               unit="step", disable=not run.progress or place.rank != 0 or None)
    window = _Window()
    run.model.train()
    for length in lengths[position.step:]:
        batch = data[:, offset:offset + length + 1].to(place.device, non_blocking=True)
        offset += length
        loss, norm = _backward(run, batch)
        if not _finite(loss, norm, place.world):  # before the step: the weights, checkpoint and model stay as they were
            bar.close()
            raise ClaraError(f"training step {position.global_step + 1}: the loss ({loss.item():.4g}) or its gradient "
                             f"(norm {norm.item():.4g}) is not finite; stopped, {CHECKPOINT} and model/ are as "
                             "the last finite step left them (a lower training.lr, or another --init)")
        run.optimiser.step()
        run.schedule.step()
        position.step += 1
        position.global_step += 1
        tokens = batch[:, 1:].numel()
        window.loss += loss.item() * tokens
        window.tokens += tokens
        bar.update()
        done = run.at_max_steps
        if place.rank == 0 and (position.global_step % cfg.log_every == 0 or done):
            window = _log_window(run, window, bar)
        if position.global_step % cfg.checkpoint_every == 0 or run.stop_signal or done:
            save_checkpoint(run)
        if run.stop_signal is not None:
            bar.close()
            raise Stop
        if done:
            break
    bar.close()


def _backward(run: Run, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, gradient norm) of one batch ((rows, time + 1) token ids, or (rows, time + 1, 3) with
    touch), its gradients computed and clipped, the optimiser not stepped yet; run.hidden carried on.
    The loss returned is the next token's; with touch the gradient also holds touch_weight times
    the touch heads' loss summed over the batch's known strikes and divided by its tokens (not its
    strikes: every rank's batch has the same tokens, so under torchrun the ranks' mean gradient is
    the whole batch's); touch_loss logs it per strike."""
    cfg = run.cfg
    touch = batch.dim() == 3
    ids = batch[..., 0] if touch else batch
    inputs, targets = ids[:, :-1], ids[:, 1:]
    hidden = detach(run.hidden)
    # autocast runs the forward's matmuls in bf16; weights, gradients, optimiser state stay fp32
    with torch.autocast(run.place.device.type, dtype=torch.bfloat16, enabled=run.precision.bf16):
        given = (batch[:, :-1, 1], batch[:, :-1, 2]) if touch else None
        logits, hidden, acts, *heads = run.net(inputs, hidden, activations=True, touch=given,
                                               struck=targets if touch else None)
        run.hidden = [(h.float(), c.float()) for h, c in hidden]  # carried and checkpointed in fp32 under bf16 too
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        # AR penalises large outputs, TAR large changes between steps (Merity et al. 2017, 4.6)
        regularised = loss + cfg.alpha * acts.dropped.float().pow(2).mean() \
            + cfg.beta * (acts.raw[:, 1:] - acts.raw[:, :-1]).float().pow(2).mean()
        if touch:
            # an exact head's previous known strike, within the batch as its running level is
            previous = previous_strike(batch[:, :-1, 1], batch[:, :-1, 2]) if run.model.touch.format > 1 else None
            touch_loss, strikes = touch_targets_loss(*heads[0], batch[:, 1:, 1], batch[:, 1:, 2], previous,
                                                     run.model.touch.format == 3)
            regularised = regularised + cfg.touch_weight * touch_loss / targets.numel()
            run.touch_window = (run.touch_window[0] + touch_loss.item(), run.touch_window[1] + strikes)
    run.optimiser.zero_grad(set_to_none=True)
    regularised.backward()
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip)
    return loss, norm


def touch_targets_loss(velocity: torch.Tensor, offset: torch.Tensor, given_velocity: torch.Tensor,
                       given_offset: torch.Tensor, previous: torch.Tensor | None = None, repeat: bool = False
                       ) -> tuple[torch.Tensor, int]:
    """The touch heads' loss at the known strikes of the tokens predicted, and their count; `previous`
    (formats 2, 3): the last known strike before each (touch.previous_strike); `repeat`: format 3."""
    return touch_cross_entropy(velocity, offset, *touch_targets(given_velocity, given_offset, previous, repeat),
                               previous)


def _log_window(run: Run, window: _Window, bar: tqdm) -> _Window:
    """A metrics line and the bar's postfix for the steps since the last; a fresh window."""
    rate = window.tokens * run.place.world / max(time.time() - window.start, 1e-9)
    touch_loss, strikes = run.touch_window
    run.touch_window = (0.0, 0)
    _log(run.out, {"step": run.position.global_step, "epoch": run.position.epoch + 1,
                   "train_loss": window.loss / window.tokens, "lr": run.schedule.get_last_lr()[0],
                   "tokens_per_s": round(rate), **({"touch_loss": touch_loss / strikes} if strikes else {})})
    bar.set_postfix(loss=f"{window.loss / window.tokens:.3f}", tok_s=f"{rate:,.0f}")
    return _Window()


def _finite(loss: torch.Tensor, norm: torch.Tensor, world: int) -> bool:
    """Whether this step's loss and gradient norm are finite on every rank (under torchrun the ranks
    agree, so they stop together rather than one waiting on the others forever)."""
    ok = (torch.isfinite(loss.detach()) & torch.isfinite(norm)).float()
    if world > 1:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def _trim_metrics(out: Path, position: Position) -> None:
    """metrics.jsonl cut back to what the checkpoint at `position` had seen, rewritten atomically: a
    run killed (SIGKILL) after logging past its last checkpoint would log those steps again when
    resumed. A train line stays up to the checkpoint's step, a validation line if its epoch was
    finished by the checkpoint (one killed between the two logs its validation again); a line torn
    by the kill goes too (the next line would be appended to it)."""
    path = out / METRICS
    if not path.exists():
        return
    records = read_metrics(path)  # a torn line is skipped
    kept = [r for r in records if isinstance(r, dict) and isinstance(r.get("step"), int) and (
        r["step"] <= position.global_step if "train_loss" in r
        else isinstance(r.get("epoch"), int) and r["epoch"] <= position.epoch)]
    write_text(path, "".join(finite_json.dumps(record) + "\n" for record in kept))  # as _log wrote them


def _log(out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METRICS, "a", encoding="utf-8") as handle:  # append-only: a torn last line is skipped
        handle.write(finite_json.dumps(record) + "\n")
