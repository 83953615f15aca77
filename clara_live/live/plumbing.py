"""Where a live session's music comes from and goes to: the MIDI system, the player's input (a port,
the computer keyboard, a played file), Clara's output (a port, FluidSynth, or silence and a WAV at
the end when there is no audio device), and what the watchdog watches."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from clara_live.config import Config
from clara_live.errors import ClaraError
from clara_live.live import port_names
from clara_live.live.computer_keys import TerminalKeys
from clara_live.live.playback import TimedInput, performance
from clara_live.live.watch import JackServerWatch, Watchdog

if TYPE_CHECKING:
    from clara_live.live.app import LiveOptions


def midi_system(options: LiveOptions, live, notices: list[str]) -> int | None:
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


def virtual_stem(options: LiveOptions, api: int | None, notices: list[str]) -> str:
    """What this session's virtual ports are called: "Clara In" and "Clara Out", or "Clara 2 In" and
    "Clara 2 Out" where another session's are there already (said in a notice)."""
    from clara_live.live import ports

    if not options.virtual or api is None:
        return port_names.STEM
    inputs, outputs = ports.list_ports(api)
    stem = port_names.virtual_stem(inputs + outputs)
    if stem != port_names.STEM:
        notices.append(f"another Clara is running: this one's ports are '{stem} In' and '{stem} Out'")
    return stem


def player_input(options: LiveOptions, api: int | None, client_name: str, sink, beat, notices: list[str],
                 stem: str = port_names.STEM):
    """The player: a MIDI file, the computer keyboard, or a MIDI input port (named, virtual ("{stem} In"), or
    the only keyboard plugged in; with none, the computer keyboard when there is a terminal to play in)."""
    from clara_live.live import ports

    if options.play is not None:
        return TimedInput(performance(options.play, options.speed), sink, name=Path(options.play).name)
    if options.keys:
        return _terminal_keys(sink, beat, "--keys")
    missing = None
    if api is not None:
        if options.virtual and options.input is None:
            return ports.InputPort(api, virtual=f"{stem} In", client=client_name, sink=sink)
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


def clara_output(options: LiveOptions, config: Config, api: int | None, notices: list[str],
                 stem: str = port_names.STEM):
    """Where Clara plays ("{stem} Out" when virtual), and whether it is silent (no audio device: the session
    becomes a WAV at the end)."""
    from clara_live.live import ports
    from clara_live.live.synth import FluidSynthOutput, SilentOutput

    if options.output is not None:
        return ports.OutputPort(api, spec=options.output, client=config.live.client_name), False
    if options.virtual and not options.synth:
        return ports.OutputPort(api, virtual=f"{stem} Out", client=config.live.client_name), False
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


def watchdog(api: int | None, source, output, stack: contextlib.ExitStack) -> Watchdog:
    """The watchdog over what can go away (the JACK server, the ports and synth), closed with stack."""
    from clara_live.live import ports

    checks, server = [], None
    if api is not None and ports.api_label(api) == "jack":
        with contextlib.suppress(OSError):
            server = JackServerWatch()
            stack.callback(server.close)
            checks.append(server.check)
    for part in (source, output):
        gone = getattr(part, "gone", None)
        if gone is not None:
            checks.append(gone)
    dog = Watchdog(checks)
    stack.callback(dog.close)
    if server is not None:
        server.on_lost = dog.wake  # a stopped server heard at once, not at the next check
        # the stack unwinds in reverse, so this runs before the output's close: a port of a server that
        # stopped is abandoned, not closed (closing a JACK output would wait a second for nothing)
        stack.callback(_abandon_if_lost, server, output)
    return dog


def _abandon_if_lost(server: JackServerWatch, output) -> None:
    abandon = getattr(output, "abandon", None)
    if server.lost is not None and abandon is not None:
        abandon()


def render_session(path: Path, config: Config, out: TextIO) -> None:
    """The saved session as audio beside it (the built-in synth, when no audio device played it live)."""
    from clara_live.render import render_wav

    wav = path.with_suffix(".wav")
    try:
        render_wav(path, wav, soundfont=config.live.soundfont)
    except ClaraError as err:
        print(f"no WAV: {err}", file=out, flush=True)
        return
    print(f"session audio: {wav}", file=out, flush=True)


def critic(live):
    """The critic's scorer for best-of-K answers; the critic path is relative to the repository."""
    from clara_live.config import DEFAULT_CONFIG_PATH
    from clara_live.judge.rank import critic_scorer
    from clara_live.judge.store import load_judge

    folder = Path(live.critic)
    if not folder.is_absolute():
        folder = DEFAULT_CONFIG_PATH.parent / folder
    return critic_scorer(load_judge(folder, kind="critic"))
