"""Train the learned beat tracker (clara_live.beat.net) on ASAP's train works.

Data: ../shared/corpus/asap's performances (onsets, velocities, pitches) and their annotated
beats and downbeats, split by work as training/heldout.py splits them; the parsed performances
are cached in OUT/../asap.npz. Training sees random windows of the train works' performances
(a share of them at a performance's first note, as the live phrase and the benchmark start),
time-stretched (±STRETCH), velocity-scaled and transposed; targets are the beats and downbeats
widened to their neighbour frames (0.5). After each epoch the valid works' openings are scored
exactly as benchmarks/tempo_from_playing.py scores them (numpy forward, the beat decoder, the
first guess 100 bpm), and the best epoch's weights (by valid Acc1, then Acc2) go to
OUT/weights.npz; OUT/checkpoint.pt lets a run resume. Test is never read here.

    OMP_NUM_THREADS=1 python -m training.beat_tracker --out runs/beat --minutes 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import symusic
import torch
from torch import nn

from clara_live.beat import net as beat_net
from clara_live.beat.tracker import estimate_tempo
from training import tempo_data
from training.heldout import CORPUS, asap_rows, asap_splits, asap_work
from training.tempo_data import OCTAVES, hit

ROOT = CORPUS / "asap"
WINDOW = 12.0  # seconds a training window holds (after stretching)
OPENINGS = 0.3  # the share of windows that start at a performance's first note
STRETCH = 0.2  # time-stretch up to x(1 + STRETCH) or its inverse
SECONDS = 10.0  # the valid openings' length, as the benchmark's
FIRST_GUESS = 100.0
TEMPO_BINS = np.geomspace(20.0, 300.0, 48)  # the tempo head's classes (bpm), about 6 % apart
TEMPO_LOSS = 0.1  # the tempo head's cross-entropy weight against the beat loss
STEADY_KINDS = (tempo_data._cells, tempo_data._cells, tempo_data._tune, tempo_data._tune, tempo_data._pulse)


def parse(row: dict[str, str]) -> dict[str, np.ndarray]:
    """One performance: onsets (s), velocities, pitches, beats (s), downbeat flags and whether
    its MIDI has one tempo (the benchmark scores only those)."""
    data = (ROOT / row["midi_performance"]).read_bytes()
    single = len(symusic.Score.from_midi(data, ttype="tick").tempos) <= 1
    score = symusic.Score.from_midi(data, ttype="second")
    notes = sorted((float(n.time), int(n.velocity), int(n.pitch)) for track in score.tracks for n in track.notes)
    beats, down = [], []
    for line in (ROOT / row["performance_annotations"]).read_text().splitlines():
        if line.strip():
            fields = line.split("\t")
            beats.append(float(fields[0]))
            down.append(fields[2].startswith("db"))
    a = np.array(notes, dtype=np.float64).reshape(-1, 3)
    return {"onsets": a[:, 0], "velocities": a[:, 1], "pitches": a[:, 2], "beats": np.array(beats),
            "downbeats": np.array(down), "single_tempo": np.array(single)}


def performances(cache: Path) -> list[dict]:
    """Every ASAP performance parsed, with its split; read from `cache` when there."""
    splits = asap_splits()
    rows = asap_rows(ROOT)
    if not cache.exists():
        started = time.perf_counter()
        parsed = [parse(r) for r in rows]
        arrays = {f"{i}.{k}": v for i, p in enumerate(parsed) for k, v in p.items()}
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **arrays)
        print(f"parsed {len(rows)} performances in {time.perf_counter() - started:.0f} s -> {cache}", flush=True)
    out = []
    with np.load(cache, allow_pickle=False) as f:
        for i, r in enumerate(rows):
            p = {k: f[f"{i}.{k}"] for k in ("onsets", "velocities", "pitches", "beats", "downbeats", "single_tempo")}
            out.append({**p, "name": r["midi_performance"], "split": splits[asap_work(r["folder"])]})
    return out


def opening(p: dict, seconds: float = SECONDS) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(onsets, velocities, pitches, reference bpm) of the first `seconds` from the first note,
    in seconds from it, exactly as the benchmark takes them (the reference: 60 / the median
    interval of the annotated beats there); None where it skips one."""
    if not bool(p["single_tempo"]) or not len(p["onsets"]):
        return None
    first = p["onsets"][0]
    keep = p["onsets"] < first + seconds
    beats = p["beats"] - first
    beats = beats[(beats >= -1e-6) & (beats <= seconds)]
    if len(beats) < 3:
        return None
    reference = 60.0 / statistics.median(np.diff(beats))
    return p["onsets"][keep] - first, p["velocities"][keep], p["pitches"][keep], reference


def steady_openings(split: str) -> list[tuple]:
    """The benchmark's steady phrases of a split (POP909's MELODY openings, the synthetic phrases) as
    `opening` gives ASAP's: (onsets, velocities, pitches, the truth's bpm)."""
    return [(np.array(p["onsets"]), np.array(p["velocities"]), np.array(p["pitches"]), p["bpm"])
            for p in tempo_data.pop909_openings() + tempo_data.synthetic_phrases() if p["split"] == split]


def window(p: dict, rng: np.random.Generator, frames: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random augmented window of a performance: (frames, FEATURES) input, (frames, 2) targets,
    a (frames, 2) mask (1 within the annotated beats' span) and (bins,) soft tempo targets (60 /
    the median interval of the window's beats, as the benchmark's reference; all 0 where the
    window holds fewer than three beats)."""
    stretch = float(np.exp(rng.uniform(-np.log1p(STRETCH), np.log1p(STRETCH))))
    onsets, beats = p["onsets"] * stretch, p["beats"] * stretch
    seconds = frames / beat_net.FPS
    if rng.random() < OPENINGS:
        start = float(onsets[0]) - rng.uniform(0.0, 0.3)
    else:
        start = float(rng.uniform(onsets[0] - 1.0, max(onsets[0], beats[-1] - seconds / 2)))
    inside = (onsets >= start) & (onsets < start + seconds)
    velocities = np.clip(p["velocities"][inside] * rng.uniform(0.7, 1.3) + rng.normal(0, 4, inside.sum()), 1, 127)
    pitches = np.clip(p["pitches"][inside] + rng.integers(-6, 7), 21, 108)
    jitter = rng.normal(0.0, 0.005, inside.sum())
    x = beat_net.frames(onsets[inside] + jitter, velocities, pitches, start=start, length=frames)
    y = np.stack([beat_net.widen(beats, frames, start), beat_net.widen(beats[p["downbeats"]], frames, start)], 1)
    time_of = start + np.arange(frames) / beat_net.FPS
    period = float(np.median(np.diff(beats))) if len(beats) > 1 else 1.0
    mask = ((time_of >= beats[0] - period / 2) & (time_of <= beats[-1] + period / 2)).astype(np.float32)
    mask = np.stack([mask, mask], 1)
    inside_beats = beats[(beats >= start) & (beats <= start + seconds)]
    tempo = np.zeros(len(TEMPO_BINS), dtype=np.float32)
    interval = float(np.median(np.diff(inside_beats))) if len(inside_beats) >= 3 else 0.0
    if interval > 0:
        tempo = tempo_target(60.0 / interval)
    return x, y, mask, tempo


def tempo_target(bpm: float) -> np.ndarray:
    """The tempo head's soft target: a Gaussian a bin wide around bpm (clipped into the head's range:
    one centred far outside it would underflow to 0)."""
    bpm = min(TEMPO_BINS[-1], max(TEMPO_BINS[0], bpm))
    bins = np.log(bpm / TEMPO_BINS) / np.log(TEMPO_BINS[1] / TEMPO_BINS[0])
    tempo = np.exp(-0.5 * bins ** 2).astype(np.float32)
    return tempo / tempo.sum()


def steady_window(rng: np.random.Generator, frames: int, pop909: list[dict] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`window`'s four for steady playing: a synthetic phrase drawn afresh (tempo_data's cells, tunes
    and pulses at 40-240 bpm, its beats exact; no downbeats, that loss masked) or, given `pop909`
    (its train phrases), a POP909 melody phrase with only its tempo to learn (its beats' phase is
    known to a sixteenth only: the beat losses masked), time-stretched like ASAP's."""
    seconds = frames / beat_net.FPS
    if pop909:
        p = pop909[int(rng.integers(len(pop909)))]
        stretch = float(np.exp(rng.uniform(-np.log1p(STRETCH), np.log1p(STRETCH))))
        onsets = np.array(p["onsets"]) * stretch
        velocities, pitches = np.array(p["velocities"], dtype=float), np.array(p["pitches"], dtype=float)
        bpm = p["bpm"] / stretch
        beats = np.zeros(0)
        start = -rng.uniform(0.0, 0.3)
    else:
        bpm = float(np.exp(rng.uniform(np.log(40.0), np.log(240.0))))
        notes = sorted(STEADY_KINDS[int(rng.integers(len(STEADY_KINDS)))](rng, 60.0 / bpm, seconds + 2.0))
        onsets = np.array([n[0] for n in notes])
        velocities, pitches = np.array([n[1] for n in notes], float), np.array([n[2] for n in notes], float)
        beats = 60.0 / bpm * np.arange(int((seconds + 2.0) * bpm / 60.0) + 1)
        start = float(onsets[0]) - rng.uniform(0.0, 0.3) if rng.random() < OPENINGS else float(
            rng.uniform(onsets[0], max(onsets[0], onsets[-1] - seconds / 2)))
    inside = (onsets >= start) & (onsets < start + seconds)
    velocities = np.clip(velocities[inside] * rng.uniform(0.7, 1.3) + rng.normal(0, 4, inside.sum()), 1, 127)
    pitches = np.clip(pitches[inside] + rng.integers(-6, 7), 21, 108)
    x = beat_net.frames(onsets[inside], velocities, pitches, start=start, length=frames)
    y = np.zeros((frames, 2), dtype=np.float32)
    mask = np.zeros((frames, 2), dtype=np.float32)
    if len(beats):
        y[:, 0] = beat_net.widen(beats, frames, start)
        time_of = start + np.arange(frames) / beat_net.FPS
        mask[:, 0] = (time_of >= beats[0] - 30.0 / bpm) & (time_of <= beats[-1] + 30.0 / bpm)
    return x, y, mask, tempo_target(bpm)


class TCN(nn.Module):
    """The network beat_net.forward runs in numpy (the same parameter names)."""

    def __init__(self, channels: int = 24, blocks: int = 7, heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.blocks_n = blocks
        self.inp = nn.Conv1d(beat_net.FEATURES, channels, 1)
        self.dilated = nn.ModuleList(nn.Conv1d(channels, channels, beat_net.KERNEL, dilation=beat_net.dilation(b),
                                               padding=beat_net.dilation(b) * (beat_net.KERNEL // 2))
                                     for b in range(blocks))
        self.mix = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in range(blocks))
        self.drop = nn.Dropout(dropout)
        self.out = nn.Conv1d(channels, heads, 1)
        self.tempo = nn.Linear(channels, len(TEMPO_BINS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, FEATURES) -> beat logits (batch, frames, heads), tempo logits (batch, bins)."""
        h = self.inp(x.transpose(1, 2))
        for dilated, mix in zip(self.dilated, self.mix, strict=True):
            h = h + mix(self.drop(nn.functional.elu(dilated(h))))
        return self.out(h).transpose(1, 2), self.tempo(nn.functional.elu(h).mean(dim=2))

    def load_numpy(self, weights: dict[str, np.ndarray]) -> None:
        """Take `numpy_weights`' arrays (a shipped weights.npz) as this network's parameters."""
        own = {"inp": "in", "out": "out", "tempo": "tempo"}
        with torch.no_grad():
            for layer, key in own.items():
                module = getattr(self, layer)
                w = torch.from_numpy(np.asarray(weights[f"{key}.weight"], dtype=np.float32))
                module.weight.copy_(w.reshape(module.weight.shape))
                module.bias.copy_(torch.from_numpy(np.asarray(weights[f"{key}.bias"], dtype=np.float32)))
            for b in range(self.blocks_n):
                self.dilated[b].weight.copy_(torch.from_numpy(weights[f"block{b}.dilated.weight"]))
                self.dilated[b].bias.copy_(torch.from_numpy(weights[f"block{b}.dilated.bias"]))
                self.mix[b].weight.copy_(torch.from_numpy(weights[f"block{b}.mix.weight"]).reshape(self.mix[b].weight.shape))
                self.mix[b].bias.copy_(torch.from_numpy(weights[f"block{b}.mix.bias"]))

    def numpy_weights(self) -> dict[str, np.ndarray]:
        w = {"blocks": np.array(self.blocks_n, dtype=np.int64),
             "in.weight": self.inp.weight[:, :, 0], "in.bias": self.inp.bias,
             "out.weight": self.out.weight[:, :, 0], "out.bias": self.out.bias,
             "tempo.weight": self.tempo.weight, "tempo.bias": self.tempo.bias,
             "tempo.bpm": TEMPO_BINS.astype(np.float32)}
        for b in range(self.blocks_n):
            w[f"block{b}.dilated.weight"] = self.dilated[b].weight
            w[f"block{b}.dilated.bias"] = self.dilated[b].bias
            w[f"block{b}.mix.weight"] = self.mix[b].weight[:, :, 0]
            w[f"block{b}.mix.bias"] = self.mix[b].bias
        return {k: v if isinstance(v, np.ndarray) else v.detach().numpy().astype(np.float32).copy()
                for k, v in w.items()}



def score(openings: list[tuple], weights: dict[str, np.ndarray], **constants: float) -> dict[str, float]:
    """Acc1 and Acc2 of the learned estimator on openings, as the benchmark counts them."""
    acc1 = acc2 = none = 0
    for onsets, velocities, pitches, reference in openings:
        estimate = estimate_tempo(onsets, velocities, FIRST_GUESS, pitches=pitches, weights=weights, **constants)
        bpm = FIRST_GUESS if estimate is None else estimate.bpm
        none += estimate is None
        acc1 += hit(bpm, reference, (1.0,))
        acc2 += hit(bpm, reference, OCTAVES)
    n = max(1, len(openings))
    return {"acc1": acc1 / n, "acc2": acc2 / n, "none": none, "openings": len(openings)}


GRID = {"tempo_weight": (0.0, 0.25, 0.5, 1.0, 2.0), "threshold": (0.03, 1 / 16, 0.1, 0.2, 0.3),
        "observation": (16, 1000), "transition": (10.0, 30.0, 100.0), "power": (1.0, 2.0),
        "prior_octaves": (0.5, 1.0, 2.0)}


def tune(weights: dict[str, np.ndarray], valid: list[tuple], train: list[tuple]) -> dict[str, float]:
    """The decoder's constants by coordinate search over GRID on valid Acc1 + Acc2 (from the
    modules' defaults, one constant at a time, each keeping the best so far); train's figures
    for the defaults and the choice are a second opinion on the same network."""
    def total(figures: dict) -> float:
        return figures["acc1"] + figures["acc2"]
    chosen: dict[str, float] = {}
    best = score(valid, weights)
    print(f"defaults: valid {best}; train {score(train, weights)}", flush=True)
    for name, values in GRID.items():
        for value in values:
            figures = score(valid, weights, **{**chosen, name: value})
            print(f"  {name}={value}: valid Acc1 {figures['acc1']:.1%} Acc2 {figures['acc2']:.1%}", flush=True)
            if total(figures) > total(best):
                best, chosen = figures, {**chosen, name: value}
    print(f"chosen {chosen}: valid {best}; train {score(train, weights, **chosen)}", flush=True)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run folder (weights.npz, checkpoint.pt, log)")
    parser.add_argument("--minutes", type=float, default=30.0, help="training time budget (default 30)")
    parser.add_argument("--epoch-steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=24)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steady", type=float, default=0.0,
                        help="the share of windows that are synthetic steady phrases (issue 23; default 0: ASAP only)")
    parser.add_argument("--pop909", type=float, default=0.0,
                        help="the share of windows that are POP909 train melodies, their tempo only (default 0)")
    parser.add_argument("--init", type=Path, help="start from these weights (a weights.npz), not at random")
    parser.add_argument("--tune", action="store_true",
                        help="no training: score OUT/weights.npz's decoder constants on valid (and train) openings")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    data = performances(args.out.parent / "asap.npz")
    train = [p for p in data if p["split"] == "train" and len(p["onsets"]) and len(p["beats"]) > 3]
    valid = [o for p in data if p["split"] == "valid" for o in [opening(p)] if o is not None]
    print(f"train: {len(train)} performances; valid: {len(valid)} openings", flush=True)
    pop909 = [p for p in tempo_data.pop909_openings(WINDOW + 2.0, windows=5) if p["split"] == "train"] \
        if args.pop909 > 0 else []
    # with steady phrases to learn from, the epoch is chosen on the steady sets' valid phrases too
    steady_valid = steady_openings("valid") if args.steady > 0 or args.pop909 > 0 else []
    if args.tune:
        tune(beat_net.load(args.out / "weights.npz"), valid, [o for p in train for o in [opening(p)] if o is not None])
        return 0
    model = TCN(args.channels, args.blocks)
    if args.init is not None:
        model.load_numpy(beat_net.load(args.init))
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / "checkpoint.pt"
    state = {"epoch": 0, "seconds": 0.0, "best": (-1.0, -1.0), "history": []}
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        state = json.loads(saved["state"])
        state["best"] = tuple(state["best"])
        rng = np.random.default_rng([args.seed, state["epoch"]])
        print(f"resumed at epoch {state['epoch']} ({state['seconds'] / 60:.1f} min trained)", flush=True)
    print(f"{sum(p.numel() for p in model.parameters())} parameters, receptive field "
          f"±{beat_net.receptive_field(args.blocks):.1f} s", flush=True)
    frames = int(WINDOW * beat_net.FPS)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    while state["seconds"] < args.minutes * 60:
        started = time.perf_counter()
        model.train()
        losses = []
        for _ in range(args.epoch_steps):
            batch = []
            for _ in range(args.batch):
                draw = rng.random()
                if draw < args.steady:
                    batch.append(steady_window(rng, frames))
                elif draw < args.steady + args.pop909:
                    batch.append(steady_window(rng, frames, pop909))
                else:
                    batch.append(window(train[int(rng.integers(len(train)))], rng, frames))
            x, y, mask, tempo = (torch.from_numpy(np.stack(parts)) for parts in zip(*batch, strict=True))
            beat_logits, tempo_logits = model(x)
            loss = (bce(beat_logits, y) * mask).sum() / mask.sum().clamp(min=1)
            tempo_loss = -(tempo * nn.functional.log_softmax(tempo_logits, dim=1)).sum() / tempo.sum().clamp(min=1)
            loss = loss + TEMPO_LOSS * tempo_loss
            if not torch.isfinite(loss):
                raise RuntimeError(f"epoch {state['epoch'] + 1}: the loss is {loss.item()}")
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            losses.append(loss.item())
        model.eval()
        weights = model.numpy_weights()
        figures = score(valid, weights)
        if steady_valid:
            steady = score(steady_valid, weights)
            figures = {**figures, "steady_acc1": steady["acc1"], "steady_acc2": steady["acc2"]}
        state["epoch"] += 1
        state["seconds"] += time.perf_counter() - started
        entry = {"epoch": state["epoch"], "minutes": round(state["seconds"] / 60, 2),
                 "train_loss": round(float(np.mean(losses)), 4), **figures}
        state["history"].append(entry)
        key = (figures["acc1"], figures["acc2"]) if not steady_valid else (
            (figures["acc1"] + figures["steady_acc1"]) / 2, (figures["acc2"] + figures["steady_acc2"]) / 2)
        if key > tuple(state["best"]):
            state["best"] = key
            np.savez(args.out / "weights.npz", **weights)
            entry["saved"] = True
        print(json.dumps(entry), flush=True)
        with open(args.out / "log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                    "state": json.dumps(state)}, checkpoint)
    print(f"done: best valid Acc1 {state['best'][0]:.1%}, Acc2 {state['best'][1]:.1%} -> {args.out / 'weights.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
