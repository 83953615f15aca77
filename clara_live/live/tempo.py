"""Time on the live step grid: the current tempo, tap tempo, an incoming MIDI clock and Ableton
Link's timeline, and `TempoKeeper`, which of them sets the session's grid.

All times are seconds on the monotonic clock; steps are the codec's (sample_freq per beat).
Nothing here reads a clock itself: callers pass the time of each event in.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from clara_live.beat.classic import estimate_tempo_classic
from clara_live.beat.follow import BeatFollower
from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.beat.tracker import TempoEstimate
from clara_live.live.midi import CLOCK, CONTINUE, START, STOP

FOLLOW_AGREES = 0.04  # the followed beat's tempo this close to a phrase's heard one ...
FOLLOW_PHASE = 0.012  # ... and its next beat further than this (seconds) from the grid's ...
FOLLOW_TEMPO = 0.01  # ... or its tempo further than this share: the follower's beat wins at a phrase's end
SEED_ONSETS = 6  # while the follower is not locked, the phrase so far is heard (beat/classic.py) from this many
SEED_SPAN = 1.5  # ... onsets spanning this many seconds at least ...
SEED_EVERY = 2.0  # ... at most once in this many seconds ...
SEED_WINDOW = 10.0  # ... from the onsets of the last this many seconds
TICKS_PER_BEAT = 24  # MIDI clock
TAP_RESET = 2.0  # seconds: a tap after a longer gap starts a new count
CLOCK_TIMEOUT = 0.5  # seconds without a clock tick before the clock no longer leads
CLOCK_MIN_BPM, CLOCK_MAX_BPM = 30.0, 300.0  # a clock outside these is reported and ignored
LINK_PHASE = 0.001  # seconds: the grid is moved onto Link's beats when it is further off than this
LINK_BPM = 0.001  # ... or its tempo further from Link's


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



class LinkState(NamedTuple):
    """Ableton Link's timeline as read at one moment (live/link.py): its tempo, its beat at `at`
    (seconds, monotonic clock) and how many other peers share it."""

    bpm: float
    beat: float
    at: float
    peers: int

    def beat_at(self, t: float) -> float:
        return self.beat + (t - self.at) * self.bpm / 60.0


class TempoKeeper:
    """Who sets the session's tempo and beat: its first guess (`source` "bpm"), the phrase heard
    ("playing", set by the session), taps ("tap"), an incoming MIDI clock ("clock") or Ableton Link
    with other peers ("link", which wins over the clock). Methods take
    the stream's position `now` (steps: the grid is re-pinned only at or after it) and return log lines.

    The player's beat is followed as they play (`follower`, beat/follow.py): from each phrase's
    first note at the session's tempo (`begin_phrase`), corrected at each onset (`onset`), so that
    the metronome, MIDI clock out and the view keep the player's beat while they play (`beat_grid`)
    and a phrase whose tempo drifted is answered on the beat where the player left it
    (`follow_phrase`). While the follower is not locked on the player's beat (a first phrase far
    from the first guess), the phrase so far is heard by the hand-made estimator (about 1 ms) at
    most once in SEED_EVERY seconds, and the follower starts again from its tempo and phase."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.source = "bpm"
        self.taps = TapTempo()
        self.clock = ClockFollower()
        self.before_clock = (grid.bpm, "bpm")  # the tempo and its source before a MIDI clock took over
        self.follower = BeatFollower()
        self.followed: Grid | None = None  # the follower's beat as a grid, since it last locked in this phrase
        self.onsets: deque[tuple[float, int]] = deque()  # the phrase's last SEED_WINDOW s of (onset, velocity)
        self.tried = -math.inf  # when the phrase so far was last heard for the follower
        self.link_ignored: float | None = None  # the tempo of a Link session out of range, while it is
        # the grid itself moves with the followed beat, numbered on from its own steps, where their tempos agree
        # (the accompaniment: the player's notes and her plan are written and timed on one grid, so her steps
        # never fall behind, and a follower gone astray, say to 4:5 of the tempo, moves nothing)
        self.grid_follows = False

    def begin_phrase(self, t: float) -> None:
        """A phrase's first note at t, on a beat of the grid, while the tempo is heard from the
        playing: the follower starts from it at the grid's tempo."""
        self.follower.pin(t, self.grid.bpm)
        self.followed, self.tried = None, -math.inf
        self.onsets.clear()

    def onset(self, t: float, velocity: int) -> None:
        """A note's onset at t while the tempo is heard from the playing: the follower corrected
        (and, while it is not locked, perhaps started again from the phrase so far, see the class
        docstring), and the beat grid moved with it while it is locked."""
        follower = self.follower
        follower.onset(t)
        onsets = self.onsets
        onsets.append((t, velocity))
        while t - onsets[0][0] > SEED_WINDOW:
            onsets.popleft()
        if (not follower.locked and len(onsets) >= SEED_ONSETS and t - onsets[0][0] >= SEED_SPAN
                and t - self.tried >= SEED_EVERY):
            self.tried = t
            self._seed([o for o, _ in onsets], [v for _, v in onsets])
        if follower.locked and follower.grid is not None:
            period, beat_time = follower.grid
            sf = self.grid.sample_freq
            # the beats keep their numbers (the bar's accent) from one correction to the next
            base = self.followed if self.followed is not None and not self.grid_follows else self.grid
            self.followed = Grid(beat_time, round(base.step_at(beat_time) / sf) * sf, 60.0 / period, sf)
            if self.grid_follows:  # one beat for all, moved only by a follower that agrees with it
                if abs(self.followed.bpm / self.grid.bpm - 1.0) <= FOLLOW_AGREES:
                    self.grid = self.followed
                else:
                    self.followed = None

    def _seed(self, times: list[float], velocities: list[int]) -> None:
        """The follower started again from the phrase so far heard by the hand-made estimator, and
        the phrase's onsets run through it again (so that it is locked at once where they fit)."""
        estimate = estimate_tempo_classic(times, velocities, prior_bpm=self.grid.bpm)
        if estimate is None:
            return
        follower = self.follower
        follower.seed(estimate)
        follower.last_event = -math.inf
        for onset in times:
            follower.onset(onset)

    def beat_grid(self, t: float) -> Grid:
        """The beats the metronome, MIDI clock out and the view follow at t: the player's beat as
        followed (since the follower last locked on it in this phrase) while the tempo is heard
        from the playing, else the session's grid (a tap's, a MIDI clock's, Link's)."""
        return self.followed if self.followed is not None and self.following(t) else self.grid

    def following(self, t: float) -> bool:
        """Whether the beats follow the player's beat at t (`beat_grid`)."""
        return self.followed is not None and self.hears_tempo(t)

    def follow_phrase(self, t: float, now: int) -> bool:
        """At a phrase's end, once its tempo is heard (the grid set from it): where the follower,
        locked on the player's beat through the phrase, agrees with the heard tempo (within
        FOLLOW_AGREES) but says the player left it (its next beat after t more than FOLLOW_PHASE
        from the grid's, or its tempo more than FOLLOW_TEMPO from it: a drift), the grid goes on
        from the follower's beat and tempo at t, the beat where the player left it. On steady
        playing the heard tempo's fit through the whole phrase is the finer one, and stays. The
        follower then starts again from the grid. Whether the grid moved."""
        sf = self.grid.sample_freq
        follower = self.follower
        moved = False
        if (follower.locked and follower.bpm is not None
                and abs(follower.bpm / self.grid.bpm - 1.0) <= FOLLOW_AGREES):
            beat_time = follower.next_beat(t)
            assert beat_time is not None
            off = self.grid.step_at(beat_time) / sf
            off = abs(off - round(off)) * 60.0 / self.grid.bpm  # seconds from the grid's nearest beat
            if off > FOLLOW_PHASE or abs(follower.bpm / self.grid.bpm - 1.0) > FOLLOW_TEMPO:
                beat_step = max(next_beat(now, sf), round(self.grid.step_at(beat_time) / sf) * sf)
                self.grid = Grid(beat_time, float(beat_step), clamp_bpm(follower.bpm), sf)
                moved = True
        beat = next_beat(self.grid.step_at(t), sf)
        follower.seed(TempoEstimate(self.grid.bpm, self.grid.time_of(beat), 1.0))
        self.followed = None  # the beats go on from the grid
        return moved

    def hears_tempo(self, t: float) -> bool:
        """Whether a phrase's tempo is heard from the playing (no tap, clock or Link has it)."""
        return self.source not in ("tap", "clock", "link") and not self.clock.leads(t)

    def beat_led(self, t: float) -> bool:
        """Whether a MIDI clock or Link sets the beat (a phrase's first note then does not move it)."""
        return self.source == "link" or self.clock.leads(t)

    def _pin_beat(self, t: float, now: int) -> None:
        sf = self.grid.sample_freq
        beat = round(self.grid.step_at(t) / sf) * sf
        if beat >= now:
            self.grid = self.grid.pinned(t, beat)

    def tap(self, t: float, now: int) -> list[str]:
        bpm = self.taps.tap(t)
        if bpm is None or self.beat_led(t):
            return []
        self.grid = self.grid.with_bpm(bpm, t)
        self._pin_beat(t, now)  # the tap is a beat
        self.source = "tap"
        self.followed = None  # the followed beat no longer leads
        return [f"tempo {bpm:.1f} bpm (tap)"]

    def realtime(self, status: int, t: float, now: int) -> list[str]:
        """A MIDI clock, start, continue or stop message at t."""
        if status == START:
            self.clock.start(t)
        elif status == CONTINUE:
            self.clock.resume(t)
        elif status == STOP:
            self.clock.stop()
            return self.clock_gone(t)
        elif status == CLOCK:
            was_ignored = self.clock.ignored is not None
            bpm, on_beat = self.clock.tick(t)
            out = []
            if self.clock.ignored is not None and not was_ignored:
                out.append(f"MIDI clock at {self.clock.ignored:.0f} bpm ignored: outside "
                           f"{CLOCK_MIN_BPM:.0f}-{CLOCK_MAX_BPM:.0f} bpm")
            if bpm is not None and self.source != "link":  # Link leads: the clock is only counted
                if self.source != "clock" or abs(bpm - self.grid.bpm) >= 0.5:
                    out.append(f"tempo {bpm:.1f} bpm (MIDI clock)")
                if self.source != "clock":
                    self.before_clock = (self.grid.bpm, self.source)
                self.grid = self.grid.with_bpm(bpm, t)
                self.source = "clock"
                self.followed = None  # the followed beat no longer leads
                if on_beat:
                    self._pin_beat(t, now)
            return out
        return []

    def clock_gone(self, t: float) -> list[str]:
        """A clock that set the tempo no longer leads (stopped, silent or out of range): the tempo
        goes back to what it was before the clock took it, and the playing sets it again."""
        if self.source != "clock" or self.clock.leads(t):
            return []
        bpm, source = self.before_clock
        why = "stopped" if self.clock.stopped else "out of range" if self.clock.ignored is not None else "silent"
        self.grid = self.grid.with_bpm(bpm, t)
        self.source = source
        return [f"MIDI clock {why}: tempo {bpm:.1f} bpm ({source}) again"]

    def link(self, state: LinkState, t: float) -> list[str]:
        """Link's timeline at t. While Link has other peers and a tempo within MIN_BPM..MAX_BPM, it
        leads: the grid takes its tempo, and the grid's beats fall on Link's (the nearest: the grid
        moves by at most half a beat when Link first leads, then by a hair). When the last peer
        leaves, the tempo stays until the playing, a tap or a MIDI clock sets another."""
        out: list[str] = []
        in_range = MIN_BPM <= state.bpm <= MAX_BPM
        if state.peers and not in_range and self.link_ignored is None:
            out.append(f"Link at {state.bpm:.0f} bpm ignored: outside {MIN_BPM:.0f}-{MAX_BPM:.0f} bpm")
        self.link_ignored = None if in_range or not state.peers else state.bpm
        if not state.peers or not in_range:
            if self.source == "link":
                self.source = "bpm"
                why = "no other peers" if not state.peers else "out of range"
                out.append(f"Link: {why}; tempo {self.grid.bpm:.1f} bpm until the playing sets another")
            return out
        if self.source != "link" or abs(state.bpm - self.grid.bpm) >= 0.5:
            out.append(f"tempo {state.bpm:.1f} bpm (Link, {state.peers} peer{'s' if state.peers > 1 else ''})")
        sf = self.grid.sample_freq
        here = self.grid.step_at(t) / sf  # beats
        shift = (state.beat_at(t) - here + 0.5) % 1.0 - 0.5  # beats, [-0.5, 0.5)
        if (self.source != "link" or abs(state.bpm - self.grid.bpm) > LINK_BPM
                or abs(shift) * 60.0 / state.bpm > LINK_PHASE):
            self.grid = Grid(t, (here + shift) * sf, state.bpm, sf)
        self.source = "link"
        self.followed = None  # the followed beat no longer leads
        return out
