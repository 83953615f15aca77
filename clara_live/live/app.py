"""`clara live`: the threads and ports around the session state machine.

One thread per role: the input's reader (a MIDI port polled and timestamped on arrival, the
computer keyboard, or a MIDI file played as the player), this main loop (runs the session on
each event and every few milliseconds, reading Ableton Link's timeline first with `--link`), the
model worker, the output scheduler, the session writer and the watchdog. Whatever ends the
session (Ctrl-C, SIGTERM, an error, a lost port or
MIDI server, the end of a played file), the scheduler's panic closes every note Clara or the
passthrough opened, and the session is saved as MIDI; it is also written every few seconds
while it goes on, so a killed process loses only its last seconds. With no audio device the
session is rendered to WAV beside the MIDI at the end.

Duet roles (`live.part`, `live.clara_part`): each part sounds with its General MIDI program on its
channel (`part_programs`), sent at the start and again as each of her turns begins, and kept in the
saved session, where the player's notes are on their part's channel: it reads back as a duet.
"""

from __future__ import annotations

import contextlib
import gc
import json
import queue
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from clara_live.codec import make_codec
from clara_live.config import Config
from clara_live.errors import ClaraError
from clara_live.live import plumbing
from clara_live.live.commands import Accompany, Answer, Feed, Log, Mark, Refeed, Sampling, Send, Stop
from clara_live.live.computer_keys import HELP, TerminalKeys
from clara_live.live.midi import NOTE_OFF, NOTE_ON, PROGRAM, kind
from clara_live.live.playback import TimedInput
from clara_live.live.recorder import Recorder, SessionWriter, session_path
from clara_live.live.scheduler import Event, Scheduler
from clara_live.live.session import Session
from clara_live.live.view import Roll

TICK = 0.002  # seconds between the session's clock ticks when no event comes
FRAME = 0.05  # seconds between terminal view frames
SAVE_INTERVAL = 2.0  # seconds between writes of the session file while it goes on
PLAYED_GRACE = 0.5  # seconds a played file's session goes on after the file ended and Clara fell quiet
SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while another waits (Python's default: 5 ms)


@dataclass(frozen=True)
class LiveOptions:
    model: Path
    input: str | None = None  # a port spec; None: --virtual or the only keyboard there is
    output: str | None = None  # a port spec; None: --virtual, else FluidSynth
    virtual: bool = False
    synth: bool = False
    ui: bool = True
    save: bool = True
    duration: float | None = None  # seconds, then stop (benchmarks, demos)
    stats: Path | None = None  # write the latency measurements here as JSON at the end
    play: Path | None = None  # a MIDI file played as the player, in real time
    speed: float = 1.0  # ... this many times as fast
    keys: bool = False  # play the computer keyboard (also the choice when there is no MIDI input)


class _Stopped(Exception):
    """SIGTERM: end the session as Ctrl-C would."""


def run_live(options: LiveOptions, config: Config, out: TextIO = sys.stdout, player=None, output=None) -> int:
    """Run a session until Ctrl-C, SIGTERM, --duration, the end of a played file, or a failure (ClaraError).

    player: a callable(sink) -> an input (a `TimedInput`, say) used instead of the one options name;
    output: an output (send, close) used instead; both for soak tests and benchmarks that feed and
    check the session through exactly this code."""
    from clara_live.model import load_model

    if config.live.link:
        from clara_live.live import link

        link.require()  # without the optional extra: one line saying how to get it, before the model loads
    loaded = load_model(options.model)
    if not make_codec(loaded.codec).streams_events:
        raise ClaraError(f"{options.model}: clara live needs a notewise model, this one is {loaded.codec.encoding}")
    check_parts(options.model, loaded.codec, config.live)
    if config.live.tempo_from_playing and config.live.tempo_method != "classic":
        from clara_live.beat import choice as beat_choice
        from clara_live.beat import dbn as beat_dbn
        from clara_live.beat import net as beat_net

        beat_net.load()  # a missing or bad beat tracker fails here, in one line, not at the first phrase's end
        beat_dbn.state_space()  # built now (~25 ms), not in the first phrase's estimate
        if config.live.tempo_method == "chosen":
            beat_choice.load()
    sys.setswitchinterval(SWITCH_INTERVAL)  # a note must not wait 5 ms for a busy thread to yield
    # what is loaded by now lives as long as the process: frozen out of the collector's reach, a full
    # collection no longer walks torch's ~170,000 objects (~0.2 s under load, a pause mid-session), nor
    # do the collections at the interpreter's exit (a lost server's exit: 1.2 s of them under load, 0.3 s)
    gc.collect()
    gc.freeze()
    with contextlib.ExitStack() as stack:
        LiveApp(options, config, out, stack, loaded, player, output).run()
    return 0


def part_programs(live) -> list[tuple[int, int]]:
    """(channel 0-15, General MIDI program) of each part, sent at the start: Clara's on live.channel, the
    player's on the channel their notes are echoed and recorded on where they have one of their own
    (live.player_out). Nothing while both parts are piano at program 0, as before duets: an external synth
    then keeps the sound it was set to."""
    if live.part == live.clara_part == "p" and live.program_p == 0:
        return []
    programs = [(live.channel - 1, live.program(live.clara_part))]
    if live.player_out is not None and live.player_out != live.channel - 1:
        programs.append((live.player_out, live.program(live.part)))
    return programs


def check_parts(model: Path, codec, live) -> None:
    """ClaraError, one line naming the model, when the player's part or Clara's (live.part, live.clara_part)
    is a family the model does not have: `v` needs a chamber model (codec.chamber)."""
    from clara_live.codec.tokens import Grammar

    families = Grammar(codec).families
    for flag, part in (("--part", live.part), ("--clara-part", live.clara_part)):
        if part not in families:
            raise ClaraError(f"{model}: {flag} {part}: the model has no {part} family (it was trained without "
                             f"codec.chamber: its notes are all {'/'.join(families)}); a v part needs a chamber model")


@dataclass
class LoopStats:
    received: int = 0  # messages taken from the input
    # seconds from a note's arrival to the session holding it
    absorbed: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    jitter: list[float] = field(default_factory=list)  # seconds each of Clara's messages went out after its time
    calibration: dict = field(default_factory=dict)  # what a best-of-K choice costs here


class LiveApp:
    """One session's parts, opened in `stack` (closed with it, in reverse): the input, the output, the
    session, the recorder and its writer, Ableton Link (`live.link`), the watchdog, the scheduler and the model
    worker."""

    def __init__(self, options: LiveOptions, config: Config, out: TextIO, stack: contextlib.ExitStack, loaded,
                 player=None, output=None) -> None:
        from clara_live.engine import build_engine
        from clara_live.live.worker import Worker
        from clara_live.sampling.sampler import Sampler

        live = self.live = config.live
        sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                          config.sampling)
        self.options, self.config, self.out, self.sampler = options, config, out, sampler
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stats = LoopStats()
        self.logs: deque[str] = deque(maxlen=6)
        self.notices: list[str] = []  # what the choice of input and output has to say, logged once running
        if sampler.style_note():
            self.notices.append(sampler.style_note())
        self.api = plumbing.midi_system(options, live, self.notices)
        self.session: Session | None = None
        sink = lambda m, t: self.events.put((m, t))  # noqa: E731 - the readers' one way in
        beat = lambda: self.session.beat_seconds if self.session else 60.0 / live.bpm  # noqa: E731
        stem = plumbing.virtual_stem(options, self.api, self.notices)  # "Clara", or "Clara 2" beside another
        self.source = player(sink) if player is not None else plumbing.player_input(
            options, self.api, live.client_name, sink, beat, self.notices, stem)
        stack.callback(self.source.close)
        self.silent = False
        if output is None:
            output, self.silent = plumbing.clara_output(options, config, self.api, self.notices, stem)
        self.output = output
        stack.callback(output.close)
        self.t0 = time.monotonic()
        self.session = Session(live, sampler.vocab, config.sampling, self.t0, config.sampling.beats_per_bar)
        self.recorder = Recorder(self.t0, self.session.grid.bpm)
        self.link = None  # Ableton Link: its tempo and beat lead the session while it has other peers
        if live.link:
            from clara_live.live.link import LinkClock

            self.link = LinkClock(live.bpm, config.sampling.beats_per_bar)
            stack.callback(self.link.close)
            self.notices.append("Ableton Link on: its tempo and beat lead while it has other peers")
        self.writer = None
        if options.save and live.sessions_dir:
            self.writer = SessionWriter(self.recorder, session_path(live.sessions_dir), SAVE_INTERVAL)
        self.watchdog = plumbing.watchdog(self.api, self.source, output, stack)
        self.roll = Roll()
        self.scheduler = Scheduler(output, on_sent=self._sent)
        # each part's sound, before any note of it; again as each of her turns begins (`_programs`)
        self.programs = [(PROGRAM | channel, program) for channel, program in part_programs(live)]
        self._programmed: int | None = None  # the turn (answer or accompaniment id) they were last sent for
        for message in self.programs:
            self.scheduler.add(self.t0, message, "program")
            self.recorder.record(self.t0, message, "clara" if message[0] & 0x0F == live.channel - 1 else "player")
        self.worker = Worker(sampler, self.scheduler.add, lookahead=live.lookahead, candidates=live.candidates,
                             scorer=plumbing.critic(live) if live.candidates > 1 else None,
                             accompany=live.mode == "accompany", cancel=self.scheduler.cancel,
                             part=live.clara_part, note_beats=live.accompany_max_note_beats,
                             wait_on=live.accompany_wait_on)
        if live.candidates > 1:
            self.worker.calibrate()  # what a best-of-K choice costs here, before the first is due
            self.stats.calibration = {
                "step_cost_ms": {k: v * 1000 for k, v in sorted(self.worker.budget.step_costs.items())},
                "judge_ms_per_token": self.worker.budget.judge_cost * 1000}
        self.worker.start()
        self.ports_line = f"in: {self.source.name}  out: {output.name}"
        self.stack = stack

    def _sent(self, event: Event, at: float) -> None:
        if event.track == "clara":
            self.stats.jitter.append(at - event.time)
            self.recorder.record(at, event.message, "clara")
            self.roll.note("clara", event.message, at)

    def log(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:8.3f}  {text}"
        self.logs.append(line)
        if not self.options.ui:
            print(line, file=self.out, flush=True)

    def run(self) -> None:
        from clara_live.live import ports

        system = f" ({ports.api_label(self.api)})" if self.api is not None else ""
        self.log(f"clara live ready: {self.ports_line}{system}, {self.live.mode} at {self.session.grid.bpm:g} bpm, "
                 f"model {Path(self.options.model).name} (seed {self.sampler.seed})")
        for notice in self.notices:
            self.log(notice)
        if isinstance(self.source, TerminalKeys) and not self.options.ui:
            self.log(HELP)
        previous = signal.signal(signal.SIGTERM, _terminate)
        # Ctrl-C ends the session even where it started ignored (a script's background job: `clara live &`)
        interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.view = None
        try:
            if self.options.ui:
                from clara_live.live.view import TerminalView

                self.view = self.stack.enter_context(TerminalView(self.out))
            if isinstance(self.source, TimedInput) and not self.source.began:
                self.source.start()  # the file's first note counts from here, with everything ready
            self._loop()
        except (KeyboardInterrupt, _Stopped):
            self.log("stopping")
        finally:  # whatever ended the session: silence first, then keep what was played
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, interrupt)
            self.scheduler.panic()
            self.worker.close()
            self.source.close()
            if self.view is not None:
                self.view.close()
            self._finish(time.monotonic())

    def _finish(self, end: float) -> None:
        """The summary line, the session saved (and rendered, when nothing played it), then the stats
        file (last: a FIFO with no reader, a slow disk, must not hold up the session's save)."""
        worker, stats, out = self.worker, self.stats, self.out
        summary = (f"session: {stats.received} messages in, {self.recorder.notes('player')} notes from you, "
                   f"{self.recorder.notes('clara')} from Clara, {self.session.answers} answers")
        if worker.latencies:
            ms = np.percentile(np.array(worker.latencies) * 1000, [50, 99])
            summary += f"; note in -> model updated p50 {ms[0]:.2f} ms, p99 {ms[1]:.2f} ms"
        if worker.chosen:
            summary += f"; candidates per answer {worker.chosen}"
        print(summary, file=out, flush=True)
        if self.writer is not None:
            path = self.writer.close(end)
            print(f"session saved: {path}", file=out, flush=True)
            if self.silent:
                plumbing.render_session(path, self.config, out)
        if self.options.stats is not None:
            from clara_live.atomic import write_text

            write_text(self.options.stats, json.dumps({
                "session_ms": [x * 1000 for x in stats.absorbed], "model_ms": [x * 1000 for x in worker.latencies],
                "send_late_ms": [x * 1000 for x in stats.jitter],
                "received": stats.received, "answers": self.session.answers, "candidates": worker.chosen,
                "choice_ms": [[a * 1000, b * 1000] for a, b in worker.choices], "calibration": stats.calibration,
                "session_writes": self.writer.writes if self.writer is not None else 0}))

    def _loop(self) -> None:
        started = next_frame = time.monotonic()
        finished: float | None = None  # when a played file was over and Clara quiet
        session, source = self.session, self.source
        while True:
            try:
                message, t = self.events.get(timeout=TICK)
            except queue.Empty:
                message = None
            commands = []
            if message is not None:
                commands += self._heard(message, t)
            now = time.monotonic()
            if self.link is not None:
                commands += self.link.steer(session, now)
            commands += session.on_tick(now)
            for command in commands:
                self._programs(command, now)
                _dispatch(command, self.scheduler, self.worker, self.log)
            self.recorder.tempo(now, session.grid.bpm)
            self._check()
            if self.view is not None and now >= next_frame:  # the view's state is built only when a frame is due
                hint = f"{HELP}   ({source.status})" if isinstance(source, TerminalKeys) else ""
                self.view.draw(_view_state(session, self.worker, self.roll, now, self.logs, self.ports_line, hint))
                next_frame = now + FRAME
            if self.options.duration is not None and now - started >= self.options.duration:
                return
            if isinstance(source, TimedInput) and source.done.is_set() and self.events.empty():
                quiet = session.answer is None and session.phrase is None
                finished = (finished or now) if quiet else None
                if finished is not None and now - finished >= PLAYED_GRACE:
                    self.log(f"{source.name} played to its end")
                    return

    def _programs(self, command, now: float) -> None:
        """The parts' programs again as a turn of hers begins (well before its first note): a synth connected
        to a virtual port after the start, or reset since, then plays each part with its own sound."""
        if self.programs and isinstance(command, Answer | Accompany) and command.id != self._programmed:
            self._programmed = command.id
            for message in self.programs:
                self.scheduler.add(now, message, "program")

    def _heard(self, message: list[int], t: float) -> list:
        self.stats.received += 1
        out = self.live.player_out
        # kept on the player's part's channel, where it has one: the saved session sounds and reads back as a duet
        self.recorder.record(t, message if out is None or kind(message) == 0 else [kind(message) | out, *message[1:]],
                             "player")
        self.roll.note("player", message, t)
        commands = self.session.on_event(message, t)
        if kind(message) in (NOTE_ON, NOTE_OFF):  # a note on or off: the session holds it now
            self.stats.absorbed.append(time.monotonic() - t)
        return commands

    def _check(self) -> None:
        """A failure of the output, the model or what the watchdog watches ends the session."""
        if self.scheduler.error is not None:
            raise ClaraError(f"output: {self.scheduler.error}")
        if self.worker.error is not None:
            raise ClaraError(f"model: {self.worker.error}")
        if self.watchdog.lost is not None:
            raise ClaraError(f"{self.watchdog.lost}: the session ended")


def _dispatch(command, scheduler: Scheduler, worker, log) -> None:
    if isinstance(command, Send):
        scheduler.add(command.time, command.message, command.track)
    elif isinstance(command, Stop):
        scheduler.cancel(command.id, command.time)  # silence first, then rewind the model
        worker.submit(command)
    elif isinstance(command, Feed | Mark | Refeed | Answer | Accompany | Sampling):
        worker.submit(command)
    elif isinstance(command, Log):
        log(command.text)


def _view_state(session: Session, worker, roll: Roll, now: float, logs: deque[str], ports_line: str, hint: str = ""):
    from clara_live.live.view import RollNote, ViewState

    latency = None
    if worker.latencies:
        ms = np.percentile(np.array(worker.latencies) * 1000, [50, 99])
        latency = (float(ms[0]), float(ms[1]))
    grid = session.beat_grid(now)  # the player's beat as they play it, while it is followed
    cfg = session.sampling
    planned, ahead = (), 0.0
    accompanist = getattr(worker, "accompanist", None)
    if accompanist is not None:  # her plan, lightly, ahead of now (a beat's more than she plans)
        planned = tuple(RollNote("plan", *note) for note in accompanist.planned(now))
        ahead = (session.live.accompany_lookahead_beats + 1) * 60.0 / grid.bpm
    return ViewState(now=now, mode=session.live.mode, turn=session.turn, bpm=grid.bpm,
                     tempo_source=session.beat_source(now), beat_phase=(grid.step_at(now) / session.sf) % 1.0,
                     temperature=cfg.temperature, top_k=cfg.top_k, random_freq=cfg.random_freq, latency_ms=latency,
                     notes=roll.notes(now), log=tuple(logs), ports=ports_line, hint=hint, planned=planned, ahead=ahead)


def _terminate(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise _Stopped
