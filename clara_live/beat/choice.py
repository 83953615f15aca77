"""The tempo a jamming player can trust: the two estimators' candidates, chosen between by a small
learned ranker.

The classic estimator (clara_live.beat.classic) lands on a steady player's period to a
hundredth of a percent but often at twice or half the notated beat; the learned tracker
(clara_live.beat.tracker) chooses the metrical level better under rubato but lands a few percent off
on steady playing and hears simple pulses at half their tempo. Each gives a period; their
multiples (x1/3 .. x3, the metrical levels either may have missed) are the candidates, each
refined by a least-squares fit to the events near its beats (`beat.refine`: exact on steady
playing). Every candidate is described by what a musician would weigh (FEATURES): its distance
from the first guess (the previous phrase's tempo: a player seldom changes tempo between two
phrases), its absolute tempo, the periodicity of the onsets at it, how many notes fall in a beat,
the share of the onsets' weight on its beats and their subdivisions, how steady the playing is
on its grid, the learned network's beat activation on its beats and its tempo head's belief, and
which estimator proposed it with what confidence. A small network's score over them (weights
learned by training/tempo_choice.py, listwise, on the train works of ASAP's performances, POP909's
steady melodies and synthetic steady phrases, heard fresh and as a second phrase; chosen on
valid) picks one. A phrase's candidates are refined, and described, all at once (arrays over
candidates and events: about 1.5 ms a phrase for both, where a candidate at a time took about 5;
the same numbers to 1e-13).

Weights ship as JSON (trained_models/beat/choice.json), read with json and checked.
Pure functions but for the weights' load, cached once.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from clara_live.beat import net as beat_net
from clara_live.beat.classic import _comb, _phases, autocorrelation, estimate_from_events
from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.beat.tracker import MIN_EVENTS, TempoEstimate, events, hear, refine_many
from clara_live.errors import InputError

WEIGHTS = Path(__file__).resolve().parents[2] / "trained_models" / "beat" / "choice.json"
LEVELS = (1 / 3, 1 / 2, 2 / 3, 1.0, 3 / 2, 2.0, 3.0)  # a proposed beat's metrical neighbours
PRIOR_LEVELS = (1 / 2, 1.0, 2.0)  # the first guess's period and its octaves are candidates too
PEAKS = 4  # ... and the strongest peaks of the onsets' periodicity
SOURCES = ("classic", "learned", "prior", "comb")
FEATURES = ("prior", "prior_sq", "prior_abs", "informed", "informed_prior_sq", "informed_prior_abs",
            "tempo", "tempo_sq", "comb", "comb_2", "per_beat", "per_beat_sq",
            "on_beat", "on_half", "on_third", "on_quarter", "accent", "residual", "residual_sq",
            "activation", "activation_ratio", "head", "is_classic", "is_learned", "classic_confidence",
            "learned_confidence", "refined", "from_classic", "from_learned", "from_prior", "from_comb", "beats",
            "level", "level_3_2")


class Candidate(NamedTuple):
    period: float  # seconds
    phase: float  # a beat time, seconds
    source: str  # one of SOURCES
    level: float  # the proposing period over this one
    refined: bool


class Phrase(NamedTuple):
    """One phrase heard once: the events, both estimators' answers and the network's outputs."""

    t: np.ndarray
    w: np.ndarray
    classic: TempoEstimate
    learned: TempoEstimate | None
    activation: np.ndarray
    start: float
    tempo: np.ndarray | None
    tempo_bpm: np.ndarray | None
    autocorrelation: np.ndarray
    prior_bpm: float


def listen(onsets: Sequence[float], velocities: Sequence[float] | None, prior_bpm: float,
           pitches: Sequence[float] | None = None) -> Phrase | None:
    """Both estimators on a phrase; None when the hand-made one hears no pulse. Its confidence
    (periodicity, onsets on the grid, the phrase's length) is what tells a pulse from scattered
    notes: where it hears none, the learned tracker was right on 4 of ASAP's 31 train openings
    (benchmarks/tempo_from_playing.py prints it), and it gives a tempo to most of five random
    notes in 4 s (tests/test_beat.py). Letting the learned tracker's candidates stand there (from
    eight events on, ranked with a feature saying the hand-made estimator heard nothing) was tried
    in issue 23's third round: right on 1 of ASAP's 26 such train openings (keeping the first guess:
    2) and on 40 of 98 such phrase-scenarios of all sets (the first guess: 42), so not kept."""
    t, w = events(onsets, velocities)
    if len(t) < MIN_EVENTS or t[-1] - t[0] <= 0 or not math.isfinite(prior_bpm) or prior_bpm <= 0:
        return None
    ac = autocorrelation(t, w)
    classic = estimate_from_events(t, w, prior_bpm, ac)
    if classic is None:
        return None
    heard = hear(onsets, velocities, prior_bpm, pitches)
    if heard is None:
        return None
    return Phrase(t, w, classic, heard.estimate, heard.activation, heard.start, heard.tempo, heard.tempo_bpm, ac,
                  min(MAX_BPM, max(MIN_BPM, prior_bpm)))


def candidates(phrase: Phrase) -> list[Candidate]:
    """The periods worth ranking, each refined on the events near its beats: each estimate's at
    its metrical neighbours (LEVELS; the learned one also as it was tracked), the first guess's
    and its octaves (a second phrase at the first one's tempo), and the PEAKS strongest peaks of
    the onsets' periodicity (a pulse both estimators missed); all within MIN_BPM..MAX_BPM and
    no longer than the phrase."""
    t, w = phrase.t, phrase.w
    span = float(t[-1] - t[0])
    longest = min(60.0 / MIN_BPM, span)
    proposals: list[tuple[str, float, float, float | None]] = []  # (source, base period, level, phase)
    for source, estimate in (("classic", phrase.classic), ("learned", phrase.learned)):
        if estimate is not None:  # the learned tracker may track too few beats
            proposals += [(source, estimate.period, level, estimate.beat_time if level == 1.0 else None)
                          for level in LEVELS]
    proposals += [("prior", 60.0 / phrase.prior_bpm, level, None) for level in PRIOR_LEVELS]
    proposals += [("comb", period, 1.0, None) for period in _peaks(phrase.autocorrelation, span, longest)]
    kept = [(source, base / level, level, phase) for source, base, level, phase in proposals
            if 60.0 / MAX_BPM <= base / level <= longest]
    if not kept:
        return []
    period = np.array([k[1] for k in kept])
    phase = np.array([k[3] if k[3] is not None else np.nan for k in kept])
    missing = np.isnan(phase)
    if missing.any():
        phase[missing] = _phases(t, w, period[missing])
    refined_period, refined_phase = refine_many(t, w, period, phase)
    out = []
    for i, (source, _, level, _) in enumerate(kept):
        if source == "learned" and level == 1.0:
            out.append(Candidate(float(period[i]), float(phase[i]), source, level, False))
        out.append(Candidate(float(refined_period[i]), float(refined_phase[i]), source, level, True))
    return out


def _peaks(ac: np.ndarray, span: float, longest: float) -> list[float]:
    """The periods of the PEAKS highest local maxima of the comb over the onsets' autocorrelation."""
    shortest = 60.0 / MAX_BPM
    if longest <= shortest:
        return []
    periods = shortest * (longest / shortest) ** np.linspace(0.0, 1.0, 160)
    score = _comb(ac, periods, span)
    peak = np.flatnonzero((score[1:-1] >= score[:-2]) & (score[1:-1] > score[2:])) + 1
    best = peak[np.argsort(score[peak])[::-1][:PEAKS]]
    return periods[best].tolist()


def features(phrase: Phrase, found: Sequence[Candidate], informed: bool) -> np.ndarray:
    """(candidates, FEATURES) describing `found`, a phrase's candidates, in FEATURES' order. informed:
    the first guess is the tempo heard before (the previous phrase, a tap, a clock), not a default.
    What depends only on a grid (period, phase) is worked out once for the candidates that share
    it (a third of them), all grids at once (`_grids`)."""
    if not found:
        return np.zeros((0, len(FEATURES)))
    period = np.array([c.period for c in found])
    phase = np.array([c.phase for c in found])
    grids, index = np.unique(np.stack([period, phase], 1), axis=0, return_inverse=True)
    grid = _grids(phrase, grids[:, 0], grids[:, 1])[index.ravel()]
    bpm = 60.0 / period
    prior = np.log2(bpm / phrase.prior_bpm)
    known = float(informed)
    tempo = np.log2(bpm / 100.0)
    span = float(phrase.t[-1] - phrase.t[0])
    classic, learned = phrase.classic, phrase.learned
    is_classic = (np.abs(np.log2(period / classic.period)) < 0.03).astype(float)
    is_learned = (np.abs(np.log2(period / learned.period)) < 0.03).astype(float) if learned else np.zeros(len(found))
    level = np.array([c.level for c in found])
    source = np.array([[float(c.source == s) for s in SOURCES] for c in found])
    columns = [prior, prior * prior, np.abs(prior), np.full(len(found), known), known * prior * prior,
               known * np.abs(prior), tempo, tempo * tempo, *grid.T, is_classic, is_learned,
               is_classic * classic.confidence,
               is_learned * (learned.confidence if learned else 0.0),
               np.array([float(c.refined) for c in found]), *source.T, np.log(span / period),
               np.abs(np.log2(level)), np.isin(level, (2 / 3, 3 / 2)).astype(float)]
    return np.stack(columns, 1)


def _on(a: np.ndarray, times: np.ndarray, start: float, valid: np.ndarray) -> np.ndarray:
    """(grids,) the mean of a (frames from `start`) at each grid's `valid` times (0 where none)."""
    values = np.interp((times - start) * beat_net.FPS, np.arange(len(a)), a)
    count = valid.sum(1)
    return np.where(count > 0, (values * valid).sum(1) / np.maximum(count, 1), 0.0)


def _grids(phrase: Phrase, period: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """(grids, FEATURES from comb to head): what depends only on a grid (period, phase) and the phrase, for many
    grids at once: the onsets' periodicity at the period and twice it, notes per beat, the share of
    the onsets' weight on beats, half, third and quarter beats, the accent on the beats, the
    steadiness (the weighted RMS distance to the nearest quarter or third of a beat, in beats), the
    network's activation on the beats and its tempo head's belief."""
    t, w = phrase.t, phrase.w
    span = float(t[-1] - t[0])
    p, ph = period[:, None], phase[:, None]
    comb = _comb(phrase.autocorrelation, period, span)
    comb_2 = _comb(phrase.autocorrelation, 2 * period, span)
    rate = (len(t) - 1) / span
    per_beat = np.log2(np.maximum(rate * period, 1e-3))
    x = t[None, :] - ph
    total = float(np.sum(w))
    tolerance = np.maximum(0.025, 0.08 * p)
    shares = []
    for division in (1, 2, 3, 4):
        q = p / division
        shares.append((w * (np.abs((x + q / 2) % q - q / 2) <= tolerance)).sum(1) / total)
    on = np.abs((x + p / 2) % p - p / 2) <= 0.08 * p
    count = on.sum(1)
    accent = np.where(count > 0, (w * on).sum(1) / np.maximum(count, 1) / np.mean(w), 0.5)
    quarter = np.abs((x + p / 8) % (p / 4) - p / 8)
    third = np.abs((x + p / 6) % (p / 3) - p / 6)
    residual = np.sqrt((w * np.minimum(quarter, third) ** 2).sum(1) / total) / period
    first = np.ceil((t[0] - phase) / period - 1e-9)
    last = np.floor((t[-1] - phase) / period + 1e-9)
    beats_n = np.maximum(last - first + 1, 0).astype(int)
    k = np.arange(max(1, int(beats_n.max())))
    valid = k[None, :] < beats_n[:, None]
    beats = ph + p * (first[:, None] + k[None, :])
    a = phrase.activation
    activation = _on(a, beats, phrase.start, valid)
    bpm = 60.0 / period
    head = np.full(len(period), math.log(1e-4))
    if phrase.tempo is not None and phrase.tempo_bpm is not None:
        head = np.log(np.interp(np.log(bpm), np.log(phrase.tempo_bpm), phrase.tempo) + 1e-4)
    return np.stack([comb, comb_2, per_beat, per_beat * per_beat, *shares, accent, residual, residual * residual,
                     activation, activation / (float(a.mean()) + 1e-6), head], 1)


class Ranker(NamedTuple):
    """A candidate's score: a one-hidden-layer network over its standardised features."""

    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    hidden_weight: np.ndarray  # (hidden, features)
    hidden_bias: np.ndarray  # (hidden,)
    out_weight: np.ndarray  # (hidden,)

    def scores(self, x: np.ndarray) -> np.ndarray:
        h = np.tanh(beat_net.dot((x - self.mean) / self.scale, self.hidden_weight.T) + self.hidden_bias)
        return beat_net.dot(h, self.out_weight)


def _numbers(value: object, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        a = np.array(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if a.shape != shape or not np.all(np.isfinite(a)) or _has_bool(value):
        return None
    return a


def _has_bool(value: object) -> bool:
    return isinstance(value, bool) or (isinstance(value, list) and any(_has_bool(v) for v in value))


def check(data: object, name: str) -> Ranker:
    """A Ranker from choice.json's contents, or an InputError naming `name` and what is wrong."""
    if not isinstance(data, dict) or data.get("features") != list(FEATURES):
        raise InputError(f"{name}: not a tempo chooser for these features ({len(FEATURES)} named in beat_choice)")
    hidden = data.get("hidden")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or not 1 <= hidden <= 256:
        raise InputError(f"{name}: hidden must be a whole number from 1 to 256")
    n = len(FEATURES)
    shapes = {"mean": (n,), "scale": (n,), "hidden_weight": (hidden, n), "hidden_bias": (hidden,),
              "out_weight": (hidden,)}
    arrays = {}
    for key, shape in shapes.items():
        arrays[key] = _numbers(data.get(key), shape)
        if arrays[key] is None:
            raise InputError(f"{name}: {key} must be finite numbers of shape {shape}")
    if np.any(arrays["scale"] <= 0):
        raise InputError(f"{name}: scale must be positive")
    return Ranker(**arrays)


@functools.lru_cache(maxsize=4)
def load(path: Path = WEIGHTS) -> Ranker:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable tempo chooser ({exc.__class__.__name__})") from None
    return check(data, str(path))


def choose(phrase: Phrase, ranker: Ranker, informed: bool = False) -> TempoEstimate | None:
    """The best-scored candidate as an estimate (its beat the one nearest the first event), with
    the confidence of the estimator that proposed it (0.5 for the others); None without candidates."""
    found = candidates(phrase)
    if not found:
        return None
    best = found[int(np.argmax(ranker.scores(features(phrase, found, informed))))]
    bpm = min(MAX_BPM, max(MIN_BPM, 60.0 / best.period))
    period = 60.0 / bpm
    k = round((phrase.t[0] - best.phase) / period)
    proposer = {"classic": phrase.classic, "learned": phrase.learned}.get(best.source)
    confidence = proposer.confidence if proposer is not None else 0.5
    return TempoEstimate(bpm, best.phase + k * period, confidence)


def estimate_tempo_chosen(onsets: Sequence[float], velocities: Sequence[float] | None = None,
                          prior_bpm: float = 100.0, pitches: Sequence[float] | None = None,
                          informed: bool = False, ranker: Ranker | None = None) -> TempoEstimate | None:
    """The tempo and phase of a phrase (onsets in seconds, velocities 1..127 and MIDI pitches
    optional), the candidates ranked (`ranker` default: the shipped weights). `prior_bpm` is the
    first guess; `informed` says it is the tempo heard before (the previous phrase, a tap, a
    clock), which a player seldom leaves between two phrases, rather than a default. None when
    the hand-made estimator hears no pulse (`listen`; a caller keeps its tempo)."""
    phrase = listen(onsets, velocities, prior_bpm, pitches)
    if phrase is None:
        return None
    return choose(phrase, load() if ranker is None else ranker, informed)
