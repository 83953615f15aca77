"""Bits per note of the real velocities and timing of held-out performances: the model's touch
head against a running-level baseline (issue 24).

What it measures: for each corpus of a corpus folder built by `clara corpus` (with SPLIT.touch), over
the split's pieces that carry touch, the bits the model's touch head spends on each known strike's
velocity (an integer 1..127) and onset offset (whole hundredths of a step, -50..49), fed the real
tokens and touch before it (as `clara evaluate` scores a file); and over the very same strikes, a
running-level baseline's: a normal distribution with the mean and spread of the piece's last 16
strikes (spread at least 1; 64 +- 20 and 0 +- 20 before two are known), integrated over each value
and mixed 99:1 with a uniform one so that a surprise costs at most log2(127 x 100) bits. The goal:
the model's velocity bits >= 20 % below the baseline's.

  python benchmarks/touch_bits.py --corpus ~/.cache/clara-live/corpora/mix-touch --model MODEL --split valid
  python benchmarks/touch_bits.py --corpus C --model M --split test --max-pieces 40 --json out.json
  python benchmarks/touch_bits.py --corpus C --carried      # what each corpus carries (every split; no model)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from clara_live.corpus.built import BuiltCorpus  # noqa: E402
from clara_live.model import load_model  # noqa: E402
from clara_live.model.evaluate import score  # noqa: E402

HISTORY = 16  # strikes the baseline's level and spread are taken over
UNIFORM = 0.01  # the baseline's share of a uniform distribution over the values


def running_level_bits(values: np.ndarray, low: int, high: int, prior: tuple[float, float]) -> np.ndarray:
    """Bits of each value (integers low..high) under a normal distribution with the mean and spread
    of the HISTORY values before it (spread >= 1; `prior` before two are known), integrated over the
    value's unit interval, renormalised over low..high and mixed with a uniform distribution."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if not n:
        return np.zeros(0)
    padded = np.concatenate([[0.0], np.cumsum(values)]), np.concatenate([[0.0], np.cumsum(values ** 2)])
    first = np.maximum(np.arange(n) - HISTORY, 0)
    count = np.arange(n) - first
    total = padded[0][np.arange(n)] - padded[0][first]
    squares = padded[1][np.arange(n)] - padded[1][first]
    known = count >= 2
    mean = np.where(known, total / np.maximum(count, 1), prior[0])
    variance = np.maximum(squares / np.maximum(count, 1) - (total / np.maximum(count, 1)) ** 2, 0.0)
    spread = np.where(known, np.maximum(np.sqrt(variance), 1.0), prior[1])
    edges = torch.from_numpy(np.arange(low, high + 2) - 0.5)
    cdf = 0.5 * (1 + torch.erf((edges[None, :] - torch.from_numpy(mean)[:, None])
                               / (torch.from_numpy(spread)[:, None] * math.sqrt(2))))
    mass = (cdf[:, 1:] - cdf[:, :-1]).numpy()
    sums = mass.sum(axis=1, keepdims=True)
    mass = np.where(sums > 0, mass / np.where(sums > 0, sums, 1), 1.0 / (high - low + 1))
    p = (1 - UNIFORM) * mass[np.arange(n), values.astype(int) - low] + UNIFORM / (high - low + 1)
    return -np.log2(p)


def baseline(pieces: list[np.ndarray]) -> dict:
    """The running-level baseline's mean bits per known strike over the pieces (each on its own)."""
    velocity, offset, strikes = 0.0, 0.0, 0
    for piece in pieces:
        known = piece[1:][piece[1:, 1] > 0]  # the first token is never predicted, as in score()
        velocity += running_level_bits(known[:, 1], 1, 127, (64.0, 20.0)).sum()
        offset += running_level_bits(known[:, 2], -50, 49, (0.0, 20.0)).sum()
        strikes += len(known)
    return {"velocity_bits": velocity / strikes if strikes else float("nan"),
            "offset_bits": offset / strikes if strikes else float("nan"), "strikes": strikes}


def measure(corpus: Path, model_dir: Path, split: str, max_pieces: int = 0) -> dict:
    built = BuiltCorpus(corpus)
    loaded = load_model(model_dir)
    if loaded.model.touch is None:
        raise SystemExit(f"{model_dir}: this model learned no touch (model.touch is false)")
    pieces = built.pieces(split, loaded.vocabulary, touch=True)
    entries = sorted((p for p in built.manifest["pieces"] if p["split"] == split), key=lambda p: p["line"])
    by_corpus: dict[str, list[np.ndarray]] = defaultdict(list)
    for entry, piece in zip(entries, pieces, strict=True):
        if entry.get("touch"):
            by_corpus[entry["corpus"] or "(files)"].append(piece)
    rows = {}
    for name, group in sorted(by_corpus.items()):
        group = group[:max_pieces] if max_pieces else group
        started = time.time()
        model = score(loaded.model, group)
        base = baseline(group)
        if model["strikes"] != base["strikes"]:
            raise AssertionError(f"{name}: the model scored {model['strikes']} strikes, the baseline {base['strikes']}")
        rows[name] = {"pieces": len(group), "strikes": base["strikes"],
                      "model_velocity_bits": model["velocity_bits"], "baseline_velocity_bits": base["velocity_bits"],
                      "model_offset_bits": model["offset_bits"], "baseline_offset_bits": base["offset_bits"],
                      "velocity_gain": 1 - model["velocity_bits"] / base["velocity_bits"],
                      "offset_gain": 1 - model["offset_bits"] / base["offset_bits"],
                      "seconds": round(time.time() - started, 1)}
    return {"corpus": str(corpus), "model": str(model_dir), "split": split, "corpora": rows}


def carried(corpus: Path) -> dict:
    """What each corpus's touch files hold, over every split: pieces and notes with touch, velocity
    mean and spread, the median spread within a piece, distinct velocities, the offsets' spread
    (steps) and the share of onsets exactly on a step."""
    built = BuiltCorpus(corpus)
    lines = {split: (corpus / f"{split}.touch").read_text(encoding="utf-8").splitlines()
             for split in ("train", "valid", "test")}
    found: dict[str, list[np.ndarray]] = defaultdict(list)
    for piece in built.manifest["pieces"]:
        line = lines[piece["split"]][piece["line"]]
        if line.strip() != "-":
            found[piece["corpus"] or "(files)"].append(np.array([t.split(":") for t in line.split()], dtype=int))
    rows = {}
    for name, pieces in sorted(found.items()):
        both = np.concatenate(pieces)
        rows[name] = {"pieces": len(pieces), "notes": len(both), "velocity_mean": float(both[:, 0].mean()),
                      "velocity_sd": float(both[:, 0].std()),
                      "median_piece_sd": float(np.median([p[:, 0].std() for p in pieces])),
                      "distinct": len(set(both[:, 0].tolist())), "offset_sd_steps": float(both[:, 1].std() / 100),
                      "on_step": float(np.mean(both[:, 1] == 0))}
    return rows


def report(result: dict) -> str:
    lines = [f"{result['model']} on {result['corpus']} ({result['split']}): bits per strike, model / running level",
             f"{'corpus':<16}{'pieces':>7}{'strikes':>9}{'velocity':>18}{'gain':>7}{'offset':>18}{'gain':>7}"]
    for name, r in result["corpora"].items():
        lines.append(f"{name:<16}{r['pieces']:>7}{r['strikes']:>9}"
                     f"{r['model_velocity_bits']:>9.3f} / {r['baseline_velocity_bits']:<6.3f}{r['velocity_gain']:>7.1%}"
                     f"{r['model_offset_bits']:>9.3f} / {r['baseline_offset_bits']:<6.3f}{r['offset_gain']:>7.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus folder built by clara corpus")
    parser.add_argument("--model", type=Path, help="a model folder that learned touch")
    parser.add_argument("--carried", action="store_true", help="what each corpus carries (no model)")
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--max-pieces", type=int, default=0, help="at most this many pieces a corpus (0: all)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.carried:
        result = carried(args.corpus)
        for name, r in result.items():
            print(f"{name:<16} {r['pieces']:5d} pieces {r['notes']:9d} notes  velocity {r['velocity_mean']:.1f} / "
                  f"{r['velocity_sd']:.1f} (median in a piece {r['median_piece_sd']:.1f}), {r['distinct']} distinct; "
                  f"offset sd {r['offset_sd_steps']:.3f} steps, {r['on_step']:.1%} on a step")
    elif args.model is None:
        parser.error("--model is needed (or --carried)")
    else:
        result = measure(args.corpus, args.model, args.split, args.max_pieces)
        print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
