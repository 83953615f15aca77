"""Accompaniment (issue 26): held-out songs' melodies played into `clara live --mode accompany`.

Each song of the model's held-out split (its splits.json, else the joint model's: POP909's or, with
`--corpus openscore-lieder`, the Lieder's valid or test songs) gives its melody (POP909's MELODY track,
a Lied's voice) as the player's part, from its first note for `--seconds`, played through the live
session, worker and the scheduler's queue on an injected clock (clara_live/live/rehearsal.py:accompany),
at the song's tempo as the first guess (a Lied's score: its first tempo mark, 120 where it has none).
Clara's notes (what the scheduler sent on her channel) are compared with the song's own accompaniment
over the same window (POP909's PIANO track, a Lied's piano part):

  pc_cosine     pitch-class cosine with the melody (durations weighted), hers and the real one's
  on_grid       share of her onsets within 20 ms of the song's grid (its tempo, the phase its melody's
                onsets lie on): its sixteenths (on_16th) and the model's steps, twelve a beat (on_step;
                20 ms either side of a 50 ms step is a weak test)
  length        her notes' median length in beats, and the real part's
  gap           median semitones from the lowest melody note sounding at an onset down to it
  loop_share    share of onset sets in runs of 4 or more identical ones
  density       onset sets a second, hers over the real accompaniment's (density_with_bridge: over
                the PIANO and BRIDGE tracks', what a chamber corpus gives its p part under the melody)
  doubling      notes struck on a pitch the melody sounds at that moment (goal 0), and the share
                struck on one of its pitch classes (octave doubling, reported)
  late          her note-ons scheduled more than 20 ms after their time had come (sent late: live, at
                once), and the latest (late_max_s)
  latency       note in -> model read and stale plan dropped (p50, p99 ms: wall time of the computing,
                latency_cpu: the worker thread's CPU time, without the waits for a core a loaded machine
                adds), and note in -> her next note scheduled (first_ms)

Piano rolls of melody, real accompaniment and hers for the first --rolls songs.

  python benchmarks/accompaniment.py --split valid --limit 8 --seconds 30 (rolls and JSON in out/accompaniment/)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import answer_quality  # noqa: E402  (the answer benchmark's onset sets, with this benchmark's spread)

from clara_live.config import load_config  # noqa: E402
from clara_live.engine import build_engine  # noqa: E402
from clara_live.live.rehearsal import accompany  # noqa: E402
from clara_live.live.session import Session  # noqa: E402
from clara_live.model import load_model  # noqa: E402
from clara_live.music.notes import StepNote  # noqa: E402
from clara_live.piano_roll import draw_piano_roll  # noqa: E402
from clara_live.sampling.sampler import Sampler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
CHORD_SPREAD = 0.03  # seconds: onsets this close are one set
LOOP = 4
T0 = 1.0  # the melody's first note, seconds on the injected clock


class Note(NamedTuple):
    start: float
    end: float
    pitch: int
    velocity: int = 80


def songs(model: Path, split: str, corpus: str = "pop909") -> list[Path]:
    """The split's songs of a corpus (pop909, openscore-lieder): the model's held-out ones (its splits.json),
    or where it holds none of that corpus (a piano model never saw a Lied), the joint model's: the corpus
    split is by a stable hash of the work, and the joint corpus's POP909 valid and test songs are the piano
    model's."""
    for splits in (model / "splits.json", REPO / "trained_models" / "clara-joint" / "splits.json"):
        if splits.exists():
            held = [s for s in json.loads(splits.read_text())[split] if s["corpus"] == corpus]
            if held:
                return [CORPUS / corpus / s["path"] for s in held]
    return []


def read_lied(path: Path, seconds: float) -> tuple[list[Note], list[Note], float, list[Note]] | None:
    """A Lied's voice (the melody) and its piano part from the voice's first note for `seconds`, in seconds at
    the score's first tempo (120 where it marks none), as read_song gives a song's; through the corpus's read
    cache (a score is parsed once: music21 takes up to 10 s)."""
    from clara_live.corpus.read_cache import read_piece
    from clara_live.errors import InputError
    from clara_live.music.notes import PIANO, VIOLIN

    try:
        piece = read_piece(str(path), True, Path.home() / ".cache" / "clara-live" / "corpus")
    except InputError:
        return None
    beat = 60.0 / piece.bpm
    voice = [n for n in piece.notes if n.family == VIOLIN]
    if len(voice) < 8:
        return None
    first = min(n.start for n in voice)

    def window(family: str) -> list[Note]:
        return sorted(Note((n.start - first) * beat, (n.end - first) * beat, n.pitch, n.velocity)
                      for n in piece.notes if n.family == family and 0 <= (n.start - first) * beat < seconds)

    melody, real = window(VIOLIN), window(PIANO)
    return (melody, real, piece.bpm, []) if len(real) >= 8 else None  # a song whose piano waits past the window


def read_song(path: Path, seconds: float) -> tuple[list[Note], list[Note], float, list[Note]] | None:
    """(melody, piano) from the melody's first note for `seconds`, times from that note; the song's tempo;
    and its BRIDGE (the second melody; with the piano, what a chamber corpus gives the p part)."""
    import symusic

    score = symusic.Score.from_midi(path.read_bytes(), ttype="second")
    tracks = {t.name.strip().upper(): t for t in score.tracks}
    if "MELODY" not in tracks or "PIANO" not in tracks or len(tracks["MELODY"].notes) < 8:
        return None
    first = min(float(n.time) for n in tracks["MELODY"].notes)

    def window(track) -> list[Note]:
        return sorted(Note(float(n.time) - first, float(n.time + n.duration) - first, int(n.pitch), int(n.velocity))
                      for n in track.notes if first <= float(n.time) < first + seconds)

    bpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    bridge = window(tracks["BRIDGE"]) if "BRIDGE" in tracks else []
    return window(tracks["MELODY"]), window(tracks["PIANO"]), bpm, bridge


def play(loaded, engine, config, melody: list[Note], seed: int):
    """Her notes (seconds from the melody's first note, as sent), the accompanist after the song is played
    in, and how late each note-on scheduled for a time already past was (seconds)."""
    sampler = Sampler(engine, loaded.vocabulary, loaded.codec, config.sampling, seed=seed)
    session = Session(config.live, sampler.vocab, config.sampling, 0.0, config.sampling.beats_per_bar)
    events = [(T0 + n.start, (0x90, n.pitch, n.velocity)) for n in melody]
    events += [(T0 + max(n.end, n.start + 0.01), (0x80, n.pitch, 0)) for n in melody]
    sent, worker, late = accompany(session, sampler, events)
    opened: dict[int, tuple[float, int]] = {}
    notes = []
    for at, message in sent:
        kind, pitch = message[0] & 0xF0, message[1]
        if pitch in opened and (kind == 0x80 or kind == 0x90):
            start, velocity = opened.pop(pitch)
            notes.append(Note(start - T0, at - T0, pitch, velocity))
        if kind == 0x90 and message[2] > 0:
            opened[pitch] = (at, message[2])
    return sorted(notes), worker.accompanist, late


def onset_sets(notes: list[Note]) -> list[tuple[float, frozenset[int]]]:
    return answer_quality.onset_sets(notes, CHORD_SPREAD)


def loop_share(notes: list[Note]) -> float:
    sets = [s for _, s in onset_sets(notes)]
    if not sets:
        return 0.0
    runs, n = [], 1
    for a, b in zip(sets, sets[1:], strict=False):
        if a == b:
            n += 1
        else:
            runs.append(n)
            n = 1
    runs.append(n)
    return sum(r for r in runs if r >= LOOP) / len(sets)


def pc_cosine(a: list[Note], b: list[Note]) -> float:
    def hist(notes):
        h = np.zeros(12)
        for n in notes:
            h[n.pitch % 12] += max(n.end - n.start, 0.01)
        return h
    ha, hb = hist(a), hist(b)
    return float(ha @ hb / (np.linalg.norm(ha) * np.linalg.norm(hb) + 1e-12))


def density(notes: list[Note], real: list[Note]) -> float:
    """Her onset sets over the real part's, in the same window."""
    sets, real_sets = onset_sets(notes), onset_sets(real)
    return len(sets) / len(real_sets) if real_sets else float("nan")


def measure(notes: list[Note], melody: list[Note], real: list[Note], bpm: float, seconds: float) -> dict:
    beat = 60.0 / bpm
    out: dict[str, float] = {"notes": len(notes), "pc_cosine": pc_cosine(notes, melody),
                             "pc_cosine_real": pc_cosine(real, melody), "loop_share": loop_share(notes),
                             "loop_share_real": loop_share(real)}
    out["density"] = density(notes, real)
    out["length"] = float(np.median([(n.end - n.start) / beat for n in notes])) if notes else float("nan")
    out["length_real"] = float(np.median([(n.end - n.start) / beat for n in real])) if real else float("nan")
    sixteenth = beat / 4  # the song's grid: its melody's onsets lie on sixteenths, their phase the median's
    phase = float(np.median([(m.start / sixteenth - round(m.start / sixteenth)) * sixteenth for m in melody]))
    for name, div in (("on_16th", 4), ("on_step", 12)):
        step = beat / div
        offs = [abs(((n.start - phase) / step) - round((n.start - phase) / step)) * step for n in notes]
        out[name] = float(np.mean([o <= 0.02 for o in offs])) if offs else float("nan")
    gaps, unison, octave = [], 0, 0
    for n in notes:
        sounding = [m.pitch for m in melody if m.start <= n.start < m.end]
        if sounding:
            gaps.append(min(sounding) - n.pitch)
            unison += n.pitch in sounding
            octave += any((p - n.pitch) % 12 == 0 for p in sounding)
    real_gaps = [min(m.pitch for m in melody if m.start <= n.start < m.end) - n.pitch for n in real
                 if any(m.start <= n.start < m.end for m in melody)]
    out["gap"] = float(np.median(gaps)) if gaps else float("nan")
    out["gap_real"] = float(np.median(real_gaps)) if real_gaps else float("nan")
    out["doubling"] = unison
    out["octave_share"] = octave / len(notes) if notes else 0.0
    return out


def roll(path: Path, title: str, parts: list[tuple[str, list[Note]]], bpm: float, sf: int) -> None:
    def steps(notes):
        per = 60.0 / bpm / sf
        return [StepNote(round(n.start / per), max(round(n.start / per) + 1, round(n.end / per)), n.pitch,
                         n.velocity) for n in notes]
    draw_piano_roll([(label, steps(notes)) for label, notes in parts], sf, path, bpm=bpm, title=title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "trained_models" / "clara-notewise"))
    parser.add_argument("--split", choices=["valid", "test"], default="valid")
    parser.add_argument("--corpus", choices=["pop909", "openscore-lieder"], default="pop909",
                        help="the songs: POP909's MELODY over its PIANO, or a Lied's voice over its piano")
    parser.add_argument("--limit", type=int, default=8, help="songs (0: all)")
    parser.add_argument("--seconds", type=float, default=30.0, help="of each melody, from its first note")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rolls", type=int, default=3, help="piano rolls of the first this many songs")
    parser.add_argument("--out", default=str(REPO / "out" / "accompaniment"), help="rolls and the JSON (git-ignored)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model)
    base = ["live.mode=accompany", *args.set]
    config = load_config(overrides=base)
    engine = build_engine(loaded.model, config.inference)
    rows, costs, cpu, firsts = [], [], [], []
    paths = songs(Path(args.model), args.split, args.corpus)
    read = read_lied if args.corpus == "openscore-lieder" else read_song
    name = "Lied" if args.corpus == "openscore-lieder" else "POP909"
    for path in paths[:args.limit or None]:
        song = read(path, args.seconds)
        if song is None:
            continue
        melody, real, bpm, bridge = song
        config = load_config(overrides=[*base, f"live.bpm={min(max(bpm, 30.0), 300.0):.3f}"])
        started = time.perf_counter()
        notes, accompanist, late = play(loaded, engine, config, melody, args.seed)
        row = {"song": path.name, "bpm": bpm, **measure(notes, melody, real, bpm, args.seconds),
               "density_with_bridge": density(notes, sorted(real + bridge)),
               "late": sum(1 for s in late if s > 0.02), "late_max_s": max(late, default=0.0),
               "wall_s": time.perf_counter() - started}
        costs += accompanist.costs
        cpu += accompanist.cpu_costs
        firsts += accompanist.first_costs
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), file=sys.stderr)
        if len(rows) <= args.rolls:
            roll(out / f"{path.stem}.png", f"{name} {path.stem}: melody, real accompaniment, Clara's ({args.split})",
                 [("melody", melody), ("real (PIANO)", real), ("Clara", notes)], bpm, loaded.codec.sample_freq)
    keys = [k for k in rows[0] if k not in ("song",)] if rows else []
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    summary["doubling"] = int(sum(r["doubling"] for r in rows))
    summary["late"] = int(sum(r["late"] for r in rows))
    summary["late_max_s"] = max((r["late_max_s"] for r in rows), default=0.0)
    ms, cpu_ms = np.array(costs) * 1000, np.array(cpu) * 1000
    first = np.array(firsts) * 1000
    summary |= {"songs": len(rows), "latency_p50_ms": float(np.percentile(ms, 50)),
                "latency_p99_ms": float(np.percentile(ms, 99)), "latency_cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
                "latency_cpu_p99_ms": float(np.percentile(cpu_ms, 99)), "first_p50_ms": float(np.percentile(first, 50)),
                "first_p99_ms": float(np.percentile(first, 99)), "notes_in": len(ms)}
    report = out / f"{args.split}{'' if args.corpus == 'pop909' else '-lieder'}.json"
    report.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
