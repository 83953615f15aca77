"""Tempo and beat phase from a phrase's note onsets, with no tap.

`estimate_tempo` is a learned beat tracker (after Böck & Davies' TCN beat trackers and Liu et
al., ISMIR 2022, who track beats in performance MIDI): the phrase's notes become frames
(clara_live.beat.net), a small dilated convolutional network trained on ASAP's train works
turns them into a beat activation, and a tempo-by-phase Viterbi decoder (clara_live.beat.dbn)
tracks beats on it, the first guess a soft prior. The tracked beats (on the network's 20 ms
frames) take the times of the events beside them, and a least-squares line through them, refined
by the events on half beats, gives the tempo and phase finer than a frame.

`estimate_tempo_classic` (clara_live.beat.classic) is the hand-made estimator it replaced.

Pure functions (but for the weights' load, cached once): times are seconds on any clock,
nothing here reads one. The result carries a confidence in 0..1; a phrase with too little
evidence (a note or two, a few sustained chords, onsets with no pulse) gives None, and a caller
then keeps its tempo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from clara_live.beat import dbn as beat_dbn
from clara_live.beat import net as beat_net
from clara_live.beat.limits import MAX_BPM, MIN_BPM

CHORD = 0.05  # seconds: onsets closer than this (to the event's first) are one event
MIN_EVENTS = 4  # fewer events than this: no estimate
LEARNED_MARGIN = 0.2  # seconds of frames before the first onset and after the last
LEARNED_MIN_BEATS = 3  # fewer tracked beats than this: no estimate
LEARNED_MIN_CONFIDENCE = 0.1  # the tracked beats' mean activation below this: no estimate
LEARNED_POWER = 1.0  # the activation's exponent before decoding
SNAP = 0.1  # a tracked beat takes the time of an event within this share of a period


class TempoEstimate(NamedTuple):
    bpm: float
    beat_time: float  # seconds: a beat (the one nearest the phrase's first event)
    confidence: float  # 0..1

    @property
    def period(self) -> float:
        return 60.0 / self.bpm

    def beats(self, start: float, end: float) -> np.ndarray:
        """The beat times in [start, end]."""
        first = math.ceil((start - self.beat_time) / self.period - 1e-9)
        last = math.floor((end - self.beat_time) / self.period + 1e-9)
        return self.beat_time + self.period * np.arange(first, last + 1)


def events(onsets: Sequence[float], velocities: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times, weights) of the onset events: onsets within CHORD of an event's first are one
    event, at their velocity-weighted mean time, weighing sqrt(summed velocity / 64)."""
    t = np.asarray(onsets, dtype=float)
    v = np.full(len(t), 64.0) if velocities is None else np.clip(np.asarray(velocities, dtype=float), 1, 127)
    keep = np.isfinite(t)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    times: list[float] = []
    weights: list[float] = []
    start, total, moment = -math.inf, 0.0, 0.0
    for ti, vi in zip(t.tolist(), v.tolist(), strict=True):
        if ti - start >= CHORD:
            if total:
                times.append(moment / total)
                weights.append(total)
            start, total, moment = ti, 0.0, 0.0
        total += vi
        moment += vi * ti
    if total:
        times.append(moment / total)
        weights.append(total)
    return np.array(times), np.sqrt(np.array(weights) / 64.0)


class Heard(NamedTuple):
    """What the learned tracker made of a phrase: its estimate (None when too weak), and the
    network's beat activation (frames from `start`, beat_net.FPS a second) and tempo-head
    probabilities over `tempo_bpm` (None without a head), for a caller that weighs more."""

    estimate: TempoEstimate | None
    activation: np.ndarray
    start: float
    tempo: np.ndarray | None
    tempo_bpm: np.ndarray | None


def estimate_tempo(onsets: Sequence[float], velocities: Sequence[float] | None = None, prior_bpm: float = 100.0,
                   pitches: Sequence[float] | None = None, weights: dict[str, np.ndarray] | None = None,
                   **constants: float) -> TempoEstimate | None:
    """The tempo and phase of a phrase from its note onsets (seconds), velocities (1..127) and
    MIDI pitches (both optional, one per onset), by the learned beat tracker: the network's beat
    activation (clara_live.beat.net; `weights` default: the shipped ones), beats tracked on
    it (clara_live.beat.dbn, `prior_bpm` the first guess), period and phase fitted to the
    events on them (`_fit_beats`, then `refine` on half beats), the beat the one nearest the
    first onset. None when the evidence is too weak: fewer than MIN_EVENTS events,
    fewer than LEARNED_MIN_BEATS beats, or a mean activation on the beats under
    LEARNED_MIN_CONFIDENCE. Keyword constants (tuning): the decoder's, and min_confidence."""
    heard = hear(onsets, velocities, prior_bpm, pitches, weights, **constants)
    return None if heard is None else heard.estimate


def hear(onsets: Sequence[float], velocities: Sequence[float] | None = None, prior_bpm: float = 100.0,
         pitches: Sequence[float] | None = None, weights: dict[str, np.ndarray] | None = None,
         **constants: float) -> Heard | None:
    """`estimate_tempo`, with the network's outputs it decoded; None where no network ran (too
    few events, a bad first guess)."""
    t, w = events(onsets, velocities)
    if len(t) < MIN_EVENTS or not math.isfinite(prior_bpm) or prior_bpm <= 0 or t[-1] - t[0] <= 0:
        return None
    prior_bpm = min(MAX_BPM, max(MIN_BPM, prior_bpm))
    weights = beat_net.load() if weights is None else weights
    start = float(t[0]) - LEARNED_MARGIN
    length = int((t[-1] + LEARNED_MARGIN - start) * beat_net.FPS) + 1
    x = beat_net.frames(onsets, velocities, pitches, start=start, length=length)
    activations, tempo = beat_net.forward(weights, x)
    heard = Heard(None, activations[:, 0], start, tempo, weights.get("tempo.bpm"))
    # sharpened (a ** LEARNED_POWER): the decoder then takes weak off-beat peaks for what they are
    activation = heard.activation ** constants.get("power", LEARNED_POWER)
    decoder = {k: v for k, v in constants.items() if k not in ("min_confidence", "power")}
    head = None if tempo is None else (weights["tempo.bpm"], tempo)
    beats = beat_dbn.track(activation, prior_bpm, head, **decoder) + start
    if len(beats) < LEARNED_MIN_BEATS:
        return heard
    on_beats = np.interp((beats - start) * beat_net.FPS, np.arange(len(activation)), activation)
    confidence = float(np.mean(on_beats))
    if confidence < constants.get("min_confidence", LEARNED_MIN_CONFIDENCE):
        return heard
    period, phase = _fit_beats(beats, t)
    half, phase = refine(t, w, period / 2, phase)  # the events on half beats too: more of them, a finer fit
    period = 2 * half
    bpm = min(MAX_BPM, max(MIN_BPM, 60.0 / period))
    k = round((t[0] - phase) / period)
    return heard._replace(estimate=TempoEstimate(bpm, phase + k * period, confidence))


def _fit_beats(beats: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """The period and phase of the tracked beats, finer than their frames (1 / beat_net.FPS): a
    tracked beat with an event within SNAP of its period takes that event's time, and a least-
    squares line through the beats gives the period and phase (a beat time). Falls back on the
    median interval and the beat nearest the first event when too few beats meet events.
    A frame's 20 ms would put a live answer's notes audibly off the player's grid, and a
    median of frame-quantised intervals is off by up to a frame per beat."""
    period = float(np.median(np.diff(beats)))
    median = period, float(beats[int(np.argmin(np.abs(beats - t[0])))])
    nearest = np.abs(t[None, :] - beats[:, None]).argmin(axis=1)
    near = np.abs(t[nearest] - beats) <= SNAP * period
    if near.sum() < 3:
        return median
    slope, intercept = _line(np.flatnonzero(near).astype(float), t[nearest][near])
    if not 0.9 * period <= slope <= 1.1 * period:  # a line the beats do not follow (rubato): keep the median
        return median
    return float(slope), float(intercept)


def refine(t: np.ndarray, w: np.ndarray, period: float, phase: float) -> tuple[float, float]:
    """Weighted least squares of the events near beats against their beat numbers: the period
    and phase that fit them best (the search's grid is coarser than a player's tempo)."""
    for _ in range(2):
        k = np.round((t - phase) / period)
        d = t - phase - k * period
        near = np.abs(d) <= 0.15 * period
        if near.sum() < 3 or np.ptp(k[near]) < 1:
            break
        new_period, new_phase = _line(k[near], t[near], w[near])
        if not (0.9 * period <= new_period <= 1.1 * period):
            break
        phase, period = new_phase, new_period
    return period, phase


def refine_many(t: np.ndarray, w: np.ndarray, period: np.ndarray, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`refine` of many (period, phase) pairs at once (arrays), the same fit for each (to rounding)."""
    period, phase = np.array(period, dtype=float), np.array(phase, dtype=float)
    active = np.ones(len(period), dtype=bool)
    for _ in range(2):
        p, ph = period[:, None], phase[:, None]
        k = np.round((t[None, :] - ph) / p)
        d = t[None, :] - ph - k * p
        near = np.abs(d) <= 0.15 * p
        spread_k = np.where(near, k, -np.inf).max(1) - np.where(near, k, np.inf).min(1)
        active &= (near.sum(1) >= 3) & (spread_k >= 1)
        weight = np.where(near, w[None, :], 0.0)
        total = np.maximum(weight.sum(1, keepdims=True), 1e-300)
        mx = (weight * k).sum(1, keepdims=True) / total
        my = (weight * t[None, :]).sum(1, keepdims=True) / total
        dx = k - mx
        spread = (weight * dx * dx).sum(1)
        slope = np.where(spread > 0, (weight * dx * (t[None, :] - my)).sum(1) / np.where(spread > 0, spread, 1.0), 0.0)
        intercept = my[:, 0] - slope * mx[:, 0]
        active &= (0.9 * period <= slope) & (slope <= 1.1 * period)
        period = np.where(active, slope, period)
        phase = np.where(active, intercept, phase)
    return period, phase


def _line(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """(slope, intercept) of the (weighted) least-squares line through the points, in closed form
    (numpy's lstsq and polyfit go through LAPACK, which may spread even two columns over cores)."""
    w = np.ones_like(x) if w is None else w
    total = float(np.sum(w))
    mx, my = float(np.sum(w * x)) / total, float(np.sum(w * y)) / total
    dx = x - mx
    spread = float(np.sum(w * dx * dx))
    slope = float(np.sum(w * dx * (y - my))) / spread if spread > 0 else 0.0
    return slope, my - slope * mx
