"""Tempo from the playing: the estimators of clara_live.live on three sets of phrases, side by side.

The sets (training/tempo_data.py, each split by work):
- asap: the first 10 s of ASAP's performances (rubato), the truth 60 / the median interval of
  the annotated beats in them;
- pop909: the first 10 s of POP909's MELODY tracks (a steady melody, the way a player jams), the
  truth the file's tempo;
- synthetic: steady phrases at 40-240 bpm with dotted, swung and triplet cells, rests and
  ~+-15 ms of jitter.
Each phrase goes to the estimator from the first guess 100 bpm, as `clara live --bpm 100` would.
The methods: `classic` (beat_classic, hand-made), `learned` (beat, the beat tracker trained on
ASAP's train works), `chosen` (beat_choice: both estimators' candidates ranked by weights learned
on the three sets' train works, chosen on valid; what `clara live` uses).

What it reports, per set, split and method:
- Acc1: the estimate within 4 % of the truth; Acc2: within 4 % of the truth x 1, 2, 1/2, 3 or 1/3
  (MIREX's octave-tolerant accuracy). No estimate counts as the first guess (the session keeps it);
- err: the median |estimate / truth - 1| where Acc1 holds (steady playing asks for an exact period);
- second: the second-phrase case: the next 10 s of the same music, heard from the method's own
  estimate of the opening (the first guess when it had none), as a session hears a second phrase;
  its Acc1 (second), and its Acc1 where the opening was heard right (2nd|1st: a second phrase
  refines the first);
- phase: where Acc1 holds, how far Clara's first answer note would be from the player's beat
  grid: she answers on the first estimated beat a beat after the phrase's last onset; the
  distance from that time to the nearest true beat (POP909: its sixteenth, as its files give the
  beat's phase only to a sixteenth), median ms and the share within 20 ms;
- ms: the estimate's cost, median and p99, wall clock (what a session waits, on a machine perhaps
  busy with other work) and the CPU time of its thread (cpu: what it costs, whatever the load).
`--follow`: the beat followed while the player plays (clara_live.beat.follow), on ASAP's
performances and on phrases whose tempo drifts by up to +-15 % over 30 s (tempo_data.drifting_phrases):
the follower is seeded with the true beat and tempo at 10 s, hears every onset as it comes, and
predicts each true beat from 10 to 30 s a fifth of a beat before it; the median error (ms) and the
share within 70 ms (MIREX's beat window), against the same grid not corrected (a fixed tempo);
`--follow-grid` measures every pair of FOLLOW_GRID's corrections, what ALPHA and BETA were
chosen from on valid. `--follow` also times the session's part in it per note (live/tempo.py's
TempoKeeper.onset, from a fresh session at 100 bpm through each phrase's first 30 s): the
follower's correction, and at some notes, while it is not locked, the phrase so far heard again.
Valid is for choosing, test is reported once (`--split test`).

    python benchmarks/tempo_from_playing.py                       # train and valid, every method
    python benchmarks/tempo_from_playing.py --split test --json out/tempo_from_playing.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clara_live.beat import choice as beat_choice  # noqa: E402
from clara_live.beat import follow  # noqa: E402
from clara_live.beat import net as beat_net  # noqa: E402
from clara_live.beat.classic import estimate_tempo_classic  # noqa: E402
from clara_live.beat.tracker import TempoEstimate, estimate_tempo  # noqa: E402
from clara_live.live.tempo import Grid, TempoKeeper  # noqa: E402
from training import tempo_data  # noqa: E402
from training.tempo_data import OCTAVES, hit  # noqa: E402

FIRST_GUESS = 100.0
PHASE_GOAL = 0.020  # seconds
FOLLOW_GRID = ((0.2, 0.35, 0.5, 0.7), (0.0, 0.05, 0.1, 0.2, 0.3))  # --follow-grid: phase x period corrections
GOALS = {"pop909": {"acc1": 0.80, "acc2": 0.98, "err": 0.005}, "synthetic": {"acc1": 0.95},
         "asap": {"acc1": 0.60, "acc2": 0.85}, "second": {"acc1": 0.97}}
Estimator = Callable[..., "TempoEstimate | None"]  # (onsets, velocities, pitches, first guess, heard before)


def estimators() -> dict[str, Estimator]:
    """The methods, each run once on a made-up phrase before anything is timed (the weights loaded,
    the decoder's state space built: ~40 ms at a first call, which a live session pays at its start)."""
    beat_net.load()
    beat_choice.load()
    methods = {"classic": lambda o, v, p, prior, heard=False: estimate_tempo_classic(o, v, prior_bpm=prior),
            "learned": lambda o, v, p, prior, heard=False: estimate_tempo(o, v, prior, pitches=p),
            "chosen": lambda o, v, p, prior, heard=False: beat_choice.estimate_tempo_chosen(
                o, v, prior, pitches=p, informed=heard)}
    pulse = [0.6 * k for k in range(12)]
    for estimate in methods.values():
        estimate(pulse, [80] * len(pulse), [60] * len(pulse), FIRST_GUESS)
    return methods



def answer_phase(estimate: TempoEstimate, phrase: dict) -> float:
    """Seconds from Clara's first answer note (the first estimated beat a beat after the last
    onset) to the nearest beat of the truth's grid (a sixteenth for POP909)."""
    period = estimate.period
    after = phrase["onsets"][-1] + period
    k = math.ceil((after - estimate.beat_time) / period - 1e-9)
    answer = estimate.beat_time + k * period
    truth_period = 60.0 / phrase["bpm"] / phrase.get("phase_division", 1)
    beats = np.asarray(phrase["beats"])
    anchor = float(beats[np.argmin(np.abs(beats - answer))])
    d = (answer - anchor) % truth_period
    return float(min(d, truth_period - d))


def run(phrase: dict, later: dict | None, name: str, estimate_of: Estimator, first_guess: float = FIRST_GUESS
        ) -> dict:
    """One method on one phrase and on `later`, the phrase after it (tempo_data.second_phrase)."""
    started, cpu = time.perf_counter(), time.thread_time()
    estimate = estimate_of(phrase["onsets"], phrase["velocities"], phrase["pitches"], first_guess)
    ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000
    bpm = estimate.bpm if estimate is not None else first_guess
    row = {"name": phrase["name"], "set": phrase["kind"], "split": phrase["split"], "method": name,
           "truth": round(phrase["bpm"], 3), "bpm": round(bpm, 3), "none": estimate is None,
           "acc1": hit(bpm, phrase["bpm"]), "acc2": hit(bpm, phrase["bpm"], OCTAVES), "ms": ms, "cpu_ms": cpu_ms,
           "phase_s": None, "second_acc1": None}
    if estimate is not None and row["acc1"]:
        row["phase_s"] = answer_phase(estimate, phrase)
    if later is not None:
        # as the session hears it: the opening's tempo, marked as heard before (not a default)
        again = estimate_of(later["onsets"], later["velocities"], later["pitches"], bpm, estimate is not None)
        row["second_acc1"] = hit(again.bpm if again is not None else bpm, later["bpm"])
    return row


def summary(rows: list[dict]) -> dict:
    if not rows:
        return {"phrases": 0}
    good = [r for r in rows if r["acc1"]]
    phases = [r["phase_s"] for r in good if r["phase_s"] is not None]
    seconds = [r["second_acc1"] for r in rows if r["second_acc1"] is not None]
    refined = [r["second_acc1"] for r in rows if r["second_acc1"] is not None and r["acc1"]]
    ms, cpu = [r["ms"] for r in rows], [r["cpu_ms"] for r in rows]
    return {"phrases": len(rows), "acc1": float(np.mean([r["acc1"] for r in rows])),
            "acc2": float(np.mean([r["acc2"] for r in rows])), "none": sum(r["none"] for r in rows),
            "err": float(np.median([abs(r["bpm"] / r["truth"] - 1) for r in good])) if good else None,
            "second_acc1": float(np.mean(seconds)) if seconds else None, "second_phrases": len(seconds),
            "second_after_right": float(np.mean(refined)) if refined else None,
            "phase_ms": float(np.median(phases) * 1000) if phases else None,
            "phase_within": float(np.mean(np.array(phases) <= PHASE_GOAL)) if phases else None,
            "ms_median": float(np.median(ms)), "ms_p99": float(np.percentile(ms, 99)),
            "cpu_median": float(np.median(cpu)), "cpu_p99": float(np.percentile(cpu, 99))}


def report(rows: list[dict], splits: tuple[str, ...]) -> dict:
    tables = {}
    print(f"{'set':<10}{'split':<7}{'method':<9}{'n':>5}{'Acc1':>8}{'Acc2':>8}{'err':>8}{'none':>6}"
          f"{'second':>8}{'2nd|1st':>8}{'phase':>8}{'<=20ms':>8}{'ms':>7}{'p99':>7}{'cpu':>7}{'p99':>7}")
    for kind in ("pop909", "synthetic", "asap"):
        for split in splits:
            for method in ("classic", "learned", "chosen"):
                s = summary([r for r in rows if r["set"] == kind and r["split"] == split and r["method"] == method])
                if not s["phrases"]:
                    continue
                tables[f"{kind}/{split}/{method}"] = s

                def f(v, fmt):
                    return "-" if v is None else format(v, fmt)
                print(f"{kind:<10}{split:<7}{method:<9}{s['phrases']:>5}{s['acc1']:>8.1%}{s['acc2']:>8.1%}"
                      f"{f(s['err'], '.3%'):>8}{s['none']:>6}{f(s['second_acc1'], '.1%'):>8}"
                      f"{f(s['second_after_right'], '.1%'):>8}"
                      f"{f(s['phase_ms'], '.1f'):>8}{f(s['phase_within'], '.0%'):>8}{s['ms_median']:>7.1f}"
                      f"{s['ms_p99']:>7.1f}{s['cpu_median']:>7.1f}{s['cpu_p99']:>7.1f}")
    return tables


def followed(phrase: dict, alpha: float, beta: float, start: float = 10.0, end: float = 30.0) -> np.ndarray | None:
    """The errors (seconds) of a follower's (its phase and period corrections alpha and beta;
    0 and 0: a fixed grid) predictions of the true beats from start to end; None where the music
    has too few beats there."""
    notes, beats = phrase["notes"], np.asarray(phrase["all_beats"])
    first = notes[0][0]
    seeding = beats[(beats >= first + start - 3.0) & (beats <= first + start)]
    targets = beats[(beats > first + start) & (beats < first + end)]
    if len(seeding) < 3 or len(targets) < 4:
        return None
    period = float(np.median(np.diff(seeding)))
    follower = follow.BeatFollower(alpha=alpha, beta=beta)
    follower.seed(TempoEstimate(60.0 / period, float(seeding[-1]), 1.0))
    onsets = [n[0] for n in notes if n[0] > first + start - 0.01]
    errors, j = [], 0
    for beat in targets:
        cut = beat - 0.2 * period
        while j < len(onsets) and onsets[j] < cut:
            follower.onset(onsets[j])
            j += 1
        errors.append(abs(follower.next_beat(cut) - beat))
    return np.array(errors)


def follow_report(splits: tuple[str, ...], grid: bool = False) -> dict:
    """The follower (ALPHA, BETA) against a fixed grid; with grid, every pair of FOLLOW_GRID's
    corrections instead (what ALPHA and BETA were chosen from, on valid)."""
    pairs = ([(a, b) for a in FOLLOW_GRID[0] for b in FOLLOW_GRID[1]] if grid
             else [(0.0, 0.0), (follow.ALPHA, follow.BETA)])
    out = {}
    print(f"{'set':<8}{'split':<7}{'alpha':>6}{'beta':>6}{'phrases':>8}{'beats':>7}{'median ms':>11}{'<=70ms':>8}")
    for kind, phrases in (("asap", tempo_data.asap_openings()), ("drift", tempo_data.drifting_phrases())):
        for split in splits:
            for alpha, beta in pairs:
                found = [followed(p, alpha, beta) for p in phrases if p["split"] == split]
                errors = [e for e in found if e is not None]
                if not errors:
                    continue
                e = np.concatenate(errors)
                out[f"{kind}/{split}/{alpha:g}/{beta:g}"] = {"phrases": len(errors), "beats": len(e),
                                                            "median_ms": float(np.median(e) * 1000),
                                                            "within_70ms": float(np.mean(e <= 0.07))}
                print(f"{kind:<8}{split:<7}{alpha:>6g}{beta:>6g}{len(errors):>8}{len(e):>7}"
                      f"{np.median(e) * 1000:>11.1f}{np.mean(e <= 0.07):>8.1%}")
            if not grid:
                cost = keeper_cost([p for p in phrases if p["split"] in splits])
                out[f"{kind}/cost"] = cost
                print(f"{kind} ({'+'.join(splits)}): TempoKeeper.onset per note, {cost['notes']} notes: median "
                      f"{cost['median_us']:.1f} us, p99 {cost['p99_us']:.1f} us, max {cost['max_us'] / 1000:.2f} ms; "
                      f"the {cost['heard_notes']} that heard the phrase so far: median "
                      f"{(cost['heard_median_us'] or 0) / 1000:.2f} ms, "
                      f"p99 {(cost['heard_p99_us'] or 0) / 1000:.2f} ms")
    return out


def keeper_cost(phrases: list[dict], seconds: float = 30.0) -> dict:
    """TempoKeeper.onset's cost per note (us), over every note of the phrases' first `seconds`,
    from a fresh session at FIRST_GUESS; and of the notes where it heard the phrase so far."""
    costs, heard = [], []
    for phrase in phrases:
        notes = [n for n in phrase["notes"] if n[0] < phrase["notes"][0][0] + seconds]
        keeper = TempoKeeper(Grid(0.0, 0.0, FIRST_GUESS, 12))
        keeper.begin_phrase(notes[0][0])
        for t, velocity, _ in notes:
            tried = keeper.tried
            started = time.perf_counter()
            keeper.onset(t, velocity)
            cost = (time.perf_counter() - started) * 1e6
            costs.append(cost)
            if keeper.tried != tried:
                heard.append(cost)
    c, h = np.array(costs), np.array(heard)
    return {"notes": len(c), "median_us": float(np.median(c)), "p99_us": float(np.percentile(c, 99)),
            "max_us": float(c.max()), "heard_notes": len(h),
            "heard_median_us": float(np.median(h)) if len(h) else None,
            "heard_p99_us": float(np.percentile(h, 99)) if len(h) else None}


def unheard(rows: list[dict]) -> None:
    """Where the hand-made estimator hears no pulse (the chosen tempo then gives none), how often
    the learned tracker alone was right."""
    classic = {(r["name"], r["split"]): r for r in rows if r["method"] == "classic"}
    for kind in ("pop909", "synthetic", "asap"):
        for split in sorted({r["split"] for r in rows}):
            alone = [r for r in rows if r["method"] == "learned" and r["set"] == kind and r["split"] == split
                     and classic.get((r["name"], r["split"]), {}).get("none")]
            if alone:
                print(f"{kind} {split}: the hand-made estimator hears no pulse in {len(alone)}; the learned "
                      f"tracker is right (Acc1) on {sum(r['acc1'] for r in alone)} of them")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("train", "valid", "test"), action="append",
                        help="which splits (repeatable; default train and valid: test is reported once)")
    parser.add_argument("--method", choices=("classic", "learned", "chosen"), action="append",
                        help="which methods (repeatable; default all three)")
    parser.add_argument("--sets", default="asap,pop909,synthetic", help="comma-separated: asap, pop909, synthetic")
    parser.add_argument("--follow", action="store_true", help="measure the beat follower instead")
    parser.add_argument("--follow-grid", action="store_true",
                        help="the follower at every pair of FOLLOW_GRID's corrections (choose on valid)")
    parser.add_argument("--json", type=Path, help="also write the rows and tables here")
    parser.add_argument("--first-guess", type=float, default=FIRST_GUESS,
                        help=f"the first guess, not a heard tempo (clara live --bpm; default {FIRST_GUESS:g})")
    args = parser.parse_args(argv)
    splits = tuple(args.split or ("train", "valid"))
    if args.follow or args.follow_grid:
        tables = follow_report(splits, grid=args.follow_grid)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"follow": tables}, indent=1))
        return 0
    chosen_sets = set(args.sets.split(","))
    loaders = {"asap": tempo_data.asap_openings, "pop909": tempo_data.pop909_openings,
               "synthetic": tempo_data.synthetic_phrases}
    phrases = [p for name, load in loaders.items() if name in chosen_sets for p in load() if p["split"] in splits]
    methods = {k: v for k, v in estimators().items() if k in (args.method or ("classic", "learned", "chosen"))}
    rows = [run(p, later, name, fn, args.first_guess) for p in phrases for later in [tempo_data.second_phrase(p)]
            for name, fn in methods.items()]
    print(f"tempo from the playing: first {tempo_data.SECONDS:g} s, first guess {args.first_guess:g} bpm "
          f"({platform.processor() or platform.machine()}, one thread)")
    tables = report(rows, splits)
    unheard(rows)
    print("goals: steady (pop909) Acc1 >= 80 %, Acc2 >= 98 %, err <= 0.5 %; synthetic Acc1 >= 95 %; "
          "asap (test) Acc1 >= 60 %, Acc2 >= 85 %; second phrase Acc1 >= 97 %; phase <= 20 ms; p99 <= 20 ms")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"first_guess": args.first_guess, "tables": tables, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
