"""Beats out of a live session: the metronome's clicks and MIDI clock out, on the session's grid.

`BeatsOut.due(grid, t)` returns what to send in the next `ahead` seconds. The next beat or tick is
found by time, not by number: a phrase's first note re-pins the grid and may renumber its beats;
half a period after the last one sent keeps each single.
"""

from __future__ import annotations

import math

from clara_live.config import LiveConfig
from clara_live.live.commands import Send
from clara_live.live.midi import CLOCK, NOTE_OFF, NOTE_ON, START
from clara_live.live.tempo import Grid

CLICK_S = 0.05  # seconds a click sounds
CLOCK_PPQN = 24


class BeatsOut:
    def __init__(self, live: LiveConfig, sample_freq: int, beats_per_bar: int) -> None:
        self.live, self.sf, self.beats_per_bar = live, sample_freq, beats_per_bar
        self.last_click = -math.inf  # time of the last click scheduled
        self.last_clock = -math.inf  # time of the last clock tick scheduled
        self.started = False  # clock out: the start message went out

    def due(self, grid: Grid, t: float, ahead: float = 0.1) -> list[Send]:
        out: list[Send] = []
        if self.live.metronome:
            out += self._clicks(grid, t, ahead)
        if self.live.clock_out:
            out += self._clock(grid, t, ahead)
        return out

    def _clicks(self, grid: Grid, t: float, ahead: float) -> list[Send]:
        out = []
        ch = self.live.metronome_channel - 1
        after = max(t, self.last_click + 30.0 / grid.bpm)
        beat = math.ceil(grid.step_at(after) / self.sf - 1e-9)
        while grid.time_of(beat * self.sf) < t + ahead:
            at = grid.time_of(beat * self.sf)
            accent = beat % self.beats_per_bar == 0
            note = self.live.metronome_note if accent else self.live.metronome_note + 1
            out.append(Send(at, (NOTE_ON | ch, note, 110 if accent else 70), "metronome"))
            out.append(Send(at + CLICK_S, (NOTE_OFF | ch, note, 0), "metronome"))
            self.last_click = at
            beat += 1
        return out

    def _clock(self, grid: Grid, t: float, ahead: float) -> list[Send]:
        out = []
        per_tick = self.sf / CLOCK_PPQN
        if not self.started:
            out.append(Send(t, (START,), "clock"))
            self.started = True
        after = max(t, self.last_clock + 60.0 / grid.bpm / (2 * CLOCK_PPQN))
        tick = math.ceil(grid.step_at(after) / per_tick - 1e-9)
        while grid.time_of(tick * per_tick) < t + ahead:
            self.last_clock = grid.time_of(tick * per_tick)
            out.append(Send(self.last_clock, (CLOCK,), "clock"))
            tick += 1
        return out
