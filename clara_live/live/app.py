"""`clara live`: the threads and ports around the session state machine.

One thread per role: the input's reader (a MIDI port polled and timestamped on arrival, the
computer keyboard, or a MIDI file played as the player), this main loop (runs the session on
each event and every few milliseconds), the model worker, the output scheduler, the session
writer and the watchdog. Whatever ends the session (Ctrl-C, SIGTERM, an error, a lost port or
MIDI server, the end of a played file), the scheduler's panic closes every note Clara or the
passthrough opened, and the session is saved as MIDI; it is also written every few seconds
while it goes on, so a killed process loses only its last seconds. With no audio device the
session is rendered to WAV beside the MIDI at the end.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from clara_live.config import Config
from clara_live.errors import ClaraError
from clara_live.live.commands import Answer, Feed, Log, Mark, Refeed, Sampling, Send, Stop
from clara_live.live.computer_keys import HELP, TerminalKeys
from clara_live.live.midi import NOTE_OFF, NOTE_ON
from clara_live.live.playback import TimedInput, performance
from clara_live.live.recorder import Recorder, SessionWriter, session_path
from clara_live.live.scheduler import Event, Scheduler
from clara_live.live.session import Session
from clara_live.live.watch import JackServerWatch, Watchdog

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


class Roll:
    """Recent notes of both sources for the terminal view."""

    def __init__(self, keep: float = 16.0) -> None:
        self.keep = keep
        self.open: dict[tuple[str, int], float] = {}
        self.done: deque = deque()
        self.lock = threading.Lock()

    def note(self, source: str, message: tuple[int, ...] | list[int], t: float) -> None:
        kind = message[0] & 0xF0
        if kind not in (NOTE_ON, NOTE_OFF) or len(message) < 3:
            return
        key = (source, message[1])
        with self.lock:
            start = self.open.pop(key, None)
            if start is not None:
                self.done.append((source, message[1], start, t))
            if kind == NOTE_ON and message[2] > 0:
                self.open[key] = t

    def notes(self, now: float) -> tuple:
        from clara_live.live.view import RollNote

        with self.lock:
            while self.done and self.done[0][3] < now - self.keep:
                self.done.popleft()
            finished = [RollNote(s, p, a, b) for s, p, a, b in self.done]
            sounding = [RollNote(s, p, a, None) for (s, p), a in self.open.items()]
        return tuple(finished + sounding)


def run_live(options: LiveOptions, config: Config, out: TextIO = sys.stdout, player=None, output=None) -> int:
    """Run a session until Ctrl-C, SIGTERM, --duration, the end of a played file, or a failure (ClaraError).

    player: a callable(sink) -> an input (a `TimedInput`, say) used instead of the one options name;
    output: an output (send, close) used instead; both for soak tests and benchmarks that feed and
    check the session through exactly this code."""
    from clara_live.engine import build_engine
    from clara_live.live import ports
    from clara_live.live.worker import Worker
    from clara_live.model import load_model
    from clara_live.sampling.sampler import Sampler

    live = config.live
    loaded = load_model(options.model)
    if loaded.codec.encoding != "notewise":
        raise ClaraError(f"{options.model}: clara live needs a notewise model, this one is {loaded.codec.encoding}")
    if live.tempo_from_playing and live.tempo_method == "learned":
        from clara_live.live import beat_net

        beat_net.load()  # a missing or bad beat tracker fails here, in one line, not at the first phrase's end
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec, config.sampling)
    events: queue.SimpleQueue = queue.SimpleQueue()
    sys.setswitchinterval(SWITCH_INTERVAL)  # a note must not wait 5 ms for a busy thread to yield
    notices: list[str] = []  # what the choice of input and output has to say, logged once the session runs
    with contextlib.ExitStack() as stack:
        api = _midi_system(options, live, notices)
        made: list[Session] = []  # the session, once there is one: the computer keyboard's notes last its beat
        sink = lambda m, t: events.put((m, t))  # noqa: E731 - the readers' one way in
        if player is not None:
            source = player(sink)
        else:
            source = _input(options, api, live.client_name, sink,
                            lambda: made[0].beat_seconds if made else 60.0 / live.bpm, notices)
        stack.callback(source.close)
        silent = False
        if output is None:
            output, silent = _output(options, config, api, notices)
        stack.callback(output.close)
        t0 = time.monotonic()
        session = Session(live, loaded.codec, config.sampling, t0, config.sampling.beats_per_bar)
        made.append(session)
        recorder = Recorder(t0, session.grid.bpm)
        writer = None
        if options.save and live.sessions_dir:
            writer = SessionWriter(recorder, session_path(live.sessions_dir), SAVE_INTERVAL)
        watchdog = Watchdog(_checks(api, source, output, stack))
        stack.callback(watchdog.close)
        roll = Roll()

        jitter: list[float] = []  # seconds each of Clara's messages went out after its time

        def sent(event: Event, at: float) -> None:
            if event.track == "clara":
                jitter.append(at - event.time)
                recorder.record(at, event.message, "clara")
                roll.note("clara", event.message, at)

        scheduler = Scheduler(output, on_sent=sent)
        worker = Worker(sampler, scheduler.add, lookahead=live.lookahead, candidates=live.candidates,
                        scorer=_critic(live) if live.candidates > 1 else None)
        calibration = {}
        if live.candidates > 1:
            worker.calibrate()  # what a best-of-K choice costs here, before the first is due
            calibration = {"step_cost_ms": {k: v * 1000 for k, v in sorted(worker.step_costs.items())},
                           "judge_ms_per_token": worker.judge_cost * 1000}
        worker.start()
        logs: deque[str] = deque(maxlen=6)

        def log(text: str) -> None:
            line = f"{time.monotonic() - t0:8.3f}  {text}"
            logs.append(line)
            if not options.ui:
                print(line, file=out, flush=True)

        ports_line = f"in: {source.name}  out: {output.name}"
        system = f" ({ports.api_label(api)})" if api is not None else ""
        log(f"clara live ready: {ports_line}{system}, {live.mode} at {session.grid.bpm:g} bpm, "
            f"model {Path(options.model).name} (seed {sampler.seed})")
        for notice in notices:
            log(notice)
        if isinstance(source, TerminalKeys) and not options.ui:
            log(HELP)
        stats = LoopStats()
        previous = signal.signal(signal.SIGTERM, _terminate)
        view = None
        try:
            if options.ui:
                from clara_live.live.view import TerminalView

                view = stack.enter_context(TerminalView(out))
            if isinstance(source, TimedInput) and not source.began:
                source.start()  # the file's first note counts from here, with everything ready
            _loop(session, events, scheduler, worker, recorder, roll, log, logs, view, ports_line, options, stats,
                  source, watchdog)
        except (KeyboardInterrupt, _Stopped):
            log("stopping")
        finally:  # whatever ended the session: silence first, then keep what was played
            signal.signal(signal.SIGTERM, previous)
            scheduler.panic()
            worker.close()
            source.close()
            if view is not None:
                view.close()
            end = time.monotonic()
            summary = (f"session: {stats.received} messages in, {recorder.notes('player')} notes from you, "
                       f"{recorder.notes('clara')} from Clara, {session.answers} answers")
            if worker.latencies:
                ms = np.percentile(np.array(worker.latencies) * 1000, [50, 99])
                summary += f"; note in -> model updated p50 {ms[0]:.2f} ms, p99 {ms[1]:.2f} ms"
            if worker.chosen:
                summary += f"; candidates per answer {worker.chosen}"
            print(summary, file=out, flush=True)
            if options.stats is not None:
                from clara_live.atomic import write_text

                write_text(options.stats, json.dumps({
                    "session_ms": [x * 1000 for x in stats.absorbed], "model_ms": [x * 1000 for x in worker.latencies],
                    "send_late_ms": [x * 1000 for x in jitter],
                    "received": stats.received, "answers": session.answers, "candidates": worker.chosen,
                    "choice_ms": [[a * 1000, b * 1000] for a, b in worker.choices], "calibration": calibration,
                    "session_writes": writer.writes if writer is not None else 0}))
            if writer is not None:
                path = writer.close(end)
                print(f"session saved: {path}", file=out, flush=True)
                if silent:
                    _render(path, config, out)
    return 0


@dataclass
class LoopStats:
    received: int = 0  # messages taken from the input
    # seconds from a note's arrival to the session holding it
    absorbed: deque[float] = field(default_factory=lambda: deque(maxlen=2000))


def _loop(session: Session, events: queue.SimpleQueue, scheduler: Scheduler, worker, recorder: Recorder,
          roll: Roll, log, logs: deque[str], view, ports_line: str, options: LiveOptions, stats: LoopStats,
          source, watchdog: Watchdog) -> None:
    started = next_frame = time.monotonic()
    finished: float | None = None  # when a played file was over and Clara quiet
    while True:
        try:
            message, t = events.get(timeout=TICK)
        except queue.Empty:
            message = None
        commands = []
        if message is not None:
            stats.received += 1
            recorder.record(t, message, "player")
            roll.note("player", message, t)
            commands += session.on_event(message, t)
            if message and message[0] & 0xE0 == 0x80:  # a note on or off: the session holds it now
                stats.absorbed.append(time.monotonic() - t)
        now = time.monotonic()
        commands += session.on_tick(now)
        for command in commands:
            _dispatch(command, scheduler, worker, log)
        recorder.tempo(now, session.grid.bpm)
        if scheduler.error is not None:
            raise ClaraError(f"output: {scheduler.error}")
        if worker.error is not None:
            raise ClaraError(f"model: {worker.error}")
        if watchdog.lost is not None:
            raise ClaraError(f"{watchdog.lost}: the session ended")
        if view is not None and now >= next_frame:  # the view's state is built only when a frame is due
            hint = f"{HELP}   ({source.status})" if isinstance(source, TerminalKeys) else ""
            view.draw(_view_state(session, worker, roll, now, logs, ports_line, hint))
            next_frame = now + FRAME
        if options.duration is not None and now - started >= options.duration:
            return
        if isinstance(source, TimedInput) and source.done.is_set() and events.empty():
            quiet = session.answer is None and session.phrase is None
            finished = (finished or now) if quiet else None
            if finished is not None and now - finished >= PLAYED_GRACE:
                log(f"{source.name} played to its end")
                return


def _dispatch(command, scheduler: Scheduler, worker, log) -> None:
    if isinstance(command, Send):
        scheduler.add(command.time, command.message, command.track)
    elif isinstance(command, Stop):
        scheduler.cancel(command.id, command.time)  # silence first, then rewind the model
        worker.submit(command)
    elif isinstance(command, Feed | Mark | Refeed | Answer | Sampling):
        worker.submit(command)
    elif isinstance(command, Log):
        log(command.text)


def _view_state(session: Session, worker, roll: Roll, now: float, logs: deque[str], ports_line: str, hint: str = ""):
    from clara_live.live.view import ViewState

    latency = None
    if worker.latencies:
        ms = np.percentile(np.array(worker.latencies) * 1000, [50, 99])
        latency = (float(ms[0]), float(ms[1]))
    step = session.grid.step_at(now)
    cfg = session.sampling
    return ViewState(now=now, mode=session.live.mode, turn=session.turn, bpm=session.grid.bpm,
                     tempo_source=session.tempo_source, beat_phase=(step / session.sf) % 1.0,
                     temperature=cfg.temperature, top_k=cfg.top_k, random_freq=cfg.random_freq, latency_ms=latency,
                     notes=roll.notes(now), log=tuple(logs), ports=ports_line, hint=hint)


def _critic(live):
    """The critic's scorer for best-of-K answers; the critic path is relative to the repository."""
    from clara_live.config import DEFAULT_CONFIG_PATH
    from clara_live.judge.rank import critic_scorer
    from clara_live.judge.store import load_judge

    folder = Path(live.critic)
    if not folder.is_absolute():
        folder = DEFAULT_CONFIG_PATH.parent / folder
    return critic_scorer(load_judge(folder, kind="critic"))


def _terminate(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise _Stopped


def _midi_system(options: LiveOptions, live, notices: list[str]) -> int | None:
    """The MIDI system's rtmidi API; None when none is usable and none is needed (no port named,
    no virtual ports asked for): then the computer keyboard or a played file is the input."""
    from clara_live.live import ports

    needed = options.input is not None or options.output is not None or options.virtual
    try:
        return ports.resolve_api(live.midi_api)
    except ports.MidiSystemError as err:
        if needed:
            raise
        if options.play is None and not options.keys:
            notices.append(f"{err}")
        return None


def _input(options: LiveOptions, api: int | None, client_name: str, sink, beat, notices: list[str]):
    """The player: a MIDI file, the computer keyboard, or a MIDI input port (named, virtual, or the only
    keyboard plugged in; with none, the computer keyboard when there is a terminal to play in)."""
    from clara_live.live import ports

    if options.play is not None:
        return TimedInput(performance(options.play, options.speed), sink, name=Path(options.play).name)
    if options.keys:
        return _terminal_keys(sink, beat, "--keys")
    missing = None
    if api is not None:
        if options.virtual and options.input is None:
            return ports.InputPort(api, virtual="Clara In", client=client_name, sink=sink)
        try:
            return ports.InputPort(api, spec=options.input or _keyboard(api), client=client_name, sink=sink)
        except NoKeyboard as err:
            missing = str(err)
    notices.append("no MIDI input: play the computer keyboard")
    return _terminal_keys(sink, beat, missing or "no MIDI system found")


def _terminal_keys(sink, beat, why: str) -> TerminalKeys:
    try:
        return TerminalKeys(sink, beat)
    except OSError:
        raise ClaraError(f"{why}, and no terminal to play the computer keyboard in: plug in a keyboard, use "
                         "--virtual and connect a program to 'Clara In', or --play FILE.mid") from None


class NoKeyboard(ClaraError):
    """No MIDI input port to read from."""


def _keyboard(api: int) -> str:
    """The input to use when none is named: the only one there is (a keyboard plugged in)."""
    from clara_live.live import ports

    inputs, _ = ports.list_ports(api)
    candidates = [name for name in inputs if "through" not in name.lower() and "clara" not in name.lower()]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise NoKeyboard("no MIDI input found")
    raise ClaraError(f"{len(candidates)} MIDI inputs: choose one with --in ({', '.join(candidates)})")


def _output(options: LiveOptions, config: Config, api: int | None, notices: list[str]):
    """Where Clara plays, and whether it is silent (no audio device: the session becomes a WAV at the end)."""
    from clara_live.live import ports
    from clara_live.live.synth import FluidSynthOutput, SilentOutput

    if options.output is not None:
        return ports.OutputPort(api, spec=options.output, client=config.live.client_name), False
    if options.virtual and not options.synth:
        return ports.OutputPort(api, virtual="Clara Out", client=config.live.client_name), False
    if config.live.audio_driver == "none":
        notices.append("no sound while playing (live.audio_driver none): the session is rendered to WAV at the end")
        return SilentOutput(), True
    driver = config.live.audio_driver or None
    settings = {}
    if driver is None and api is not None and ports.api_label(api) == "jack":
        # JACK holds the sound card: play into it, wired to the system's playback ports
        driver, settings = "jack", {"audio.jack.autoconnect": "1"}
    try:
        return FluidSynthOutput(config.live.soundfont, audio_driver=driver, extra_settings=settings), False
    except ClaraError as err:
        if options.synth or config.live.audio_driver:
            raise  # sound was asked for by name: its failure is the answer
        notices.append(f"no sound ({err}): the session is rendered to WAV beside its MIDI at the end")
        return SilentOutput(), True


def _checks(api: int | None, source, output, stack: contextlib.ExitStack) -> list:
    """What the watchdog watches: the JACK server, and the ports and synth that can go away."""
    from clara_live.live import ports

    checks = []
    if api is not None and ports.api_label(api) == "jack":
        with contextlib.suppress(OSError):
            server = JackServerWatch()
            stack.callback(server.close)
            checks.append(server.check)
    for part in (source, output):
        gone = getattr(part, "gone", None)
        if gone is not None:
            checks.append(gone)
    return checks


def _render(path: Path, config: Config, out: TextIO) -> None:
    """The saved session as audio beside it (the built-in synth, when no audio device played it live)."""
    from clara_live.render import render_wav

    wav = path.with_suffix(".wav")
    try:
        render_wav(path, wav, soundfont=config.live.soundfont)
    except ClaraError as err:
        print(f"no WAV: {err}", file=out, flush=True)
        return
    print(f"session audio: {wav}", file=out, flush=True)
