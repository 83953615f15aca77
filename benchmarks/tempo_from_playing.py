"""Tempo from the playing: clara_live.live.beat on the openings of ASAP's performances.

What it measures: for each performance in ../shared/corpus/asap (metadata.csv), the notes
(onsets, velocities, pitches) of its first 10 seconds (from its first note; the performance
MIDI's quarter notes are converted to seconds by its tempo, checked to be a single tempo) go to
the estimator with the first guess 100 bpm, as `clara live --bpm 100` would: `--method
learned` (the default) is `estimate_tempo` (the learned beat tracker, trained on ASAP's train
works by training/beat_tracker.py), `classic` is `estimate_tempo_classic` (the hand-made one it
replaced), `both` measures the two on the same openings, one table each. The reference is the annotation file's
beats (`*_annotations.txt`, one line a beat) in the same 10 seconds: 60 / their median
inter-beat interval. Three or more annotated beats are needed, else the performance is skipped
(and counted).
- Acc1: the estimate within 4 % of the reference; Acc2: within 4 % of the reference times 1, 2,
  1/2, 3 or 1/3 (the usual octave-tolerant accuracy of MIREX tempo estimation).
- An estimate of None (too little evidence) counts as the first guess, which the live session
  then keeps.
- Beat phase: where Acc1 holds, the median distance from each annotated beat to the nearest
  estimated beat, in beats (0 on the beat, 0.5 between two beats); the median over performances.
- Baseline: always the first guess, 100 bpm.
- Misses: the Acc1 misses by kind (an octave, a 3:2, no estimate, other); the annotated tempi
  outside MIN_BPM..MAX_BPM, which no estimate can reach.
Splits by work, from training/heldout.py (`asap_splits`): the learned tracker was trained on
the train works and its epoch and constants chosen on the valid works; the classic method's
constants were tuned on train and valid; test is reported once, and all together.

Run it from the repository root:
    python benchmarks/tempo_from_playing.py
    python benchmarks/tempo_from_playing.py --method both --json out/tempo_from_playing.json
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clara_live.live import beat_net  # noqa: E402
from clara_live.live.beat import TempoEstimate, estimate_tempo
from clara_live.live.beat_classic import estimate_tempo_classic  # noqa: E402
from clara_live.live.tempo import MAX_BPM, MIN_BPM  # noqa: E402
from training.heldout import CORPUS, asap_rows, asap_splits, asap_work  # noqa: E402

ROOT = CORPUS / "asap"
FIRST_GUESS = 100.0
TOLERANCE = 0.04
OCTAVES = (1.0, 2.0, 0.5, 3.0, 1 / 3)
GOALS = {"acc1": 0.80, "acc2": 0.95}


def opening(midi: Path, annotations: Path, seconds: float
            ) -> tuple[list[float], list[int], list[int], list[float]] | None:
    """(onsets, velocities, pitches, annotated beats) of a performance's first `seconds` from its
    first note, times in seconds from that note; None for a file with more than one tempo."""
    data = midi.read_bytes()
    if len(symusic.Score.from_midi(data, ttype="tick").tempos) > 1:
        return None
    score = symusic.Score.from_midi(data, ttype="second")
    notes = sorted((float(n.time), int(n.velocity), int(n.pitch)) for track in score.tracks for n in track.notes)
    if not notes:
        return None
    first = notes[0][0]
    window = [(t - first, v, p) for t, v, p in notes if t < first + seconds]
    beats = []
    for line in annotations.read_text().splitlines():
        if line.strip():
            b = float(line.split("\t")[0]) - first
            if -1e-6 <= b <= seconds:
                beats.append(b)
    return [t for t, _, _ in window], [v for _, v, _ in window], [p for _, _, p in window], beats


def phase_error(estimate: TempoEstimate, beats: list[float], reference_bpm: float) -> float:
    """Median distance from the annotated beats to the nearest estimated beat, in reference beats."""
    b = np.asarray(beats)
    offset = (b - estimate.beat_time) / estimate.period
    distance = np.abs(offset - np.round(offset)) * estimate.period
    return float(np.median(distance) * reference_bpm / 60.0)


def hit(bpm: float, reference: float, octaves: tuple[float, ...]) -> bool:
    return any(abs(bpm / (reference * m) - 1.0) <= TOLERANCE for m in octaves)


def estimator(method: str):
    """(onsets, velocities, pitches) -> TempoEstimate | None, with the first guess."""
    if method == "classic":
        return lambda onsets, velocities, pitches: estimate_tempo_classic(onsets, velocities, prior_bpm=FIRST_GUESS)
    beat_net.load()  # once, before anything is timed
    return lambda onsets, velocities, pitches: estimate_tempo(onsets, velocities, FIRST_GUESS, pitches=pitches)


def measure(seconds: float, methods: tuple[str, ...] = ("learned",)) -> tuple[dict[str, list[dict]], dict]:
    splits = asap_splits()
    estimators = {m: estimator(m) for m in methods}
    rows = asap_rows(ROOT)
    results: dict[str, list[dict]] = {m: [] for m in methods}
    skipped = {"several_tempi": 0, "few_beats": 0}
    for row in rows:
        found = opening(ROOT / row["midi_performance"], ROOT / row["performance_annotations"], seconds)
        if found is None:
            skipped["several_tempi"] += 1
            continue
        onsets, velocities, pitches, beats = found
        if len(beats) < 3:
            skipped["few_beats"] += 1
            continue
        reference = 60.0 / statistics.median(np.diff(beats))
        for method, estimate_of in estimators.items():
            started = time.perf_counter()
            estimate = estimate_of(onsets, velocities, pitches)
            seconds_taken = time.perf_counter() - started
            results[method].append(scored(row, splits, reference, estimate, beats, seconds_taken))
    return results, skipped


def scored(row: dict, splits: dict, reference: float, estimate: TempoEstimate | None, beats: list[float],
           seconds_taken: float) -> dict:
    """One performance's result row."""
    bpm = estimate.bpm if estimate is not None else FIRST_GUESS
    acc1 = hit(bpm, reference, (1.0,))
    return {"performance": row["midi_performance"], "split": splits[asap_work(row["folder"])],
            "reference_bpm": round(reference, 2), "estimate_bpm": round(bpm, 2),
            "confidence": None if estimate is None else round(estimate.confidence, 3),
            "acc1": acc1, "acc2": hit(bpm, reference, OCTAVES),
            "baseline_acc1": hit(FIRST_GUESS, reference, (1.0,)),
            "baseline_acc2": hit(FIRST_GUESS, reference, OCTAVES),
            "phase_error": phase_error(estimate, beats, reference) if estimate is not None and acc1 else None,
            "ms": seconds_taken * 1000}


def summary(results: list[dict]) -> dict:
    if not results:
        return {"performances": 0}
    phases = [r["phase_error"] for r in results if r["phase_error"] is not None]
    return {"performances": len(results),
            "acc1": float(np.mean([r["acc1"] for r in results])),
            "acc2": float(np.mean([r["acc2"] for r in results])),
            "baseline_acc1": float(np.mean([r["baseline_acc1"] for r in results])),
            "baseline_acc2": float(np.mean([r["baseline_acc2"] for r in results])),
            "no_estimate": sum(r["confidence"] is None for r in results),
            "phase_error_beats": float(np.median(phases)) if phases else None,
            "ms_median": float(np.median([r["ms"] for r in results])),
            "ms_max": float(np.max([r["ms"] for r in results]))}


def misses(results: list[dict]) -> dict[str, int]:
    """The Acc1 misses by the ratio of estimate to reference: an octave (x2, x1/2, x3, x1/3), a
    3:2 or 2:3 (duple heard as triple, or the reverse), no estimate, or anything else."""
    out = {"octave": 0, "3:2 or 2:3": 0, "none": 0, "other": 0}
    for r in results:
        if r["acc1"]:
            continue
        if r["confidence"] is None:
            out["none"] += 1
        elif r["acc2"]:
            out["octave"] += 1
        elif hit(r["estimate_bpm"], r["reference_bpm"], (1.5, 2 / 3)):
            out["3:2 or 2:3"] += 1
        else:
            out["other"] += 1
    return out


def report(method: str, results: list[dict], seconds: float, skipped: dict) -> dict:
    """Print one method's table and misses; return the table."""
    groups = {"train": [r for r in results if r["split"] == "train"],
              "valid": [r for r in results if r["split"] == "valid"],
              "train+valid": [r for r in results if r["split"] in ("train", "valid")],
              "test": [r for r in results if r["split"] == "test"], "all": results}
    table = {name: summary(rows) for name, rows in groups.items()}
    print(f"tempo from the playing ({method}): first {seconds:g} s of each ASAP performance, first guess "
          f"{FIRST_GUESS:g} bpm; skipped {skipped}")
    print(f"{'split':<12}{'perf':>6}{'Acc1':>8}{'Acc2':>8}{'base1':>8}{'base2':>8}{'none':>6}{'phase':>8}"
          f"{'ms':>7}{'max':>7}")
    for name, s in table.items():
        if not s["performances"]:
            continue
        phase = "-" if s["phase_error_beats"] is None else f"{s['phase_error_beats']:.3f}"
        print(f"{name:<12}{s['performances']:>6}{s['acc1']:>8.1%}{s['acc2']:>8.1%}{s['baseline_acc1']:>8.1%}"
              f"{s['baseline_acc2']:>8.1%}{s['no_estimate']:>6}{phase:>8}{s['ms_median']:>7.1f}{s['ms_max']:>7.1f}")
    for name in ("train+valid", "test"):
        print(f"{name} Acc1 misses: {misses(groups[name])}")
        unsure = [r["reference_bpm"] for r in groups[name] if r["confidence"] is None]
        if unsure:
            print(f"{name} no estimate: {len(unsure)}, annotated {min(unsure):.0f}-{max(unsure):.0f} bpm, "
                  f"median {statistics.median(unsure):.0f}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each opening (default 10)")
    parser.add_argument("--method", choices=("learned", "classic", "both"), default="learned",
                        help="the estimator (default learned; both: the two on the same openings)")
    parser.add_argument("--json", type=Path, help="write the per-performance results and the tables here")
    args = parser.parse_args(argv)
    methods = ("classic", "learned") if args.method == "both" else (args.method,)
    results, skipped = measure(args.seconds, methods)
    tables = {method: report(method, results[method], args.seconds, skipped) for method in methods}
    reference = np.array([r["reference_bpm"] for r in results[methods[0]]])
    outside = int(np.sum((reference < MIN_BPM * (1 - TOLERANCE)) | (reference > MAX_BPM * (1 + TOLERANCE))))
    print(f"{outside} annotated tempi outside {MIN_BPM:g}-{MAX_BPM:g} bpm (out of any estimate's reach)")
    near = float(np.mean(np.abs(np.log2(reference / FIRST_GUESS)) <= 0.5)) if len(reference) else 0.0
    if len(reference):
        print(f"annotated tempi {reference.min():.0f}-{reference.max():.0f} bpm; {near:.0%} within a factor "
              f"sqrt(2) of the first guess")
    print(f"goals: Acc1 >= {GOALS['acc1']:.0%}, Acc2 >= {GOALS['acc2']:.0%} (phase: median beats off, "
          "where Acc1 holds; base: always the first guess)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": args.seconds, "first_guess": FIRST_GUESS, "goals": GOALS,
                                         "skipped": skipped, "tables": tables, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
