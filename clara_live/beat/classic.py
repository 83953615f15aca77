"""The hand-made tempo estimator the learned tracker (clara_live.beat.tracker) replaced, kept for the
benchmark's comparison and as `live.tempo_method: classic`: after the tempo-induction methods of
the beat-tracking literature (Dixon 2001's inter-onset intervals, Ellis 2007's autocorrelation
with a log-Gaussian tempo prior and its duple/triple "metrical" sums, Davies and Plumbley 2007's
comb of multiples):

1. Onsets closer than CHORD seconds are one event (a chord, or a spread one); an event weighs
   the square root of its summed velocity, so a loud chord counts more than a soft note.
2. The events become an onset-strength signal (a Gaussian pulse each, SIGMA seconds wide) and
   its autocorrelation, corrected for the phrase's finite length.
3. Every candidate beat period P (MIN_BPM..MAX_BPM, in small log steps) is scored by a comb
   over the autocorrelation at P, 2P, 3P and 4P (the beat and the bar-level periods it
   implies), times a log-Gaussian prior in octaves around the first guess (the previous
   tempo, or --bpm), times a density term (a beat usually holds about DENSITY events).
4. Octave errors (x2, x1/2, x3, x1/3 of the best period) are settled between those five by
   the same score plus accent evidence: the share of the events' weight that falls on the beats.
5. The phase puts the most onset weight on the beats; a weighted least-squares fit of the
   events near beats then refines the period and phase together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.beat.net import dot
from clara_live.beat.tracker import MIN_EVENTS, TempoEstimate, events, refine

SIGMA = 0.025  # seconds: the width of an event's pulse in the onset-strength signal
HOP = 0.005  # seconds: the onset-strength signal's resolution
PRIOR_OCTAVES = 1.0  # the tempo prior's standard deviation, in octaves around the first guess
DENSITY = 2.0  # events per beat the density term is centred on ...
DENSITY_OCTAVES = 2.0  # ... and its standard deviation, in octaves
GAMMA = 2.0  # the comb score's exponent against the priors (higher: the periodicity counts more)
ACCENT = 0.5  # how much the accent evidence counts when settling octave errors
COMB = (1.0, 0.5, 0.33, 0.25)  # weights of the autocorrelation at P, 2P, 3P, 4P
MIN_BEATS = 2.0  # a candidate period must fit this many times into the phrase
MIN_CONFIDENCE = 0.5  # below this the estimate is not worth a tempo change
STEPS_PER_OCTAVE = 96  # resolution of the period search (about 0.7 % a step)
OCTAVES = (1 / 3, 1 / 2, 1.0, 2.0, 3.0)


def estimate_tempo_classic(onsets: Sequence[float], velocities: Sequence[float] | None = None,
                           prior_bpm: float = 100.0, **constants: float) -> TempoEstimate | None:
    """The hand-made estimator (steps 1-5 above): the tempo and phase of a phrase from its note
    onsets (seconds) and velocities (1..127, optional); `prior_bpm` is the first guess. None when
    the evidence is too weak. Keyword constants override this module's (for tuning:
    prior_octaves, density, density_octaves, accent, min_confidence)."""
    t, w = events(onsets, velocities)
    if len(t) < MIN_EVENTS or not math.isfinite(prior_bpm) or prior_bpm <= 0 or t[-1] - t[0] <= 0:
        return None
    return estimate_from_events(t, w, prior_bpm, autocorrelation(t, w), **constants)


def autocorrelation(t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The onset-strength autocorrelation of events (`events`' times and weights), as step 2 makes it."""
    return _autocorrelation(t - t[0], w, float(t[-1] - t[0]))


def estimate_from_events(t: np.ndarray, w: np.ndarray, prior_bpm: float, ac: np.ndarray,
                         **constants: float) -> TempoEstimate | None:
    """`estimate_tempo_classic` on events already grouped (at least MIN_EVENTS, spanning some
    time) and their `autocorrelation`, for a caller that weighs them further (beat/choice.py)."""
    c = {"prior_octaves": PRIOR_OCTAVES, "density": DENSITY, "density_octaves": DENSITY_OCTAVES,
         "accent": ACCENT, "gamma": GAMMA, "min_confidence": MIN_CONFIDENCE, **constants}
    span = float(t[-1] - t[0])
    prior_bpm = min(MAX_BPM, max(MIN_BPM, prior_bpm))
    # candidate periods: MAX_BPM..MIN_BPM, each fitting MIN_BEATS times into the phrase
    longest = min(60.0 / MIN_BPM, span / MIN_BEATS)
    shortest = 60.0 / MAX_BPM
    if longest <= shortest:
        return None
    n = max(2, int(math.log2(longest / shortest) * STEPS_PER_OCTAVE) + 1)
    periods = shortest * (longest / shortest) ** (np.arange(n) / (n - 1))
    salience = _comb(ac, periods, span)
    rate = (len(t) - 1) / span  # events per second
    # the comb's peaks only (a product of broad curves would slide off them), ranked with the priors
    peak = np.r_[False, (salience[1:-1] >= salience[:-2]) & (salience[1:-1] >= salience[2:]), False]
    if not peak.any():
        peak[int(np.argmax(salience))] = True
    score = np.where(peak, np.maximum(salience, 0.0) ** c["gamma"] * _prior(periods, prior_bpm, c)
                     * _density(periods, rate, c), -1.0)
    best = float(periods[int(np.argmax(score))])
    # octave errors: the best period's multiples and fractions, with accent evidence too
    candidates = [best * m for m in OCTAVES if shortest <= best * m <= longest]
    ranked = []
    for period in candidates:
        s = float(_comb(ac, np.array([period]), span)[0])
        phase, on_beat = _phase(t, w, period)
        accent = on_beat ** c["accent"]
        ranked.append((max(s, 0.0) ** c["gamma"] * float(_prior(np.array([period]), prior_bpm, c)[0])
                       * float(_density(np.array([period]), rate, c)[0]) * accent, period, phase, s))
    _, period, phase, strength = max(ranked)
    period, phase = refine(t, w, period, phase)
    bpm = 60.0 / period
    if not MIN_BPM <= bpm <= MAX_BPM:
        bpm = min(MAX_BPM, max(MIN_BPM, bpm))
        period = 60.0 / bpm
    confidence = _confidence(t, w, period, phase, strength, span)
    if confidence < c["min_confidence"]:
        return None
    # the beat nearest the first event
    k = round((t[0] - phase) / period)
    return TempoEstimate(bpm, phase + k * period, confidence)


def _autocorrelation(t: np.ndarray, w: np.ndarray, span: float) -> np.ndarray:
    """The onset-strength signal's autocorrelation by lag (HOP seconds a lag), normalised to 1
    at lag 0 and corrected for the overlap a finite phrase leaves at each lag."""
    size = int(math.ceil((span + 8 * SIGMA) / HOP)) + 1
    grid = np.arange(size) * HOP - 4 * SIGMA
    signal = np.zeros(size)
    reach = int(math.ceil(4 * SIGMA / HOP))
    for ti, wi in zip(t.tolist(), w.tolist(), strict=True):
        centre = int(round((ti + 4 * SIGMA) / HOP))
        lo, hi = max(0, centre - reach), min(size, centre + reach + 1)
        signal[lo:hi] += wi * np.exp(-0.5 * ((grid[lo:hi] - ti) / SIGMA) ** 2)
    fft = np.fft.rfft(signal, 2 * size)
    ac = np.fft.irfft(fft * np.conj(fft))[:size]
    lags = np.arange(size) * HOP
    overlap = np.clip(1.0 - lags / (span + 1e-9), 0.25, 1.0)  # fewer pairs can meet at a long lag
    ac = ac / overlap
    return ac / ac[0] if ac[0] > 0 else ac


def _comb(ac: np.ndarray, periods: np.ndarray, span: float) -> np.ndarray:
    """Each period's comb score: the weighted mean autocorrelation at its multiples within the
    phrase (a multiple beyond it has no evidence, for or against)."""
    lags = np.arange(len(ac)) * HOP
    total = np.zeros(len(periods))
    norm = np.zeros(len(periods))
    for k, weight in enumerate(COMB, start=1):
        lag = k * periods
        inside = lag <= span
        value = np.interp(lag, lags, ac)
        total += np.where(inside, weight * value, 0.0)
        norm += np.where(inside, weight, 0.0)
    return np.where(norm > 0, total / np.maximum(norm, 1e-12), 0.0)


def _prior(periods: np.ndarray, prior_bpm: float, c: dict) -> np.ndarray:
    octaves = np.log2(60.0 / periods / prior_bpm)
    return np.exp(-0.5 * (octaves / c["prior_octaves"]) ** 2)


def _density(periods: np.ndarray, rate: float, c: dict) -> np.ndarray:
    octaves = np.log2(np.maximum(rate * periods, 1e-6) / c["density"])
    return np.exp(-0.5 * (octaves / c["density_octaves"]) ** 2)


def _phase(t: np.ndarray, w: np.ndarray, period: float, points: int = 48) -> tuple[float, float]:
    """The phase (a beat time) that puts the most onset weight near beats, and the accent
    evidence there: the mean weight of the events on beats over the mean weight of all (> 1
    when the beats carry the heavier events), blended towards 1 by how few events are on beats."""
    tolerance = max(SIGMA, 0.08 * period)
    phases = t[0] + period * np.arange(points) / points
    d = np.abs((t[None, :] - phases[:, None] + period / 2) % period - period / 2)
    phase = float(phases[int(np.argmax(dot(np.exp(-0.5 * (d / tolerance) ** 2), w)))])
    d = np.abs((t - phase + period / 2) % period - period / 2)
    on = d <= 2 * tolerance
    if not on.any():
        return phase, 1.0
    accent = float(np.mean(w[on]) / np.mean(w))
    share = float(on.sum()) / len(t)  # beats that carry nearly no events say little
    return phase, accent * min(1.0, 2 * share) + (1 - min(1.0, 2 * share)) * 0.5


def _phases(t: np.ndarray, w: np.ndarray, periods: np.ndarray, points: int = 48) -> np.ndarray:
    """`_phase`'s phase for each of many periods at once."""
    p = periods[:, None, None]
    tolerance = np.maximum(SIGMA, 0.08 * p)
    phases = t[0] + p * (np.arange(points) / points)[None, :, None]  # (periods, points, 1)
    d = np.abs((t[None, None, :] - phases + p / 2) % p - p / 2)
    best = np.argmax(np.exp(-0.5 * (d / tolerance) ** 2) @ w, axis=1)
    return phases[np.arange(len(periods)), best, 0]


def _confidence(t: np.ndarray, w: np.ndarray, period: float, phase: float, strength: float, span: float) -> float:
    """0..1: the comb score (periodicity), the share of onset weight on beats or half beats, and
    how many beats the phrase spans (a phrase of two beats says little), together."""
    d = np.abs((t - phase + period / 4) % (period / 2) - period / 4)  # distance to the nearest half beat
    aligned = float(np.sum(w * (d <= max(2 * SIGMA, 0.1 * period))) / np.sum(w))
    beats = span / period
    length = min(1.0, (beats - 1.0) / 3.0) if beats > 1 else 0.0
    count = min(1.0, (len(t) - 2) / 6)  # a handful of notes fits some grid by chance
    return float(max(0.0, min(1.0, strength)) ** 0.5 * aligned * length * count) ** (1 / 2)
