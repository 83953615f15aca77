"""The live session: a pure state machine over MIDI events and time.

`on_event(message, t)` takes one incoming MIDI message (a list of ints) stamped with its
arrival time, `on_tick(t)` lets time pass; both return commands for the world around the
session (the model worker, the output scheduler, the log). Nothing here reads a clock,
sleeps, or touches a port or a model, so every scenario is a fast test with a fake clock.

The session owns the musical state: tempo and step grid, whose turn it is, which keys and
pedals are held, the player's notes as notewise tokens (quantised to the model's grid,
folded into its range, the sustain pedal holding released notes as corpus preprocessing
does), and when a phrase ends. The model worker keeps the same token timeline: the session
sends it the player's tokens as they happen and asks it for answers by step; after an
answer, or an interrupted one, both agree where the stream stands (`Stop.step`). The pause
that ends a phrase is not written: the model goes on from the phrase's last beat straight into
the answer (`Answer.from_step`), which still sounds at its time.

Tempo from the playing (`live.tempo_from_playing`, unless a tap or an incoming MIDI clock set
the tempo): a phrase's first note sends `Mark` (the worker remembers its model there) and the
session keeps the phrase's raw events and its token writer's state at that point. At the
phrase's end it estimates the tempo and beat phase from the onsets (clara_live.live.beat, the
current tempo as the first guess), runs the events through the token writer again on that
grid, and when that quantises them differently sends `Refeed`: the worker rewinds to the
mark and reads the re-quantised phrase instead. The answer follows the new grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import NamedTuple

from clara_live.codec.notewise import wait_tokens
from clara_live.codec.steps import fold
from clara_live.codec.tokens import release, strike
from clara_live.config import CodecConfig, LiveConfig, SamplingConfig
from clara_live.live.beat import TempoEstimate, estimate_tempo, estimate_tempo_classic
from clara_live.live.beats_out import BeatsOut
from clara_live.live.commands import Answer, Command, Feed, Log, Mark, Refeed, Sampling, Send, Stop
from clara_live.live.midi import CONTROL, NOTE_OFF, NOTE_ON, SUSTAIN
from clara_live.live.tempo import ClockFollower, Grid, TempoKeeper, next_beat

MIN_LEAD = 0.02  # seconds: an answer starts on a beat at least this far ahead, so its first note is ready
REFEED_LEAD = 0.2  # ... this far when the model must first re-read the phrase (benchmarks/live_latency.py
# --in-process: 300 tokens, about 10 s of playing, in one call: p99 about 0.1 s on this project's 2-core CPU)


@dataclasses.dataclass
class _Phrase:
    start_step: int
    last_step: int


class _Writer(NamedTuple):
    """The token writer's state (what re-quantising a phrase starts again from)."""

    now: int
    sounding: dict[int, int]
    held_by: dict[int, set[int]]
    pending_offs: dict[int, int]
    pedal: bool
    grid: Grid
    phrase: _Phrase | None


class Session:
    """Turn-taking between a player and Clara; see the module docstring."""

    def __init__(self, live: LiveConfig, codec: CodecConfig, sampling: SamplingConfig, t0: float,
                 beats_per_bar: int = 4) -> None:
        if codec.encoding != "notewise":
            raise ValueError("a live session needs a notewise model")
        self.live, self.codec, self.sampling = live, codec, sampling
        self.sf = codec.sample_freq
        self.beats_per_bar = beats_per_bar
        self.tempo = TempoKeeper(Grid(t0, 0.0, live.bpm, self.sf))  # the grid, taps, MIDI clock in
        self.now = 0  # the token stream's position, in steps
        self.keys: set[int] = set()  # keys physically held (MIDI pitch)
        self.pedal = False
        self.sounding: dict[int, int] = {}  # folded pitch -> onset step, as the stream has it
        self.held_by: dict[int, set[int]] = {}  # folded pitch -> held keys sounding it
        self.pending_offs: dict[int, int] = {}  # folded pitch -> step its off is due (it began this step)
        self.velocities: deque[int] = deque(maxlen=live.velocity_window)
        self.phrase: _Phrase | None = None
        self.last_activity = t0  # when a key or the pedal last moved
        self.answer: Answer | None = None
        self.answers = 0
        self._controls: dict[int, int] = {}  # last value of each controller, for rising edges
        self.beats_out = BeatsOut(live, self.sf, beats_per_bar)  # the metronome and MIDI clock out
        self._mark: _Writer | None = None  # the writer at the phrase's start, while its tempo is to be heard
        self._events: list[tuple[str, int, int, float]] = []  # the phrase's (kind, key or value, velocity, time)
        self._fed: list[str] = []  # the tokens fed since the mark

    # --- what the outside reads ----------------------------------------------------------

    @property
    def turn(self) -> str:
        if self.answer is None:
            return "listening"
        return "clara" if self._answer_started else "waiting"

    @property
    def velocity(self) -> int:
        if self.live.velocity_follow and self.velocities:
            return max(1, min(127, round(sum(self.velocities) / len(self.velocities))))
        return self.live.velocity

    @property
    def grid(self) -> Grid:
        return self.tempo.grid

    @grid.setter
    def grid(self, grid: Grid) -> None:
        self.tempo.grid = grid

    @property
    def tempo_source(self) -> str:
        return self.tempo.source

    @tempo_source.setter
    def tempo_source(self, source: str) -> None:
        self.tempo.source = source

    @property
    def clock(self) -> ClockFollower:
        return self.tempo.clock

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.grid.bpm

    # --- events ----------------------------------------------------------------------------

    def on_event(self, message: list[int] | tuple[int, ...], t: float) -> list[Command]:
        if not message:
            return []
        status = message[0]
        if status >= 0xF8:
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
            out.append(Send(t, tuple(message), "player"))
        del channel
        return out

    def on_tick(self, t: float) -> list[Command]:
        out: list[Command] = []
        if self.answer is not None and t >= self.answer.end_time:
            self.now = self.answer.end_step
            self.answer = None
        out += self._clock_gone(t)
        out += self._flush_offs(math.floor(self.grid.step_at(t) + 1e-9))
        if self.answer is None and self.phrase is not None and self._silent_since(t):
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
        self.last_activity = t
        self.velocities.append(velocity)
        if self.phrase is None:
            out += self._begin_phrase(t)
        self._record("on", key, velocity, t)
        out += self._feed(self._write_on(key, t), velocity, t)
        return out

    def _write_on(self, key: int, t: float) -> list[str]:
        step = self._step(t)
        if self.phrase is None:
            self.phrase = _Phrase(step, step)
        self.phrase.last_step = step
        pitch = fold(key, self.codec.low_pitch, self.codec.high_pitch)
        tokens = self._advance(step)
        self.held_by.setdefault(pitch, set()).add(key)
        onset = self.sounding.get(pitch)
        if onset == step:
            self.pending_offs.pop(pitch, None)  # struck twice in one step: one note
        else:
            if onset is not None:
                tokens.append(release(pitch - self.codec.low_pitch))  # struck again while it sounds
            self.pending_offs.pop(pitch, None)
            self.sounding[pitch] = step
            tokens.append(strike(pitch - self.codec.low_pitch))
        return tokens

    def _begin_phrase(self, t: float) -> list[Command]:
        """A phrase's first note falls on a beat (the grid's phase follows the player, unless
        a MIDI clock leads), and the silence before it is fed as at most a bar. When its tempo
        is to be heard, the writer's state here is kept and the worker marks its model."""
        out: list[Command] = []
        if self._hears_tempo(t):
            self._mark = self._save()
            self._events, self._fed = [], []
            out.append(Mark())
        if self.clock.leads(t):
            return out
        bar = self.beats_per_bar * self.sf
        beat = round(self.grid.step_at(t) / self.sf) * self.sf
        first = next_beat(self.now, self.sf)  # not self.now: after a Stop mid-beat the note would be off the beat
        target = min(max(beat, first), first + bar)
        self.grid = self.grid.pinned(t, target)
        return out

    def _hears_tempo(self, t: float) -> bool:
        return self.live.tempo_from_playing and self.tempo.hears_tempo(t)

    def _record(self, kind: str, key: int, velocity: int, t: float) -> None:
        if self._mark is not None:
            self._events.append((kind, key, velocity, t))

    def _feed(self, tokens: list[str], velocity: int, t: float | None) -> list[Command]:
        """The tokens as a Feed (none if empty), kept while the phrase may be quantised again."""
        if not tokens:
            return []
        if self._mark is not None:
            self._fed += tokens
        return [Feed(tuple(tokens), velocity, t)]

    def _note_off(self, key: int, t: float) -> list[Command]:
        if key == self.live.tap_note:
            return []
        self.keys.discard(key)
        self.last_activity = t
        self._record("off", key, 0, t)
        return self._feed(self._write_off(key, t), 0, t)

    def _write_off(self, key: int, t: float) -> list[str]:
        pitch = fold(key, self.codec.low_pitch, self.codec.high_pitch)
        holders = self.held_by.get(pitch, set())
        holders.discard(key)
        if holders or pitch not in self.sounding or (self.pedal and self.codec.sustain_pedal):
            return []  # still held by another key folded onto it, not ours, or held by the pedal
        return self._release([pitch], self._step(t))

    def _control(self, number: int, value: int, t: float) -> list[Command]:
        previous = self._controls.get(number, 0)
        self._controls[number] = value
        pressed = value >= 64 > previous
        live = self.live
        if number == SUSTAIN:
            self.last_activity = t
            self._record("pedal", value, 0, t)
            return self._feed(self._write_pedal(value >= 64, t), 0, t)
        if number == live.trigger_cc and pressed:
            if self.answer is None and self.phrase is not None:
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

    def _write_pedal(self, down: bool, t: float) -> list[str]:
        self.pedal = down
        if not self.pedal and self.codec.sustain_pedal:
            released = [p for p in self.sounding if not self.held_by.get(p)]
            # nothing to release, no tokens: during an answer the worker's stream is hers
            return self._release(released, self._step(t)) if released else []
        return []

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

    def _clock_gone(self, t: float) -> list[Command]:
        return [Log(text) for text in self.tempo.clock_gone(t)]

    # --- the token stream ----------------------------------------------------------------------

    def _step(self, t: float) -> int:
        """The grid step of an event at t: the nearest, never before the stream's position."""
        return max(self.now, round(self.grid.step_at(t)))

    def _advance(self, step: int) -> list[str]:
        """Tokens that move the stream to step: waits, with deferred offs at their own step."""
        tokens: list[str] = []
        for due in sorted(set(self.pending_offs.values())):
            if due > step:
                break
            tokens += self._waits(due)
            for pitch in sorted(p for p, d in self.pending_offs.items() if d == due):
                del self.pending_offs[pitch]
                if self.sounding.pop(pitch, None) is not None:
                    tokens.append(release(pitch - self.codec.low_pitch))
        tokens += self._waits(step)
        return tokens

    def _waits(self, step: int) -> list[str]:
        tokens = wait_tokens(step - self.now, self.codec.wait_limit)
        self.now = max(self.now, step)
        return tokens

    def _release(self, pitches: list[int], step: int) -> list[str]:
        """Close these sounding notes at step; one that began at step closes a step later
        (a note lasts at least one step)."""
        if self.phrase is not None and pitches:
            self.phrase.last_step = step
        tokens = self._advance(step)
        closing = []
        for pitch in sorted(pitches):
            if self.sounding.get(pitch) == step:
                self.pending_offs[pitch] = step + 1
            elif pitch in self.sounding:
                del self.sounding[pitch]
                closing.append(release(pitch - self.codec.low_pitch))
        tokens += closing
        return tokens

    def _flush_offs(self, step: int) -> list[Command]:
        if not self.pending_offs or min(self.pending_offs.values()) > step:
            return []
        return self._feed(self._advance(min(self.pending_offs.values())), 0, None)

    def _save(self) -> _Writer:
        return _Writer(self.now, dict(self.sounding), {p: set(k) for p, k in self.held_by.items()},
                       dict(self.pending_offs), self.pedal, self.grid,
                       None if self.phrase is None else dataclasses.replace(self.phrase))

    def _load(self, writer: _Writer) -> None:
        self.now, self.pedal, self.grid = writer.now, writer.pedal, writer.grid
        self.sounding, self.pending_offs = dict(writer.sounding), dict(writer.pending_offs)
        self.held_by = {p: set(k) for p, k in writer.held_by.items()}
        self.phrase = None if writer.phrase is None else dataclasses.replace(writer.phrase)

    # --- turns ------------------------------------------------------------------------------

    def _silent_since(self, t: float) -> bool:
        if self.keys or (self.pedal and self.codec.sustain_pedal):
            return False
        return t - self.last_activity >= self.live.silence_beats * self.beat_seconds

    def _close_phrase(self, t: float) -> tuple[_Phrase, int, list[str]]:
        """Close what still sounds at the phrase's end: (the phrase, its end step, the tokens).
        The stream moves on to where its last note ends, not to t: the silence that ended the
        phrase is not written (a key still held, at a trigger, is closed at t)."""
        phrase, self.phrase = self.phrase, None
        assert phrase is not None
        step = self._step(t)
        held = [p for p in self.sounding if p not in self.pending_offs]
        pending = self._advance(step if held else max([self.now, phrase.last_step, *self.pending_offs.values()]))
        closing = [release(p - self.codec.low_pitch) for p in sorted(self.sounding)]
        self.sounding.clear()
        self.held_by.clear()  # keys still down (a trigger) no longer sound in the stream
        return phrase, step, pending + closing

    def _end_phrase(self, t: float, why: str) -> list[Command]:
        """The player's phrase is over: close what still sounds, hear its tempo (re-quantising
        it if that moves its notes) and give Clara her turn."""
        mark, self._mark = self._mark, None
        out: list[Command] = []
        phrase, step, tokens = self._close_phrase(t)
        heard = None
        if mark is not None and self._hears_tempo(t):
            heard = self._requantise(mark, t, self._fed + tokens, phrase, step)
        lead, source = MIN_LEAD, ""
        if heard is not None:
            phrase, step, feeds = heard
            self.tempo_source = "playing"
            source = " (from your playing)"
        if heard is not None and feeds:
            out.append(Refeed(feeds))
            lead = REFEED_LEAD
        elif tokens:  # fed as it came (or quantised exactly so): only its end to close
            out.append(Feed(tuple(tokens), 0, None))
        self._events, self._fed = [], []
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

    def _requantise(self, mark: _Writer, t: float, fed: list[str], phrase: _Phrase, step: int
                    ) -> tuple[_Phrase, int, tuple[Feed, ...]] | None:
        """The phrase heard at its own tempo: None when the tempo is unclear (the session keeps
        its grid); else the phrase, its end step and the Feeds that replace what was fed since
        the mark (none when the new grid quantises it exactly as the old one did: then the old
        grid stays). The writer's state is left at the phrase's end either way."""
        onsets = [(te, velocity, key) for kind, key, velocity, te in self._events if kind == "on"]
        if not onsets:
            return None
        times, velocities = [te for te, _, _ in onsets], [v for _, v, _ in onsets]
        if self.live.tempo_method == "classic":
            estimate = estimate_tempo_classic(times, velocities, prior_bpm=self.grid.bpm)
        else:
            estimate = estimate_tempo(times, velocities, prior_bpm=self.grid.bpm, pitches=[key for _, _, key in onsets])
        if estimate is None:
            return None
        if _same_beats(self.grid, estimate, times[0], times[-1]):
            return phrase, step, ()  # the player kept the session's beat: the grid they heard stays
        after = self._save()
        # the new grid: the estimated beats on the session's beats, the phrase's first note
        # about where it was (a beat at least after the mark, a pickup before its beat)
        sf, period = self.sf, estimate.period
        first = onsets[0][0]
        q = round((first - estimate.beat_time) / period * sf)  # steps from the estimate's beat
        before, offset = divmod(q, sf)  # the beat at or before the first note, and the steps after it
        beat_step = max(next_beat(mark.now, sf), phrase.start_step - (sf if offset else 0))
        grid = Grid(estimate.beat_time + before * period, float(beat_step), estimate.bpm, sf)
        self._load(mark._replace(grid=grid))
        feeds: list[Feed] = []
        for kind, key, velocity, te in self._events:
            if kind == "on":
                tokens = self._write_on(key, te)
            elif kind == "off":
                tokens = self._write_off(key, te)
            else:
                tokens = self._write_pedal(key >= 64, te)
            if tokens:
                feeds.append(Feed(tuple(tokens), velocity, None))
        new_phrase, new_step, tokens = self._close_phrase(t)
        if tokens:
            feeds.append(Feed(tuple(tokens), 0, None))
        if [x for f in feeds for x in f.tokens] == fed:
            self._load(after)  # the same notes on the same steps: the grid the player heard stays
            return phrase, step, ()
        return new_phrase, new_step, tuple(feeds)

    def _interrupt(self, t: float) -> list[Command]:
        answer, self.answer = self.answer, None
        assert answer is not None
        step = max(self.now, min(round(answer.grid.step_at(t)), answer.end_step))
        self.now = step
        out: list[Command] = [Stop(answer.id, step, t)]
        if t >= answer.start_time:
            out.append(Log("Clara stops: the player plays"))
        return out

    @property
    def _answer_started(self) -> bool:
        return self.answer is not None and self._last_tick >= self.answer.start_time

    def _schedule_beats(self, t: float) -> list[Command]:
        self._last_tick = t
        return self.beats_out.due(self.grid, t)

    _last_tick = -math.inf


def _same_beats(grid: Grid, estimate: TempoEstimate, start: float, end: float) -> bool:
    """Whether the estimated beats from start to end all lie within a step of the grid's beats
    (a tempo heard within a hair of the grid's: re-quantising on it would only move the notes
    that sit on a step's edge, where a player's ms of jitter decide)."""
    sf = grid.sample_freq
    for beat in estimate.beats(start - estimate.period, end + estimate.period):
        offset = grid.step_at(float(beat)) % sf
        if min(offset, sf - offset) > 1.0:
            return False
    return True
