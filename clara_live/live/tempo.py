"""Time on the live step grid: the current tempo, tap tempo and an incoming MIDI clock.

All times are seconds on the monotonic clock; steps are the codec's (sample_freq per beat).
Nothing here reads a clock itself: callers pass the time of each event in.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

MIN_BPM, MAX_BPM = 20.0, 300.0
TICKS_PER_BEAT = 24  # MIDI clock
TAP_RESET = 2.0  # seconds: a tap after a longer gap starts a new count
CLOCK_TIMEOUT = 0.5  # seconds without a clock tick before the clock no longer leads
CLOCK_MIN_BPM, CLOCK_MAX_BPM = 30.0, 300.0  # a clock outside these is reported and ignored


class Grid(NamedTuple):
    """A linear map from seconds to (fractional) steps: anchor_time is at anchor_step."""

    anchor_time: float
    anchor_step: float
    bpm: float
    sample_freq: int

    @property
    def step_seconds(self) -> float:
        return 60.0 / (self.bpm * self.sample_freq)

    def step_at(self, t: float) -> float:
        return self.anchor_step + (t - self.anchor_time) / self.step_seconds

    def time_of(self, step: float) -> float:
        return self.anchor_time + (step - self.anchor_step) * self.step_seconds

    def with_bpm(self, bpm: float, t: float) -> Grid:
        """The same position at t, going on at another tempo."""
        return Grid(t, self.step_at(t), bpm, self.sample_freq)

    def pinned(self, t: float, step: float) -> Grid:
        """The same tempo, shifted so that t falls exactly on step."""
        return Grid(t, step, self.bpm, self.sample_freq)


def clamp_bpm(bpm: float) -> float:
    return min(MAX_BPM, max(MIN_BPM, bpm))


def next_beat(step: float, sample_freq: int) -> int:
    """The first beat (a multiple of sample_freq) at or after step."""
    return int(math.ceil(step / sample_freq - 1e-9)) * sample_freq


class TapTempo:
    """Tempo from the intervals between taps: the median of the last few, after two taps."""

    def __init__(self, keep: int = 4) -> None:
        self.taps: deque[float] = deque(maxlen=keep + 1)

    def tap(self, t: float) -> float | None:
        """Register a tap at t; the new tempo, or None while there is no interval yet."""
        if self.taps and t - self.taps[-1] > TAP_RESET:
            self.taps.clear()
        self.taps.append(t)
        if len(self.taps) < 2:
            return None
        gaps = sorted(b - a for a, b in zip(list(self.taps)[:-1], list(self.taps)[1:], strict=True))
        return clamp_bpm(60.0 / gaps[len(gaps) // 2])


class ClockFollower:
    """Tempo and beat phase from MIDI clock: 24 ticks per beat, start, continue and stop.

    The tempo is the mean interval of the last beat's worth of ticks. After a start message
    the first tick is a downbeat; `tick` says when a tick begins a beat. A clock that ticks
    without a start message still sets the tempo. A clock leads only while it ticks at a tempo
    within CLOCK_MIN_BPM..CLOCK_MAX_BPM and has not been stopped (0xFC): a stopped, silent or
    out-of-range clock hands the tempo back; `ignored` holds the tempo of an out-of-range one.
    """

    def __init__(self) -> None:
        self.ticks: deque[float] = deque(maxlen=TICKS_PER_BEAT + 1)
        self.count = 0  # ticks since start
        self.running = False
        self.stopped = False  # a stop message came, and no start or continue since
        self.last = -math.inf  # the last tick at a tempo it follows
        self.ignored: float | None = None  # the tempo of a clock ticking out of range, while it does

    def start(self, t: float) -> None:
        self.running, self.stopped, self.count = True, False, 0
        self.ticks.clear()
        self.last = t

    def resume(self, t: float) -> None:
        self.running, self.stopped = True, False
        self.last = t

    def stop(self) -> None:
        self.running, self.stopped = False, True

    def tick(self, t: float) -> tuple[float | None, bool]:
        """(tempo or None while too few ticks, stopped or out of range, whether this tick begins a beat)."""
        on_beat = self.running and self.count % TICKS_PER_BEAT == 0
        if self.running:
            self.count += 1
        self.ticks.append(t)
        if len(self.ticks) < 7:  # a quarter of a beat: enough for a first estimate
            return None, on_beat
        span = self.ticks[-1] - self.ticks[0]
        bpm = 60.0 * (len(self.ticks) - 1) / (span * TICKS_PER_BEAT) if span > 0 else math.inf
        if not CLOCK_MIN_BPM <= bpm <= CLOCK_MAX_BPM:
            self.ignored = bpm
            return None, False
        self.ignored = None
        if self.stopped:
            return None, False
        self.last = t
        return bpm, on_beat

    def leads(self, t: float) -> bool:
        """Whether the clock sets the tempo at t: it ticked recently at a tempo it follows, and was not
        stopped (its beat phase counts only while running, after a start or continue)."""
        return not self.stopped and t - self.last < CLOCK_TIMEOUT
