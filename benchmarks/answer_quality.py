"""How much Clara's answers sound like the music they continue: the project's measure of answers.

Prompts are cut from held-out works (training/heldout.py: the model's own held-out pieces
from its splits.json, piano-midi.de's and one ASAP performance of each score, since a live
player plays like them; for a model without one, piano-midi.de's valid or test pieces by
their hash and ASAP works in the same split): `--prompt-seconds` of music before a cut, and
the real next `--seconds` after it as the reference. Each setting continues every prompt,
offline through `continue_piece` (what `clara continue` runs) or live through the session and
worker that `clara live` runs, fed the prompt as a player would play it (keys and sustain
pedal at their times, an injected clock: no JACK, no sleeps). Each continuation is measured against its prompt:

  pc_cosine      cosine of the pitch-class histograms of continuation and prompt
  drift          |mean pitch of the continuation - the prompt's|, semitones
  range          highest - lowest pitch of the continuation
  density        onsets per second, as a ratio to the prompt's
  polyphony      mean notes sounding (while any sound), as a ratio to the prompt's
  longest_run    longest run of identical onset sets (a note or chord struck again and again)
  loop_share     share of onset sets in runs of 4 or more
  distinct       distinct pitches
  ioi_entropy    entropy (bits) of inter-onset intervals on the beat grid (1/12 beat, <= 4 beats)
  silence        share of the time with nothing sounding
  motif_reuse    share of the prompt's melodic interval 3-grams (top line) heard again

Touch, beside them (issue 24; not in the combined distance, so that its figures stay comparable
with earlier runs), from the notes as played, never quantised:

  vel_sd         standard deviation of the velocities
  vel_distinct   distinct velocities per 12 s
  vel_level      |mean velocity - the prompt's last 4 s's|
  vel_beat       mean velocity on beats (within 0.1 beat of the file's or her grid's beat) minus off them
  ioi_s_entropy  entropy (bits) of inter-onset intervals in seconds (10 ms bins, <= 2 s)
  dev_sd         standard deviation of the onsets' offsets from the nearest step of the beat grid (1/12 of
                 a beat at the file's or her grid's tempo), in steps: 0 on the grid, ~0.29 for onsets
                 anywhere between steps

The combined distance of a setting is the mean over these metrics of |its median - the real
continuations' median| / the real continuations' inter-quartile range (floored at a just
audible difference, FLOORS, so a metric where real music never varies does not divide by
zero). Baselines in the same run: the real continuation (0 by construction), 'another piece'
(the real continuation of a different prompt) and 'copy the prompt' (the prompt played again).
The model's NLL of the real continuation given the prompt is reported beside.

  python benchmarks/answer_quality.py --split valid                 # choose here
  python benchmarks/answer_quality.py --split test --json out.json  # report once
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import symusic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clara_live.codec import make_codec, to_steps  # noqa: E402
from clara_live.codec.vocabulary import Vocabulary  # noqa: E402
from clara_live.config import Config, load_config  # noqa: E402
from clara_live.continuation import Request, continue_piece  # noqa: E402
from clara_live.engine import build_engine  # noqa: E402
from clara_live.errors import InputError  # noqa: E402
from clara_live.live.rehearsal import first_answer  # noqa: E402
from clara_live.live.session import Session  # noqa: E402
from clara_live.model import load_model  # noqa: E402
from clara_live.music.midi_io import read_midi  # noqa: E402
from clara_live.music.notes import Note, Piece, StepNote  # noqa: E402
from clara_live.sampling.sampler import Sampler  # noqa: E402
from training import heldout  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = ("pc_cosine", "drift", "range", "density", "polyphony", "longest_run", "loop_share", "distinct",
           "ioi_entropy", "silence", "motif_reuse")
FLOORS = {"pc_cosine": 0.05, "drift": 1.0, "range": 2.0, "density": 0.1, "polyphony": 0.1, "longest_run": 1.0,
          "loop_share": 0.05, "distinct": 2.0, "ioi_entropy": 0.1, "silence": 0.05, "motif_reuse": 0.05}
TOUCH = ("vel_sd", "vel_distinct", "vel_level", "vel_beat", "ioi_s_entropy", "dev_sd")
CHORD_SPREAD = 0.035  # seconds: onsets this close are one onset set (a performed chord is spread)
LOOP = 4  # a run of this many identical onset sets is a loop
SEED_STRIDE = 100_000  # --seeds: take k of prompt i has seed --seed + SEED_STRIDE * k + i

# Named settings: sampling overrides (config keys) and how the continuation is searched.
SETTINGS: dict[str, dict] = {
    "default": {},
    "clara": {"random_freq": 0.5, "top_k": 5, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "max_repeats": 0},
    "clara+guard": {"random_freq": 0.5, "top_k": 5, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0},
    "greedy": {"random_freq": 0.0, "max_repeats": 0},
    "greedy+guard": {"random_freq": 0.0},
    "sample": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "max_repeats": 0},
    "sample+guard": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0},
    "t0.9": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 0.9},
    "t0.85": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 0.85},
    "t0.95": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 0.95},
    "t0.8": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 0.8},
    "minp0.05": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.05, "temperature": 1.0},
    "minp0.1": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.1, "temperature": 1.0},
    "minp0.05-t1.1": {"random_freq": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.05, "temperature": 1.1},
    "top_p0.95": {"random_freq": 1.0, "top_k": 0, "top_p": 0.95, "min_p": 0.0, "temperature": 1.0},
    "beam4": {"random_freq": 0.0, "_beam": 4},
    "best8": {"_candidates": 8},
}
for _name, _choice in SETTINGS.items():  # a setting that names a temperature draws everything at it (one
    if "temperature" in _choice:  # temperature), with no key pull, as these were measured before either
        _choice.setdefault("event_temperature", 0.0)
        _choice.setdefault("key_pull", 0.0)
    if _name != "default":  # the loop guard these were measured with ("+guard"): 3 in a row
        _choice.setdefault("max_repeats", 3)


class Timed(NamedTuple):
    """A note in seconds."""

    start: float
    end: float
    pitch: int
    velocity: int = 80


class Prompt(NamedTuple):
    name: str
    piece: Piece  # the prompt as `clara continue` reads it (quarter notes from the prompt's start)
    notes: list[Timed]  # the prompt, seconds from its start (pedal applied)
    keys: list[Timed]  # the keys as played (no pedal), for the live path
    pedal: list[tuple[float, float]]  # sustain pedal intervals, seconds
    reference: list[Timed]  # the real continuation, seconds from the cut
    beat: float  # seconds per quarter note
    span: float  # the prompt's length, seconds (it ends at the cut)
    seconds: float  # the reference's length


# --- prompts ------------------------------------------------------------------------------


def _pedals(path: Path) -> list[tuple[float, float]]:
    """The sustain pedal's intervals, in quarter notes (read_midi applies them but does not return them)."""
    score = symusic.Score.from_midi(path.read_bytes(), ttype="tick")
    tpq = float(score.ticks_per_quarter)
    return sorted((p.time / tpq, (p.time + p.duration) / tpq) for track in score.tracks for p in track.pedals)


def make_prompt(item: heldout.Item, prompt_seconds: float, seconds: float, where: float = 0.35) -> Prompt | None:
    """The prompt before a cut `where` through the piece (snapped to an onset) and the real
    continuation after it; None when the piece is too short."""
    pedalled = read_midi(item.path, sustain_pedal=True)
    raw = read_midi(item.path, sustain_pedal=False)
    beat = 60.0 / pedalled.bpm  # seconds per quarter at the file's first tempo, as `clara continue` plays it
    span_p, span_c = prompt_seconds / beat, seconds / beat  # in quarters
    starts = np.array(sorted({round(n.start, 3) for n in raw.notes}))
    if not len(starts) or starts[-1] < span_p + span_c:
        return None
    wanted = max(span_p, min(where * starts[-1], starts[-1] - span_c))
    cut = float(starts[np.argmin(np.abs(starts - wanted))])
    begin = cut - span_p

    def window(notes: list[Note], lo: float, hi: float) -> list[Timed]:
        return [Timed((n.start - lo) * beat, (min(n.end, hi) - lo) * beat, n.pitch, n.velocity)
                for n in notes if lo <= n.start < hi]

    prompt_notes = [n._replace(start=n.start - begin, end=min(n.end, cut) - begin)
                    for n in pedalled.notes if begin <= n.start < cut]
    pedal = [((max(a, begin) - begin) * beat, (min(b, cut) - begin) * beat)
             for a, b in _pedals(item.path) if b > begin and a < cut]
    return Prompt(f"{item.corpus}:{item.work}", Piece(prompt_notes, pedalled.bpm, str(item.path)),
                  window(pedalled.notes, begin, cut), window(raw.notes, begin, cut), pedal,
                  window(pedalled.notes, cut, cut + span_c), beat, prompt_seconds, seconds)


def trained_on(corpus: Path | None) -> set[Path]:
    """The files a model's corpus (a folder built by `clara corpus`) put in its train split."""
    if corpus is None:
        return set()
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return {Path(p["source"]).resolve() for p in manifest["pieces"] if p["split"] == "train"}


def load_prompts(split: str, prompt_seconds: float, seconds: float, limit: int = 0,
                 corpus: Path | None = None, model: Path | None = None) -> list[Prompt]:
    own = heldout.model_items(model, split) if model is not None else None
    items = own if own is not None else heldout.piano_midi_de(split) + heldout.asap(split)
    seen = trained_on(corpus)
    if seen:
        kept = [i for i in items if i.path.resolve() not in seen]
        print(f"{len(items) - len(kept)} of {len(items)} {split} pieces left out: in the train split of {corpus}",
              file=sys.stderr)
        items = kept
    prompts = []
    for item in items:
        try:
            prompt = make_prompt(item, prompt_seconds, seconds)
        except InputError as exc:
            print(f"skipped {item.path}: {exc}", file=sys.stderr)
            continue
        if prompt is not None and prompt.notes and prompt.reference:
            prompts.append(prompt)
    return prompts[:limit] if limit else prompts


# --- metrics ------------------------------------------------------------------------------


def onset_sets(notes: list[Timed], spread: float = CHORD_SPREAD) -> list[tuple[float, frozenset[int]]]:
    """Onsets grouped into sets: notes (anything with a start and a pitch) starting within `spread`
    seconds of a set's first note."""
    out: list[tuple[float, set[int]]] = []
    for n in sorted(notes):
        if out and n.start - out[-1][0] <= spread:
            out[-1][1].add(n.pitch)
        else:
            out.append((n.start, {n.pitch}))
    return [(t, frozenset(s)) for t, s in out]


def runs(sets: list[frozenset[int]]) -> list[int]:
    lengths: list[int] = []
    for i, s in enumerate(sets):
        if i and s == sets[i - 1]:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


def _sounding(notes: list[Timed], length: float) -> tuple[float, float]:
    """(share of [0, length] with nothing sounding, mean notes sounding while any sound)."""
    if not notes or length <= 0:
        return 1.0, 0.0
    edges = sorted([(n.start, 1) for n in notes] + [(max(n.end, n.start + 1e-3), -1) for n in notes])
    covered = weighted = 0.0
    level, last = 0, 0.0
    for t, d in edges:
        t = min(max(t, 0.0), length)
        if level > 0:
            covered += t - last
            weighted += level * (t - last)
        level += d
        last = t
    return 1.0 - covered / length, weighted / covered if covered else 0.0


def melody_trigrams(sets: list[tuple[float, frozenset[int]]]) -> set[tuple[int, int, int]]:
    top = [max(s) for _, s in sets]
    steps = [b - a for a, b in zip(top, top[1:], strict=False)]
    return {tuple(steps[i:i + 3]) for i in range(len(steps) - 2)}


def measure(notes: list[Timed], prompt: list[Timed], length: float, beat: float) -> dict[str, float]:
    """Every metric of a continuation (`notes`, seconds from its start, `length` long) against its prompt."""
    if not notes:
        return {"pc_cosine": 0.0, "drift": 24.0, "range": 0.0, "density": 0.0, "polyphony": 0.0,
                "longest_run": 0.0, "loop_share": 0.0, "distinct": 0.0, "ioi_entropy": 0.0, "silence": 1.0,
                "motif_reuse": 0.0}
    sets, prompt_sets = onset_sets(notes), onset_sets(prompt)
    pc = np.bincount([n.pitch % 12 for n in notes], minlength=12).astype(float)
    pc0 = np.bincount([n.pitch % 12 for n in prompt], minlength=12).astype(float)
    lengths = runs([s for _, s in sets])
    prompt_length = max(n.end for n in prompt)
    silence, poly = _sounding(notes, length)
    _, poly0 = _sounding(prompt, prompt_length)
    iois = np.diff([t for t, _ in sets]) / beat
    iois = np.minimum(np.round(iois * 12), 49)
    counts = np.bincount(iois.astype(int), minlength=50)[1:] if len(iois) else np.zeros(1)
    p = counts[counts > 0] / counts.sum() if counts.sum() else np.ones(1)
    motifs0 = melody_trigrams(prompt_sets)
    return {
        "pc_cosine": float(pc @ pc0 / (np.linalg.norm(pc) * np.linalg.norm(pc0) + 1e-12)),
        "drift": abs(float(np.mean([n.pitch for n in notes]) - np.mean([n.pitch for n in prompt]))),
        "range": float(max(n.pitch for n in notes) - min(n.pitch for n in notes)),
        "density": (len(sets) / length) / (len(prompt_sets) / prompt_length),
        "polyphony": poly / poly0 if poly0 else 0.0,
        "longest_run": float(max(lengths)),
        "loop_share": sum(n for n in lengths if n >= LOOP) / len(sets),
        "distinct": float(len({n.pitch for n in notes})),
        "ioi_entropy": float(-(p * np.log2(p)).sum()),
        "silence": silence,
        "motif_reuse": len(motifs0 & melody_trigrams(sets)) / len(motifs0) if motifs0 else 0.0,
    }


def touch(notes: list[Timed], prompt: list[Timed], length: float, beat: float) -> dict[str, float]:
    """The TOUCH metrics of a continuation against its prompt (seconds, the notes as played)."""
    if not notes:
        return {"vel_sd": 0.0, "vel_distinct": 0.0, "vel_level": 127.0, "vel_beat": 0.0, "ioi_s_entropy": 0.0,
                "dev_sd": 0.0}
    v = np.array([n.velocity for n in notes], dtype=float)
    last = max(n.start for n in prompt)
    recent = [n.velocity for n in prompt if n.start >= last - 4.0] or [n.velocity for n in prompt]
    phase = np.array([n.start / beat for n in notes])
    on = np.abs(phase - np.round(phase)) <= 0.1
    beat_gap = float(v[on].mean() - v[~on].mean()) if on.any() and (~on).any() else 0.0
    starts = np.array(sorted(t for t, _ in onset_sets(notes)))
    iois = np.diff(starts)
    bins = np.bincount(np.minimum(np.round(iois / 0.01), 200).astype(int), minlength=201) if len(iois) else np.zeros(1)
    p = bins[bins > 0] / bins.sum() if bins.sum() else np.ones(1)
    steps = phase * 12
    return {"vel_sd": float(v.std()), "vel_distinct": len(set(v.tolist())) * 12.0 / max(length, 1e-9),
            "vel_level": abs(float(v.mean()) - float(np.mean(recent))), "vel_beat": beat_gap,
            "ioi_s_entropy": float(-(p * np.log2(p)).sum()), "dev_sd": float((steps - np.round(steps)).std())}


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: float(np.median([r[m] for r in rows])) for m in METRICS + TOUCH}


def distance(rows: list[dict[str, float]], real: list[dict[str, float]]) -> float:
    """Mean over metrics of |median - real median| / max(real IQR, floor)."""
    return sum(distance_parts(rows, real).values()) / len(METRICS)


def distance_parts(rows: list[dict[str, float]], real: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's share of the distance: |median - real median| / max(real IQR, floor)."""
    parts = {}
    for m in METRICS:
        values = np.array([r[m] for r in real])
        iqr = float(np.subtract(*np.percentile(values, [75, 25])))
        parts[m] = float(abs(np.median([r[m] for r in rows]) - np.median(values)) / max(iqr, FLOORS[m]))
    return parts


# --- continuations ------------------------------------------------------------------------


def sampling_for(config: Config, setting: dict) -> Config:
    keys = {k: v for k, v in setting.items() if not k.startswith("_")}
    return dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, **keys))


def offline(loaded, engine, config: Config, piece: Piece | None, seconds: float, setting: dict,
            seed: int) -> list[Timed]:
    """Clara's continuation of `piece` (a prompt's; None: from silence) for `seconds` by `continue_piece`, in
    seconds from the prompt's end."""
    config = sampling_for(config, setting)
    sampler = Sampler(engine, loaded.vocabulary, loaded.codec, config.sampling, seed=seed)
    request = Request(seconds=seconds, beam=setting.get("_beam", 1), candidates=setting.get("_candidates", 1))
    result = continue_piece(loaded, sampler, piece, request, config.sampling)
    step = 60.0 / (result.bpm * loaded.codec.sample_freq)
    origin = max((n.end for n in result.prompt), default=0)  # Clara starts where the prompt's last note ends
    return [Timed((n.start + n.offset - origin) * step, (n.end - origin) * step, n.pitch, n.velocity)
            for n in result.continuation]  # each onset where her touch put it


def nll_of_reference(loaded, engine, prompt: Prompt) -> tuple[float, int]:
    """Sum of the model's NLL (nats) of the real continuation's tokens given the prompt, and the count."""
    import torch

    codec = make_codec(loaded.codec)
    cut = prompt.span / prompt.beat  # quarters
    reference = [Note(cut + n.start / prompt.beat, cut + n.end / prompt.beat, n.pitch, n.velocity)
                 for n in prompt.reference]
    prompt_tokens = codec.encode(to_steps(prompt.piece, loaded.codec))
    whole = codec.encode(to_steps(prompt.piece._replace(notes=prompt.piece.notes + reference), loaded.codec))
    if whole[:len(prompt_tokens)] != prompt_tokens:
        return 0.0, 0  # the continuation changed how the prompt's last step is written: skip
    ids = torch.as_tensor(Vocabulary(loaded.vocabulary, loaded.codec).ids(whole, prompt.name))
    logits, _ = engine(ids[None], engine.init_hidden(1))
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    targets = ids[1:]
    picked = -logp[torch.arange(len(targets)), targets][len(prompt_tokens) - 1:]
    return float(picked.sum()), len(picked)


def live(loaded, engine, config: Config, prompt: Prompt, setting: dict, seed: int, tick: float = 0.002
         ) -> tuple[list[Timed], float, float]:
    """Clara's answer when the prompt is played into `clara live`'s session and worker.

    Returns her notes (seconds from the prompt's end), the answer's length and its tempo."""
    config = sampling_for(config, setting)
    # the answer as long as the call (the default caps it at max_answer_bars), so it meets the reference's length
    config = dataclasses.replace(config, live=dataclasses.replace(config.live, max_answer_bars=64))
    sampler = Sampler(engine, loaded.vocabulary, loaded.codec, config.sampling, seed=seed)
    t0 = 1.0
    session = Session(config.live, sampler.vocab, config.sampling, 0.0, config.sampling.beats_per_bar)
    events = [(t0 + n.start, (0x90, n.pitch, n.velocity)) for n in prompt.keys]
    events += [(t0 + max(n.end, n.start + 0.01), (0x80, n.pitch, 0)) for n in prompt.keys]
    events += [(t0 + a, (0xB0, 64, 127)) for a, _ in prompt.pedal] + [(t0 + b, (0xB0, 64, 0)) for _, b in prompt.pedal]
    answered, sent = first_answer(session, sampler, events, tick=tick)
    if answered is None:
        return [], prompt.seconds, config.live.bpm
    opened: dict[int, tuple[float, int]] = {}
    notes: list[Timed] = []
    for at, message in sorted(sent, key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90)):
        kind, pitch = message[0] & 0xF0, message[1]
        if kind == 0x90 and message[2] > 0:
            opened[pitch] = (at, message[2])
        elif pitch in opened:
            start, velocity = opened.pop(pitch)
            notes.append(Timed(start - answered.start_time, at - answered.start_time, pitch, velocity))
    length = answered.end_time - answered.start_time
    return sorted(notes), length, answered.grid.bpm


# --- the run -------------------------------------------------------------------------------


def measured(notes: list[Timed], prompt: list[Timed], length: float, beat: float) -> dict[str, float]:
    """The METRICS and the TOUCH metrics of a continuation."""
    return {**measure(notes, prompt, length, beat), **touch(notes, prompt, length, beat)}


def _clip(notes: list[Timed], length: float) -> list[Timed]:
    return [n._replace(end=min(n.end, length)) for n in notes if n.start < length]


def run(args: argparse.Namespace) -> dict:
    config = load_config(overrides=args.set)
    loaded = load_model(args.model)
    engine = build_engine(loaded.model, config.inference)
    prompts = load_prompts(args.split, args.prompt_seconds, args.seconds, args.limit, args.corpus, Path(args.model))
    print(f"{len(prompts)} prompts from the {args.split} split ({args.prompt_seconds:g} s each, "
          f"continued {args.seconds:g} s)", file=sys.stderr)
    real = [measured(p.reference, p.notes, p.seconds, p.beat) for p in prompts]
    results: dict[str, dict] = {"real": {"rows": real}}
    shift = [prompts[(i + len(prompts) // 2) % len(prompts)] for i in range(len(prompts))]
    results["another piece"] = {"rows": [measured(_clip(o.reference, p.seconds), p.notes, p.seconds, p.beat)
                                         for p, o in zip(prompts, shift, strict=True)]}
    results["copy the prompt"] = {"rows": [
        measured(_clip(p.notes, p.seconds), p.notes, p.seconds, p.beat) for p in prompts]}
    nll, count = 0.0, 0
    for p in prompts:
        a, b = nll_of_reference(loaded, engine, p)
        nll, count = nll + a, count + b
    examples: dict[str, list] = {}
    for name in args.settings:
        setting = SETTINGS[name]
        started = time.perf_counter()
        rows, lengths, tempi = [], [], []
        for take in range(args.seeds):
            for i, p in enumerate(prompts):
                seed = args.seed + SEED_STRIDE * take + i
                if args.path == "live":
                    notes, length, bpm = live(loaded, engine, config, p, setting, seed)
                    tempi.append(bpm)
                else:
                    notes, length = offline(loaded, engine, config, p.piece, p.seconds, setting, seed), p.seconds
                notes = _clip(notes, length)
                rows.append(measured(notes, p.notes, length, p.beat))
                lengths.append(length)
                if take == 0 and i < args.examples:
                    examples.setdefault(name, []).append(notes)
        results[name] = {"rows": rows, "seconds": time.perf_counter() - started,
                         "answer_seconds": float(np.median(lengths))}
        if tempi:
            results[name]["bpm"] = float(np.median(tempi))
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    corpora = [p.name.split(":")[0] for p in prompts]
    for r in results.values():
        r["median"] = summarise(r["rows"])
        # each corpus's prompts apart (a take k of prompt i is row k * len(prompts) + i): sequenced music and
        # performances differ most in touch
        r["by_corpus"] = {c: summarise([row for i, row in enumerate(r["rows"]) if corpora[i % len(prompts)] == c])
                          for c in sorted(set(corpora))}
        r["parts"] = distance_parts(r["rows"], real)  # where the distance comes from (--json)
        r["distance"] = sum(r["parts"].values()) / len(METRICS)
    report = {"split": args.split, "path": args.path, "prompts": [p.name for p in prompts],
              "prompt_seconds": args.prompt_seconds, "seconds": args.seconds, "seeds": args.seeds,
              "reference_nll_per_token": nll / max(count, 1), "reference_tokens": count,
              "config": dataclasses.asdict(config.sampling),
              "results": {k: {kk: vv for kk, vv in v.items() if kk != "rows" or args.rows} for k, v in results.items()}}
    if args.png:
        draw_examples(prompts, examples, Path(args.png), loaded.codec.sample_freq, args.path)
    return report


def draw_examples(prompts: list[Prompt], examples: dict[str, list], folder: Path, sf: int, path: str) -> None:
    from clara_live.piano_roll import draw_piano_roll

    folder.mkdir(parents=True, exist_ok=True)
    for name, takes in examples.items():
        for i, notes in enumerate(takes):
            p = prompts[i]
            span = p.span

            def steps(ns: list[Timed], offset: float, per: float = p.beat / sf) -> list[StepNote]:
                return [StepNote(round((n.start + offset) / per), max(round((n.end + offset) / per),
                                 round((n.start + offset) / per) + 1), n.pitch, n.velocity) for n in ns]

            after = span + max([n.end for n in notes] + [0.0]) + p.beat  # the real music after a beat's gap
            parts = [("prompt", steps(p.notes, 0.0)), (f"Clara ({name}, {path})", steps(notes, span)),
                     ("real continuation", steps(p.reference, after))]
            safe = name.replace("/", "_")
            draw_piano_roll(parts, sf, folder / f"{path}-{safe}-{i}.png", bpm=60.0 / p.beat,
                            title=f"{p.name}: prompt, Clara ({name}), then the real continuation")


def table(report: dict) -> str:
    cols = ("distance",) + METRICS
    lines = [f"{'setting':<16}" + "".join(f"{c[:11]:>12}" for c in cols)]
    for name, r in report["results"].items():
        lines.append(f"{name:<16}{r['distance']:>12.2f}" + "".join(f"{r['median'][m]:>12.2f}" for m in METRICS))
    lines.append(f"{'touch':<16}" + "".join(f"{c[:11]:>12}" for c in TOUCH))
    for name, r in report["results"].items():
        lines.append(f"{name:<16}" + "".join(f"{r['median'][m]:>12.2f}" for m in TOUCH))
    lines.append(f"model NLL of the real continuations: {report['reference_nll_per_token']:.3f} nats/token "
                 f"({report['reference_tokens']} tokens)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--path", choices=("offline", "live"), default="offline")
    parser.add_argument("--settings", default="default,clara,greedy,sample", help="comma-separated: " +
                        ", ".join(SETTINGS))
    parser.add_argument("--model", default=str(REPO / "trained_models" / "clara-notewise"))
    parser.add_argument("--corpus", type=Path, help="for a model without splits.json, its training corpus (built by "
                        "`clara corpus`): prompts from its train split are left out")
    parser.add_argument("--prompt-seconds", type=float, default=12.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--limit", type=int, default=0, help="at most this many prompts (0: all)")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=1, help="continuations per prompt (take k of prompt i: "
                        f"seed + {SEED_STRIDE} k + i), medians over all of them: steadier than one take")
    parser.add_argument("--examples", type=int, default=3, help="piano rolls of the first N prompts per setting")
    parser.add_argument("--png", metavar="DIR", help="write the example piano rolls here")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--rows", action="store_true", help="keep every prompt's metrics in the JSON")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args(argv)
    args.settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    report = run(args)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
