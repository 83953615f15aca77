"""The live session: a pure state machine over MIDI events and time.

`on_event(message, t)` takes one incoming MIDI message (a list of ints) stamped with its
arrival time, `on_tick(t)` lets time pass; both return commands for the world around the
session (the model worker, the output scheduler, the log). Nothing here reads a clock,
sleeps, or touches a port or a model, so every scenario is a fast test with a fake clock.

The session owns whose turn it is and when a phrase ends; its parts own the rest: the tempo
and step grid (`TempoKeeper`, live/tempo.py), the metronome and clock out (live/beats_out.py),
and the player's keys and pedal written as notewise token ids (`PlayerWriter`, live/phrase.py,
over codec/stream.py: quantised to the model's grid, folded into its range, the sustain pedal
holding released notes as corpus preprocessing does; in the player's family, `live.part`, and echoed
on the player's channel, `live.player_out`). The session owns the step count: each
Feed says where its stream stands after it, an Answer and a Stop say where hers begins and
ends, and the model worker maps its own stream onto those steps. The pause
that ends a phrase is not written: the model goes on from the phrase's last beat straight into
the answer (`Answer.from_step`), which still sounds at its time.

Tempo from the playing (`live.tempo_from_playing`, unless a tap, an incoming MIDI clock or Ableton
Link with other peers set the tempo: `on_link` hands the session Link's timeline, live/link.py):
a phrase's first note sends `Mark` (the worker remembers its model there) and the session keeps
the phrase's raw events and its token writer's state at that point. At the phrase's end it
estimates the tempo and beat phase from the onsets (clara_live.beat, the
current tempo as the first guess), runs the events through the token writer again on that
grid, and when that quantises them differently sends `Refeed`: the worker rewinds to the
mark and reads the re-quantised phrase instead. The answer follows the new grid; where the beat
followed through the phrase (TempoKeeper.follower) agrees with the heard tempo but the player
drifted from it, from the followed beat's phase and tempo at the phrase's end. While the player
plays, the metronome, MIDI clock out and the view follow the player's beat (`beat_grid`).
Accompanying, the grid itself moves with the followed beat where their tempos agree
(`TempoKeeper.grid_follows`): the player's notes are written and her plan timed on one grid, numbered
as the stream is, so her planned steps are never ones whose time has passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque

from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import LiveConfig, SamplingConfig
from clara_live.live.beats_out import BeatsOut
from clara_live.live.commands import Accompany, Answer, Command, Feed, Log, Mark, Refeed, Sampling, Send, Stop
from clara_live.live.midi import CLOCK, CONTROL, NOTE_OFF, NOTE_ON, SUSTAIN
from clara_live.live.phrase import Phrase, PlayerWriter
from clara_live.live.tempo import Grid, LinkState, TempoKeeper, next_beat

MIN_LEAD = 0.02  # seconds: an answer starts on a beat at least this far ahead, so its first note is ready
ACCOMPANY_LEVEL = 0.8  # accompany: her velocity, as a share of the player's recent level (under their dynamics)
MELODY_NOTES = 4  # accompany: the melody's register is that of its last this many notes (and the keys held)
REFEED_LEAD = 0.2  # ... this far when the model must first re-read the phrase (benchmarks/live_latency.py
# --in-process: 300 tokens, about 10 s of playing, in one call: p99 about 0.1 s on this project's 2-core CPU)


class Session:
    """Turn-taking between a player and Clara; see the module docstring."""

    def __init__(self, live: LiveConfig, vocab: Vocabulary, sampling: SamplingConfig, t0: float,
                 beats_per_bar: int = 4) -> None:
        if not vocab.coder.streams_events:
            raise ValueError("a live session needs a model whose tokens are events (notewise)")
        self.live, self.codec, self.sampling = live, vocab.codec, sampling
        self.sf = self.codec.sample_freq
        self.beats_per_bar = beats_per_bar
        self.tempo = TempoKeeper(Grid(t0, 0.0, live.bpm, self.sf))  # the grid, taps, MIDI clock in
        self.tempo.grid_follows = live.mode == "accompany"  # her plan on the grid the player's notes are written on
        for key in ("part", "clara_part"):
            part = getattr(live, key)
            if part not in vocab.families:
                raise ValueError(f"live.{key} {part}: the model's families are {', '.join(vocab.families)}")
        self.writer = PlayerWriter(vocab, self.tempo, live.part)  # the player's notes into the token stream
        self._echo = live.player_out  # the channel the player's notes are echoed on (None: their own)
        self.keys: set[int] = set()  # keys physically held (MIDI pitch)
        self.velocities: deque[int] = deque(maxlen=live.velocity_window)
        self.last_activity = t0  # when a key or the pedal last moved
        self.answer: Answer | None = None
        self.answers = 0
        self._controls: dict[int, int] = {}  # last value of each controller, for rising edges
        self.beats_out = BeatsOut(live, self.sf, beats_per_bar)  # the metronome and MIDI clock out
        # accompany: the accompaniment playing (its id), the melody's last pitches, the step last planned to
        self.accompanying: int | None = None
        self.melody: deque[int] = deque(maxlen=MELODY_NOTES)
        self._planned_to = 0

    # --- what the outside reads ----------------------------------------------------------

    @property
    def turn(self) -> str:
        if self.accompanying is not None:
            return "clara"
        if self.answer is None:
            return "listening"
        return "clara" if self._answer_started else "waiting"

    @property
    def now(self) -> int:
        """Where the token stream stands, in steps (the writer's stream owns the count)."""
        return self.writer.now

    @property
    def phrase(self) -> Phrase | None:
        return self.writer.phrase

    @property
    def velocity(self) -> int:
        if self.live.velocity_follow and self.velocities:
            return max(1, min(127, round(sum(self.velocities) / len(self.velocities))))
        return self.live.velocity

    @property
    def grid(self) -> Grid:
        return self.tempo.grid

    @property
    def tempo_source(self) -> str:
        return self.tempo.source

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.grid.bpm

    def beat_grid(self, t: float) -> Grid:
        """The beats the metronome, MIDI clock out and the view follow at t: the player's beat as
        they play it, while the tempo is heard from the playing (TempoKeeper.beat_grid)."""
        return self.tempo.beat_grid(t)

    def beat_source(self, t: float) -> str:
        """The tempo source of `beat_grid(t)`: "following" while it is the player's followed beat."""
        return "following" if self.tempo.following(t) else self.tempo_source

    # --- events ----------------------------------------------------------------------------

    def on_event(self, message: list[int] | tuple[int, ...], t: float) -> list[Command]:
        if not message:
            return []
        status = message[0]
        if status >= CLOCK:  # system real-time
            return self._realtime(status, t)
        kind, channel = status & 0xF0, status & 0x0F
        if status < 0x80 or not all(0 <= b < 0x80 for b in message[1:3]):
            return []  # a data byte without its status, or data bytes out of range: not a message
        out: list[Command] = []
        if kind == NOTE_ON and len(message) >= 3 and message[2] > 0:
            out += self._note_on(message[1], message[2], t)
        elif kind in (NOTE_ON, NOTE_OFF) and len(message) >= 3:
            out += self._note_off(message[1], t)
        elif kind == CONTROL and len(message) >= 3:
            out += self._control(message[1], message[2], t)
        if self.live.passthrough and kind in (NOTE_ON, NOTE_OFF, CONTROL) and not self._is_tap(message):
            echoed = tuple(message) if self._echo is None else (kind | self._echo, *message[1:])
            out.append(Send(t, echoed, "player"))  # on the player's part's channel, where it has one
        del channel
        return out

    def on_tick(self, t: float) -> list[Command]:
        out: list[Command] = []
        if self.answer is not None and t >= self.answer.end_time:
            self.writer.skip_to(self.answer.end_step)
            self.answer = None
        out += self._clock_gone(t)
        out += self.writer.feeds(self.writer.due(math.floor(self.grid.step_at(t) + 1e-9)), 0, None)
        if self.live.mode == "accompany":
            out += self._accompany_tick(t)
        elif self.answer is None and self.phrase is not None and self._silent_since(t):
            out += self._end_phrase(t, "silence")
        out += self._schedule_beats(t)
        return out

    # --- the player ---------------------------------------------------------------------------

    def _note_on(self, key: int, velocity: int, t: float) -> list[Command]:
        if key == self.live.tap_note:
            return self._tap(t)
        out: list[Command] = []
        if self.answer is not None:
            out += self._interrupt(t)
        self.keys.add(key)
        self.last_activity = self.last_strike = t
        self.velocities.append(velocity)
        if self.phrase is None:
            out += self._begin_phrase(t)
        if self._hears_tempo(t):
            self.tempo.onset(t, velocity)  # the beat followed as the player plays
        self.writer.record("on", key, velocity, t)
        out += self.writer.feeds(self.writer.on(key, t), velocity, t)
        if self.live.mode == "accompany":
            self.melody.append(key)
            out.append(self._plan(t, t))
        return out

    def _begin_phrase(self, t: float) -> list[Command]:
        """A phrase's first note falls on a beat (the grid's phase follows the player, unless
        a MIDI clock or Link leads), and the silence before it is fed as at most a bar. When its tempo
        is to be heard, the writer's state here is kept and the worker marks its model."""
        out: list[Command] = []
        if self._hears_tempo(t) and self.live.mode != "accompany":  # her notes interleave: no phrase is refed
            self.writer.begin_mark()
            out.append(Mark())
        if self.tempo.beat_led(t):
            return out
        bar = self.beats_per_bar * self.sf
        beat = round(self.grid.step_at(t) / self.sf) * self.sf
        first = next_beat(self.now, self.sf)  # not self.now: after a Stop mid-beat the note would be off the beat
        target = min(max(beat, first), first + bar)
        self.tempo.grid = self.grid.pinned(t, target)
        if self._hears_tempo(t):
            self.tempo.begin_phrase(t)  # the followed beat starts from this note
        return out

    def _hears_tempo(self, t: float) -> bool:
        return self.live.tempo_from_playing and self.tempo.hears_tempo(t)

    def _note_off(self, key: int, t: float) -> list[Command]:
        if key == self.live.tap_note:
            return []
        self.keys.discard(key)
        self.last_activity = t
        self.writer.record("off", key, 0, t)
        return self.writer.feeds(self.writer.off(key, t), 0, t)

    def _control(self, number: int, value: int, t: float) -> list[Command]:
        previous = self._controls.get(number, 0)
        self._controls[number] = value
        pressed = value >= 64 > previous
        live = self.live
        if number == SUSTAIN:
            self.last_activity = t
            self.writer.record("pedal", value, 0, t)
            return self.writer.feeds(self.writer.pedal_to(value >= 64, t), 0, t)
        if number == live.trigger_cc and pressed:
            if self.accompanying is not None:
                return self._rest(t)
            if self.answer is None and self.phrase is not None and live.mode != "accompany":
                return self._end_phrase(t, "trigger")
            return []
        if number == live.tap_cc:
            return self._tap(t) if pressed else []
        return self._sampling_control(number, value)

    def _sampling_control(self, number: int, value: int) -> list[Command]:
        live, cfg = self.live, self.sampling
        if number == live.cc_temperature:
            cfg = dataclasses.replace(cfg, temperature=round(0.1 + 1.9 * value / 127, 3))
            text = f"temperature {cfg.temperature:.2f}"
        elif number == live.cc_top_k:
            cfg = dataclasses.replace(cfg, top_k=1 + round(31 * value / 127))
            text = f"top-k {cfg.top_k}"
        elif number == live.cc_random_freq:
            cfg = dataclasses.replace(cfg, random_freq=round(value / 127, 3))
            text = f"random_freq {cfg.random_freq:.2f}"
        else:
            return []
        self.sampling = cfg
        return [Sampling(cfg), Log(text)]

    def _is_tap(self, message: list[int] | tuple[int, ...]) -> bool:
        kind = message[0] & 0xF0
        if kind in (NOTE_ON, NOTE_OFF):
            return message[1] == self.live.tap_note
        return kind == CONTROL and message[1] == self.live.tap_cc

    # --- tempo --------------------------------------------------------------------------------

    def _tap(self, t: float) -> list[Command]:
        return [Log(text) for text in self.tempo.tap(t, self.now)]

    def _realtime(self, status: int, t: float) -> list[Command]:
        if not self.live.follow_clock:
            return []
        return [Log(text) for text in self.tempo.realtime(status, t, self.now)]

    def on_link(self, state: LinkState, t: float) -> list[Command]:
        """Ableton Link's timeline read at t (live/link.py, while `live.link`): with other peers it sets
        the tempo and the beat, over the playing, taps and a MIDI clock (TempoKeeper.link)."""
        return [Log(text) for text in self.tempo.link(state, t)]

    def _clock_gone(self, t: float) -> list[Command]:
        return [Log(text) for text in self.tempo.clock_gone(t)]

    # --- turns ------------------------------------------------------------------------------

    def _silent_since(self, t: float) -> bool:
        if self.keys or (self.writer.pedal and self.codec.sustain_pedal):
            return False
        return t - self.last_activity >= self.live.silence_beats * self.beat_seconds

    def _end_phrase(self, t: float, why: str) -> list[Command]:
        """The player's phrase is over: close what still sounds, hear its tempo (re-quantising
        it if that moves its notes) and give Clara her turn."""
        out: list[Command] = []
        writer = self.writer
        phrase, step, ids = writer.close_phrase(t)
        heard = writer.requantise(t, phrase, step, ids, self.live.tempo_method) if self._hears_tempo(t) else None
        writer.forget_mark()
        lead, source = MIN_LEAD, ""
        if heard is not None:
            phrase, step, feeds = heard
            self.tempo.source = "playing"
            source = " (from your playing)"
        if heard is not None and feeds:
            out.append(Refeed(feeds))
            lead = REFEED_LEAD
        elif ids:  # fed as it came (or quantised exactly so): only its end to close
            out.append(Feed(tuple(ids), 0, None, self.now))
        if self._hears_tempo(t):  # her answer goes on from the beat where the player left it
            self.tempo.follow_phrase(t, self.now)
        start = next_beat(max(self.grid.step_at(t + lead), self.now), self.sf)
        if self.live.mode == "suggest":
            beats = self.live.suggest_bars * self.beats_per_bar
        else:
            call = max(phrase.last_step, step if why == "trigger" else phrase.last_step) - phrase.start_step
            beats = min(max(1, math.ceil(call / self.sf - 0.25)), self.live.max_answer_bars * self.beats_per_bar)
        self.answers += 1
        self.answer = Answer(self.answers, start, beats * self.sf, self.grid, self.velocity, self.live.channel - 1,
                             from_step=next_beat(self.now, self.sf))
        out.append(self.answer)
        out.append(Log(f"phrase end ({why}): Clara answers {beats} beats at {self.grid.bpm:.1f} bpm{source}"))
        return out

    # --- accompaniment -------------------------------------------------------------------------

    def _plan(self, t: float, arrival: float | None) -> Accompany:
        """Clara's part planned (again) from where the stream stands: at a player's note (`arrival`),
        or as a beat passes with none (carried on). The first note after a rest begins a new one."""
        if self.accompanying is None:
            self.answers += 1
            self.accompanying = self.answers
        held = tuple(sorted(self.keys))
        pitches = [*self.melody, *held]
        ahead = max(1, round(self.live.accompany_lookahead_beats * self.sf))
        self._planned_to = max(self.now, math.floor(self.grid.step_at(t)))
        level = max(1, round(self.velocity * ACCOMPANY_LEVEL))
        return Accompany(self.accompanying, self._planned_to, ahead, self.grid, level, self.live.channel - 1,
                         (min(pitches), max(pitches)), held, self.live.accompany_above, arrival)

    def _accompany_tick(self, t: float) -> list[Command]:
        """She plays on while the player does (a plan carried on each beat with no note), and
        stops once no key has been pressed for a bar with none held (the pedal does not count:
        a pedal held throughout would keep her playing to no one)."""
        if self.accompanying is None:
            return []
        bar = self.beats_per_bar * self.beat_seconds
        if not self.keys and t - self.last_strike >= bar:
            return self._rest(t)
        if math.floor(self.grid.step_at(t)) >= next_beat(self._planned_to + 1, self.sf):
            return [self._plan(t, None)]
        return []

    def _rest(self, t: float) -> list[Command]:
        """The player stopped: close their phrase, stop her at the step of t (every note of hers closed)."""
        out: list[Command] = []
        if self.phrase is not None:
            _, _, ids = self.writer.close_phrase(t)
            if ids:
                out.append(Feed(tuple(ids), 0, None, self.now))
            if self._hears_tempo(t):
                self.tempo.follow_phrase(t, self.now)
        step = max(self.now, math.floor(self.grid.step_at(t)))
        self.writer.skip_to(step)
        out.append(Stop(self.accompanying, step, t))
        out.append(Log("Clara rests: the player stopped for a bar"))
        self.accompanying = None
        self.melody.clear()
        return out

    def _interrupt(self, t: float) -> list[Command]:
        answer, self.answer = self.answer, None
        assert answer is not None
        step = max(self.now, min(round(answer.grid.step_at(t)), answer.end_step))
        self.writer.skip_to(step)
        out: list[Command] = [Stop(answer.id, step, t)]
        if t >= answer.start_time:
            out.append(Log("Clara stops: the player plays"))
        return out

    @property
    def _answer_started(self) -> bool:
        return self.answer is not None and self._last_tick >= self.answer.start_time

    def _schedule_beats(self, t: float) -> list[Command]:
        self._last_tick = t
        return self.beats_out.due(self.beat_grid(t), t)

    _last_tick = -math.inf
    last_strike = -math.inf  # accompany: when a key was last pressed
