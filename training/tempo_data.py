"""Phrases with a known tempo, for choosing and measuring the tempo heard from playing.

Three sets, each split by work (valid is for choosing, test is reported once):
- `asap_openings`: the first seconds of ASAP's performances (rubato), the truth their annotated
  beats; split as training/heldout.py splits ASAP (the beat tracker learned from its train works);
- `pop909_openings`: the first seconds of POP909's MELODY tracks, a steady melody the way a player
  jams, the truth the file's tempo (only where one tempo holds through the opening) and its beat
  grid (the file's quarter notes); split as `clara corpus` splits POP909;
- `synthetic_phrases`: steady phrases at 40-240 bpm: two in five cells (dotted, swung, triplet
  and sixteenth beats, rests), two in five tunes (a quarter, two eighths, a half note or a dotted
  figure a beat or two, in accented bars of three or four, some beats a chord), one in five a
  pulse (a note or chord every beat, perhaps a soft one between); ~15 ms of human jitter and a
  known beat grid; a seeded draw, every tenth phrase valid, every tenth test.

A phrase is a dict: kind, name, work (what a split keeps together), split, bpm (the truth),
beats (seconds; the truth's grid, also past the opening where known), onsets, velocities,
pitches (times in seconds from the first note), and for POP909 phase_division 4 (its beats'
phase is known only to a sixteenth).
`second_phrase` cuts the phrase that follows an opening, for the second-phrase case.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import symusic

from clara_live.config import CorpusConfig
from clara_live.corpus import find_sources, split_of
from training.heldout import CORPUS, asap_rows, asap_splits, asap_work

SECONDS = 10.0
TOLERANCE = 0.04  # an estimate within 4 % of the truth is right (Acc1) ...
OCTAVES = (1.0, 2.0, 0.5, 3.0, 1 / 3)  # ... of the truth times one of these (Acc2, MIREX's octave-tolerant accuracy)
SYNTHETIC = 1000
# a beat's onsets, in beats: even, dotted, swung, sixteenths, their mixes, triplets
CELLS = ((0.0,), (0.0, 0.5), (0.0, 0.75), (0.0, 2 / 3), (0.0, 0.25, 0.5, 0.75), (0.0, 0.5, 0.75),
         (0.0, 0.25, 0.5), (0.0, 1 / 3, 2 / 3))
SHORTEST = 0.09  # seconds: the fastest notes a synthetic phrase plays (about 11 a second)
JITTER = 0.0075  # seconds: the onsets' standard deviation (about +-15 ms)


def hit(bpm: float, truth: float, octaves: tuple[float, ...] = (1.0,)) -> bool:
    """Whether bpm is within TOLERANCE of truth times one of `octaves` (Acc1 by default)."""
    return any(abs(bpm / (truth * m) - 1.0) <= TOLERANCE for m in octaves)


def _window(notes: list[tuple[float, int, int]], beats: list[float], start: float, seconds: float) -> dict:
    """The notes and beats from `start` for `seconds`, times from the first note in the window."""
    inside = [n for n in notes if start <= n[0] < start + seconds]
    if not inside:
        return {"onsets": [], "velocities": [], "pitches": [], "beats": []}
    first = inside[0][0]
    return {"onsets": [t - first for t, _, _ in inside], "velocities": [v for _, v, _ in inside],
            "pitches": [p for _, _, p in inside], "beats": [b - first for b in beats]}


def asap_openings(seconds: float = SECONDS, root: Path = CORPUS / "asap") -> list[dict]:
    """ASAP performances whose MIDI holds one tempo and whose opening has three annotated beats."""
    splits = asap_splits()
    out = []
    for row in asap_rows(root):
        score = symusic.Score.from_midi((root / row["midi_performance"]).read_bytes(), ttype="second")
        if len(score.tempos) > 1:
            continue
        notes = sorted((float(n.time), int(n.velocity), int(n.pitch)) for track in score.tracks for n in track.notes)
        if not notes:
            continue
        beats = [float(line.split("\t")[0]) for line in
                 (root / row["performance_annotations"]).read_text().splitlines() if line.strip()]
        phrase = _window(notes, beats, notes[0][0], seconds)
        opening = [b for b in phrase["beats"] if -1e-6 <= b <= seconds]
        if len(opening) < 3:
            continue
        out.append({"kind": "asap", "name": row["midi_performance"], "work": asap_work(row["folder"]),
                    "split": splits[asap_work(row["folder"])],
                    "bpm": 60.0 / statistics.median(np.diff(opening)), "notes": notes, "all_beats": beats, **phrase})
    return out


def pop909_openings(seconds: float = SECONDS, root: Path = CORPUS / "pop909", windows: int = 1,
                    every: float = 2 * SECONDS) -> list[dict]:
    """POP909 songs whose MELODY track's opening is at one tempo; the truth is that tempo. With
    `windows` > 1, also up to windows - 1 later phrases of each song, from the first note at or
    after each `every` seconds past the first (as a player may start anywhere), where one tempo
    holds through them and the phrase after (more steady phrases to learn from)."""
    config = CorpusConfig()
    out = []
    for source in find_sources([str(root)]):
        data = Path(source.location).read_bytes()
        score = symusic.Score.from_midi(data, ttype="second")
        melody = [t for t in score.tracks if t.name.strip().upper() == "MELODY"]
        if not melody or len(melody[0].notes) < 2:
            continue
        notes = sorted((float(n.time), int(n.velocity), int(n.pitch)) for n in melody[0].notes)
        tempos = [(float(t.time), float(t.qpm)) for t in score.tempos] or [(0.0, 120.0)]
        split = split_of(source.key, config)
        for k in range(windows):
            later = [n for n in notes if n[0] >= notes[0][0] + k * every]
            if len(later) < 2:
                break
            first = later[0][0]
            ruling = [q for t, q in tempos if t <= first] or [tempos[0][1]]
            during = [q for t, q in tempos if first < t < first + 2 * seconds] + [ruling[-1]]
            if max(during) / min(during) > 1.001:
                continue
            bpm = ruling[-1]
            # POP909's notes lie on a sixteenth grid offset from the file's ticks by the recording's start: the
            # grid is known from the first note, the beat's phase only to a sixteenth (phase_division 4)
            period = 60.0 / bpm
            beats = (first + period * np.arange(-1, int(3 * seconds / period) + 2)).tolist()
            phrase = _window(notes, beats, first, seconds)
            out.append({"kind": "pop909", "name": source.key if k == 0 else f"{source.key}@{k * every:g}s",
                        "work": source.key, "split": split, "bpm": bpm, "notes": notes, "start": first,
                        "all_beats": beats, "phase_division": 4, **phrase})
    return out


def synthetic_phrases(count: int = SYNTHETIC, seed: int = 0, seconds: float = 2 * SECONDS) -> list[dict]:
    """Steady phrases at a tempo drawn log-uniform in 40-240 bpm, `seconds` long (an opening and
    what follows), jittered, in turn of three kinds: cells (a beat's rhythm drawn from CELLS, a rest
    one beat in seven, accents on the beat), tunes (TUNE_FIGURES on the beats, mostly a quarter,
    in bars of three or four accented on their first beat, some beats a chord) and pulses."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        bpm = float(np.exp(rng.uniform(np.log(40.0), np.log(240.0))))
        notes = (_cells, _cells, _tune, _tune, _pulse)[i % 5](rng, 60.0 / bpm, seconds)
        notes.sort()
        period = 60.0 / bpm
        beats = (period * np.arange(int(seconds / period) + 2)).tolist()
        split = "valid" if i % 10 == 8 else "test" if i % 10 == 9 else "train"
        phrase = _window(notes, beats, notes[0][0], SECONDS)
        out.append({"kind": "synthetic", "name": f"synthetic-{seed}-{i}", "work": f"synthetic-{seed}-{i}",
                    "split": split, "bpm": bpm,
                    "notes": notes, "all_beats": beats, **phrase})
    return out


def _note(rng: np.random.Generator, beat: float, period: float, velocity: float) -> tuple[float, int, int]:
    return (beat * period + float(rng.normal(0.0, JITTER)), int(np.clip(rng.normal(velocity, 8.0), 1, 127)),
            int(rng.integers(55, 80)))


def _cells(rng: np.random.Generator, period: float, seconds: float) -> list[tuple[float, int, int]]:
    playable = [c for c in CELLS if all(b - a >= SHORTEST / period for a, b in zip(c, (*c[1:], 1.0), strict=True))]
    cells = playable or [(0.0,)]
    notes = []
    for beat in range(int(seconds / period) + 1):
        cell = cells[int(rng.integers(len(cells)))] if beat else (0.0,)
        if beat > 1 and rng.random() < 1 / 7:
            continue  # a rest
        notes += [_note(rng, beat + c, period, 84.0 if c == 0.0 else 66.0) for c in cell]
    return notes


TUNE_FIGURES = (((0.0,), 1, 0.45), ((0.0, 0.5), 1, 0.25), ((0.0,), 2, 0.15), ((0.0, 1.5), 2, 0.1),
                ((0.0, 0.5, 1.0), 2, 0.05))  # (onsets in beats, beats long, how often): a quarter,
# two eighths, a half note, a dotted quarter and an eighth, two eighths and a quarter


def _tune(rng: np.random.Generator, period: float, seconds: float) -> list[tuple[float, int, int]]:
    meter = 3 if rng.random() < 0.3 else 4
    figures = [f for f in TUNE_FIGURES if all(b - a >= SHORTEST / period for a, b in zip(f[0], f[0][1:], strict=False))]
    weights = np.array([f[2] for f in figures])
    chords = rng.random() < 0.3  # a chord on some beats, as a left hand would
    notes, beat = [], 0
    while beat * period < seconds:
        onsets, length, _ = figures[int(rng.choice(len(figures), p=weights / weights.sum()))]
        for c in onsets:
            velocity = 90.0 if (beat + c) % meter == 0 else 72.0 if c % 1 == 0 else 62.0
            notes.append(_note(rng, beat + c, period, velocity))
            if chords and c % 1 == 0 and rng.random() < 0.5:
                notes += [_note(rng, beat + c, period, 70.0) for _ in range(2)]
        beat += length
    return notes


def _pulse(rng: np.random.Generator, period: float, seconds: float) -> list[tuple[float, int, int]]:
    """A note or a chord on every beat (a left hand, a strummed pulse), in half the phrases with a
    soft note between each two (oom-pah)."""
    between = rng.random() < 0.5 and period / 2 >= SHORTEST
    chord = rng.random() < 0.5
    notes = []
    for beat in range(int(seconds / period) + 1):
        notes += [_note(rng, beat, period, 92.0) for _ in range(3 if chord else 1)]
        if between:
            notes.append(_note(rng, beat + 0.5, period, 50.0))
    return notes


def drifting_phrases(count: int = 200, seed: int = 5, seconds: float = 30.0) -> list[dict]:
    """Phrases whose tempo moves linearly by up to +-15 % over `seconds` (from 60-180 bpm): the
    beat a follower must keep up with. A cell a beat, a rest one beat in seven, ~+-15 ms jitter;
    every tenth valid, every tenth test. bpm is the starting tempo."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        start_bpm = float(np.exp(rng.uniform(np.log(60.0), np.log(180.0))))
        ratio = float(rng.uniform(0.85, 1.15))
        beats, t = [0.0], 0.0
        while t < seconds:
            t += 60.0 / (start_bpm * (1.0 + (ratio - 1.0) * t / seconds))
            beats.append(t)
        notes = []
        for k in range(len(beats) - 1):
            if k > 1 and rng.random() < 1 / 7:
                continue
            a, b = beats[k], beats[k + 1]
            for c in CELLS[int(rng.integers(3))] if k else (0.0,):
                notes.append((a + c * (b - a) + float(rng.normal(0.0, JITTER)), 84 if c == 0.0 else 66, 60))
        notes.sort()
        split = "valid" if i % 10 == 8 else "test" if i % 10 == 9 else "train"
        out.append({"kind": "drift", "name": f"drift-{seed}-{i}", "split": split, "bpm": start_bpm, "notes": notes,
                    "all_beats": beats, **_window(notes, beats, notes[0][0], SECONDS)})
    return out


def second_phrase(phrase: dict, seconds: float = SECONDS) -> dict | None:
    """The phrase after an opening: the next `seconds` of the same music (None when it holds
    fewer than four notes or, with annotated beats, fewer than three beats)."""
    notes = phrase["notes"]
    opening_end = phrase.get("start", notes[0][0]) + seconds
    later = [n for n in notes if n[0] >= opening_end]
    if len(later) < 4:
        return None
    window = _window(notes, phrase["all_beats"], later[0][0], seconds)
    if phrase["kind"] == "asap":
        inside = [b for b in window["beats"] if -1e-6 <= b <= seconds]
        if len(inside) < 3:
            return None
        return {**phrase, **window, "bpm": 60.0 / statistics.median(np.diff(inside))}
    return {**phrase, **window}


def all_sets(seconds: float = SECONDS, pop909_windows: int = 1) -> list[dict]:
    """Every set's phrases; POP909's train songs give up to `pop909_windows` phrases each (valid and
    test their openings only, as the benchmark hears them)."""
    pop909 = [p for p in pop909_openings(seconds, windows=pop909_windows)
              if p["split"] == "train" or "@" not in p["name"]]
    return asap_openings(seconds) + pop909 + synthetic_phrases()
