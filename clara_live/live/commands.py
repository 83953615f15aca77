"""What the live session asks of the world around it: the commands `Session.on_event` and `on_tick`
return (messages for the output scheduler, tokens and answers for the model worker, log lines)."""

from __future__ import annotations

from typing import NamedTuple

from clara_live.config import SamplingConfig
from clara_live.live.tempo import Grid


class Send(NamedTuple):
    """A MIDI message for the output at an absolute time (seconds, monotonic clock)."""

    time: float
    message: tuple[int, ...]
    track: str  # "player" (passthrough), "metronome", "clock"


class Feed(NamedTuple):
    """The player's tokens (ids in the model's vocabulary), to be fed to the model now. `time` is
    the arrival of the event that made them (seconds, monotonic), or None for tokens time itself
    made (a deferred note-off, a phrase's end): those are not note-in latency. `step` is where the
    session's stream stands after them: the worker's stream must stand there too."""

    ids: tuple[int, ...]
    velocity: int
    time: float | None
    step: int


class Answer(NamedTuple):
    """Clara's turn: from start_step (a beat) for `steps` steps, timed by `grid`.

    `from_step` (a beat, at most start_step) is where the model's stream goes straight on into
    the answer: the silence between the phrase's end and the answer (the pause that ended the
    phrase, the lead) is not fed, as the music Clara learned from goes on without it (a
    continuation after a beat of fed silence measured as far from real music as another
    piece's: BENCHMARKS.md, answer quality). None: the stream runs on to start_step."""

    id: int
    start_step: int
    steps: int
    grid: Grid
    velocity: int
    channel: int  # 0-based
    from_step: int | None = None

    @property
    def end_step(self) -> int:
        return self.start_step + self.steps

    @property
    def start_time(self) -> float:
        return self.grid.time_of(self.start_step)

    @property
    def end_time(self) -> float:
        return self.grid.time_of(self.end_step)


class Stop(NamedTuple):
    """Clara stops answer `id` at time t: nothing of hers sounds after it, and the model's
    stream holds what she played before `step`, every note closed at `step`."""

    id: int
    step: int
    time: float


class Accompany(NamedTuple):
    """Accompaniment `id` (`live.mode: accompany`): plan Clara's part from `step` (where the session's
    stream stands, the player's latest note fed) up to `ahead` steps on, on `grid`, under the player's
    melody (`above`: over it). `register` is the melody's (lowest, highest) MIDI pitch lately, `held`
    the pitches it holds (never struck while they sound). `time` is the arrival of the player's note
    that asks for it (seconds, monotonic: the note in -> plan updated latency), None when time alone
    asks (a beat passed with no note: the plan is carried on, not redone)."""

    id: int
    step: int
    ahead: int
    grid: Grid
    velocity: int
    channel: int  # 0-based
    register: tuple[int, int]
    held: tuple[int, ...]
    above: bool
    time: float | None


class Mark(NamedTuple):
    """A phrase begins: the worker remembers its model here, before the phrase's first tokens."""


class Refeed(NamedTuple):
    """The phrase since the last Mark, quantised again (on the tempo heard in it): the worker
    returns to the mark and feeds these instead of what it was fed since."""

    feeds: tuple[Feed, ...]


class Sampling(NamedTuple):
    config: SamplingConfig


class Log(NamedTuple):
    text: str


Command = Send | Feed | Mark | Refeed | Answer | Accompany | Stop | Sampling | Log
