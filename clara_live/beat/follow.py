"""The beat followed while the player plays: period and phase corrected at every onset.

A phrase's estimate (clara_live.beat.choice) says where the beats are from a whole phrase,
after it ends. Between two estimates the player's beat still moves: a tempo drifts, a phrase
pushes ahead. `BeatFollower` keeps a beat grid (a period and a beat time) and corrects it at each
onset event, as a musician listening along does: the linear phase and period correction of
sensorimotor synchronisation models (Mates 1994; Repp & Keller 2004; the adaptive oscillators of
Large & Jones 1999). An onset near a beat of the grid moves the phase by ALPHA of the asynchrony
and the period by BETA of it; an onset near a half beat by half as much; an onset near neither
(an ornament, a syncopation) changes nothing. Onsets within a chord's spread are one event.

The grid is what the view, the metronome, MIDI clock out and an accompaniment can lock to while
the player plays (`next_beat`), and what a phrase's end hands to the session (live/tempo.py's
TempoKeeper.follow_phrase). Pure: times
are seconds on any clock, nothing here reads one; per onset O(1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.beat.tracker import CHORD, TempoEstimate

ALPHA = 0.5  # phase correction: the share of an on-beat onset's asynchrony taken (chosen on valid: benchmarks)
BETA = 0.2  # period correction: the share of it taken into the period
WINDOW = 0.15  # an onset within this share of a period of a beat (half of it of a half beat) is heard as on it
MAX_CHANGE = 0.25  # the period never moves more than this share from the phrase's estimate between two of them


class BeatGrid(NamedTuple):
    period: float
    beat_time: float


class BeatFollower:
    """A beat grid corrected by each onset; see the module docstring."""

    def __init__(self, alpha: float = ALPHA, beta: float = BETA, window: float = WINDOW) -> None:
        self.alpha, self.beta, self.window = alpha, beta, window
        self.grid: BeatGrid | None = None
        self.anchor_period = 0.0  # the period of the last estimate: corrections stay near it
        self.last_event = -math.inf
        self.corrections = 0

    def seed(self, estimate: TempoEstimate) -> None:
        """Start again from a phrase's estimate (or a tap's, a clock's)."""
        self.grid = BeatGrid(estimate.period, estimate.beat_time)
        self.anchor_period = estimate.period
        self.corrections = 0

    @property
    def bpm(self) -> float | None:
        return None if self.grid is None else 60.0 / self.grid.period

    def onset(self, t: float) -> float | None:
        """An onset at t: corrects the grid; returns the asynchrony (seconds, + late) of the
        beat or half beat it was heard on, None when it counted for nothing."""
        if self.grid is None or not math.isfinite(t):
            return None
        if t - self.last_event < CHORD:
            return None  # one event of a chord or a spread one
        self.last_event = t
        period, beat_time = self.grid
        position = (t - beat_time) / period
        nearest_beat = round(position)
        nearest_half = round(position * 2) / 2
        if abs(position - nearest_beat) <= self.window:
            target, weight = nearest_beat, 1.0
        elif nearest_half != nearest_beat and abs(position - nearest_half) <= self.window / 2:
            target, weight = nearest_half, 0.5
        else:
            return None
        asynchrony = t - (beat_time + target * period)
        beat_time += weight * self.alpha * asynchrony
        # a late onset says the beats were a little longer: the share beta of it goes into the
        # period, kept within MAX_CHANGE of the estimate's
        period += weight * self.beta * asynchrony
        low, high = self.anchor_period * (1 - MAX_CHANGE), self.anchor_period * (1 + MAX_CHANGE)
        period = min(high, max(low, period, 60.0 / MAX_BPM), 60.0 / MIN_BPM)
        # keep the beat time near t, so the grid's anchor never drifts far from the present
        k = round((t - beat_time) / period)
        self.grid = BeatGrid(period, beat_time + k * period)
        self.corrections += 1
        return asynchrony

    def next_beat(self, t: float) -> float | None:
        """The first beat of the grid at or after t."""
        if self.grid is None:
            return None
        period, beat_time = self.grid
        return beat_time + math.ceil((t - beat_time) / period - 1e-9) * period
