"""The beat followed while the player plays: period and phase corrected at every onset.

A phrase's estimate (clara_live.beat.choice) says where the beats are from a whole phrase,
after it ends. Between two estimates the player's beat still moves: a tempo drifts, a phrase
pushes ahead. `BeatFollower` keeps a beat grid (a period and a beat time) and corrects it at each
onset event, as a musician listening along does: the linear phase and period correction of
sensorimotor synchronisation models (Mates 1994; Repp & Keller 2004; the adaptive oscillators of
Large & Jones 1999). An onset near a beat of the grid moves the phase by ALPHA of the asynchrony
and the period by BETA of it; an onset near a half beat by half as much; an onset near neither
(an ornament, a syncopation) changes nothing. Onsets within a chord's spread are one event.

The grid is what the view, the metronome, MIDI clock out and an accompaniment lock to while
the player plays, once the follower is `locked` on the player's beat (live/tempo.py's
TempoKeeper.beat_grid), and what a phrase's end hands to the session (TempoKeeper.follow_phrase).
Locked: at least LOCK_HEARD onsets corrected it since its seed, and its running misfit (an
exponential mean over events, FIT_WEIGHT each: 0 for an onset on a beat, rising to 1 at the
window's edge, MISS for an onset on neither a beat nor a half beat) is under LOCKED. On the
player's beat most events land near beats or half beats, and a sixteenth or a triplet now and
then misses; a grid at a wrong tempo catches onsets only by chance, spread across its windows.
(tests/test_beat_follow.py measures it on syncopated melodies: locked most of the time at the
player's tempo, seldom at 2/3, 5/6 or 3/2 of it.) Pure: times are seconds on any clock, nothing here reads
one; per onset O(1) (about 2 us).
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
LOCK_HEARD = 3  # locked: at least this many corrections since the seed ...
LOCKED = 0.45  # ... and a running misfit under this
FIT_WEIGHT = 0.2  # each event's weight in the running misfit
MISS = 0.7  # an onset on neither a beat nor a half beat, in the running misfit


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
        self.misfit = LOCKED  # the running misfit (see the module docstring): a seed is on the edge

    def seed(self, estimate: TempoEstimate) -> None:
        """Start again from a phrase's estimate (or a tap's, a clock's)."""
        self.grid = BeatGrid(estimate.period, estimate.beat_time)
        self.anchor_period = estimate.period
        self.corrections = 0
        self.misfit = LOCKED

    def pin(self, t: float, bpm: float) -> None:
        """Start again from an onset at t heard as a beat at bpm (a phrase's first note): the onset
        is the seed's beat, not a correction (a chord's other notes count with it)."""
        self.seed(TempoEstimate(bpm, t, 1.0))
        self.last_event = t

    @property
    def locked(self) -> bool:
        """Whether the grid is on the player's beat (see the module docstring)."""
        return self.grid is not None and self.corrections >= LOCK_HEARD and self.misfit < LOCKED

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
            target, weight, window = nearest_beat, 1.0, self.window
        elif nearest_half != nearest_beat and abs(position - nearest_half) <= self.window / 2:
            target, weight, window = nearest_half, 0.5, self.window / 2
        else:
            self.misfit += FIT_WEIGHT * (MISS - self.misfit)
            return None
        self.misfit += FIT_WEIGHT * (abs(position - target) / window - self.misfit)
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
