"""FluidSynth as a live MIDI output: a `fluidsynth` child process driven through its command shell.

No MIDI port plumbing: each MIDI message becomes one shell command (`noteon 0 60 100`) written to the
child's stdin. What FluidSynth 2.3.1 (Debian 12) does that shapes this module:
- the shell reads stdin only without -i (`-i` means no shell; `-s` opens a TCP shell on port 9800,
  so `-si` would not listen to stdin at all); -n keeps it from opening a MIDI input of its own;
- it reads stdin through readline even from a pipe: every command is echoed after a "> " prompt
  on stdout, and kept in readline's history, which grew by 19 MB and got 5x slower over 200,000
  commands; an INPUTRC with `set history-size 0` stops both. stdout is drained by a thread;
- the shell starts only after the soundfont is loaded and the audio driver is running, so commands
  written earlier just wait in the pipe; `echo` of a token marks the moment it is ready;
- a soundfont it cannot load is only a log line (it goes on without one), so it is checked here;
- the 'file' audio driver renders in real time (a timer paces it to the wall clock), not as fast
  as possible, so a note sent at t lands near t in the WAV;
- end of stdin makes it quit, so even a parent killed with SIGKILL leaves no fluidsynth behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from clara_live.errors import ClaraError
from clara_live.live.midi import ALL_NOTES_OFF, BEND, CONTROL, NOTE_OFF, NOTE_ON, PROGRAM, SUSTAIN, OpenNotes
from clara_live.render import check_soundfont

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTALL_HINT = "apt-get install fluidsynth fluid-soundfont-gm"
START_TIMEOUT_S = 30.0  # FluidR3_GM (141 MB) loads in ~0.3 s from the page cache, seconds from a cold disk
QUIT_TIMEOUT_S = 3.0
RELEASE_S = 0.5  # close() lets released notes ring this long before quitting, so the sound fades, not clicks
_READY = "clara-synth-ready"
_COMMANDS = {"noteon", "noteoff", "cc", "prog", "pitch_bend", "echo", "quit"}  # our commands, echoed


class FluidSynthOutput:
    """A MIDI output that plays through FluidSynth; send() may be called from any thread.

    soundfont: an .sf2/.sf3 file, DEFAULT_SOUNDFONT when None. audio_driver: FluidSynth's audio.driver
    (None: its default for the platform); 'file' with extra_settings {"audio.file.name": path} writes
    a WAV in real time. gain: FluidSynth's master gain (0 to 10). extra_settings: more `-o name=value`.
    Returns once the synth is ready to play. Raises ClaraError, one line naming the file or the
    reason, when fluidsynth is missing, the soundfont is missing or unreadable, or the process fails
    to start or is not ready within START_TIMEOUT_S.
    """

    def __init__(self, soundfont: str | Path | None = None, audio_driver: str | None = None,
                 gain: float = 0.5, extra_settings: dict[str, str] | None = None):
        sf2 = Path(soundfont) if soundfont is not None else DEFAULT_SOUNDFONT
        check_soundfont(sf2)
        if not 0 <= gain <= 10:
            raise ClaraError(f"synth gain {gain}: outside FluidSynth's range 0 to 10")
        exe = shutil.which("fluidsynth")
        if exe is None:
            raise ClaraError(f"fluidsynth not found: install it ({INSTALL_HINT}) or play through a MIDI output")
        self.name = f"FluidSynth ({sf2.name})"
        self.closed = False
        self._lock = threading.Lock()
        self._notes: OpenNotes = OpenNotes()  # what it turned on and not off
        self._channels: set[int] = set()  # every channel a message went out on
        self._log: deque[str] = deque(maxlen=50)  # its last output lines, for error messages
        self._ready = threading.Event()

        cmd = [exe, "-n", "-q", "-g", str(gain)]
        if audio_driver is not None:
            cmd += ["-a", audio_driver]
        for key, value in (extra_settings or {}).items():
            cmd += ["-o", f"{key}={value}"]
        cmd.append(str(sf2))
        fd, inputrc = tempfile.mkstemp(prefix="clara-fluidsynth-", suffix=".inputrc")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("set history-size 0\n")
            try:  # a session of its own: Ctrl-C reaches only us, and close() still sends its note-offs
                self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, env={**os.environ, "INPUTRC": inputrc},
                                              start_new_session=True)
            except OSError as exc:
                raise ClaraError(f"cannot run {exe} ({exc.strerror or exc.__class__.__name__})") from None
            self._finalizer = weakref.finalize(self, _stop, self._proc)  # also at exit, if nobody closed it
            self._reader = threading.Thread(target=_drain, args=(self._proc, self._log, self._ready), daemon=True,
                                           name="fluidsynth-output")
            self._reader.start()
            try:
                self._write(f"echo {_READY}\n")
                self._await(sf2)
            except BaseException:
                self._finalizer()
                raise
        finally:
            os.unlink(inputrc)  # readline has read it by the time the shell answers, or never will

    def _await(self, sf2: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready.wait(0.02):
            if self._proc.poll() is not None:
                raise ClaraError(f"FluidSynth could not start: {self._reason()}")
            if time.monotonic() > deadline:
                raise ClaraError(f"FluidSynth not ready after {START_TIMEOUT_S:.0f} s (loading {sf2})")
        if any("failed to load" in line.lower() for line in list(self._log)):  # it goes on with another soundfont
            raise ClaraError(f"{sf2}: FluidSynth could not load this soundfont ({self._reason(first=True)})")

    def send(self, message: Sequence[int]) -> None:
        """Play one MIDI message (raw bytes, status byte first) now.

        Note on/off (velocity 0 = off), control change, program change and pitch bend are played;
        anything else (clock, start/stop, active sensing, aftertouch, sysex) is ignored. Raises
        ValueError for a malformed channel message, ClaraError once closed or when FluidSynth stopped.
        """
        command = shell_command(message)
        with self._lock:
            if self.closed:
                raise ClaraError(f"output {self.name} is closed")
            if command is not None:
                self._book(message)
                self._write(command)

    def gone(self) -> str | None:
        """None while FluidSynth runs, else the one-line reason it stopped."""
        if self.closed or self._proc.poll() is None:
            return None
        return f"FluidSynth stopped: {self._reason()}"

    def _book(self, message: Sequence[int]) -> None:
        self._channels.add(message[0] & 0x0F)
        self._notes.update(message)

    def _write(self, text: str) -> None:
        try:
            self._proc.stdin.write(text.encode())
            self._proc.stdin.flush()  # now, not when a buffer fills: latency
        except (OSError, ValueError):  # a broken pipe, or a pipe already closed
            raise ClaraError(f"FluidSynth stopped: {self._reason()}") from None

    def _reason(self, first: bool = False) -> str:
        """Its first or last error line, else how it ended, else its last line."""
        if self._proc.poll() is not None:
            self._reader.join(1.0)  # the last lines it wrote before it ended
        lines = list(self._log)  # a snapshot: the reader thread appends
        errors = [line.removeprefix("fluidsynth: ").removeprefix("error: ")
                  for line in lines if "error" in line.lower()]
        code = self._proc.poll()
        if errors:
            return errors[0 if first else -1]
        if code is not None:
            return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return lines[-1] if lines else "no reason given"

    def close(self) -> None:
        """Release every note it turned on, send all-notes-off on each channel it used, let the
        release ring for RELEASE_S, quit FluidSynth and wait for it (killed after QUIT_TIMEOUT_S).
        Safe to call again, and when FluidSynth already stopped."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            commands = [f"noteoff {c} {k}\n" for c, k in sorted(self._notes.open)]
            for c in sorted(self._channels):  # the pedal first: a sustained note outlives all-notes-off
                commands += [f"cc {c} {SUSTAIN} 0\n", f"cc {c} {ALL_NOTES_OFF} 0\n"]
            self._notes.open.clear()
            try:
                self._write("".join(commands))
                if self._channels:
                    time.sleep(RELEASE_S)
                self._write("quit\n")
            except ClaraError:
                pass  # it stopped by itself: nothing sounds any more
        self._finalizer()

    def __enter__(self) -> FluidSynthOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shell_command(message: Sequence[int]) -> str | None:
    """The FluidSynth shell command (newline included) for one raw MIDI message, None for one it
    ignores; ValueError for a malformed channel message. Shell channels count from 0, like MIDI's."""
    kind = message[0] & 0xF0 if message and message[0] <= 0xFF else 0
    size = {NOTE_OFF: 3, NOTE_ON: 3, CONTROL: 3, PROGRAM: 2, BEND: 3}.get(kind)
    if size is None:  # system messages (0xF0-0xFF), aftertouch, or no status byte
        return None
    if len(message) != size or not all(0 <= b <= 127 for b in message[1:]):
        raise ValueError(f"malformed MIDI message {list(message)}")
    channel = message[0] & 0x0F
    if kind == NOTE_ON and message[2] > 0:
        return f"noteon {channel} {message[1]} {message[2]}\n"
    if kind in (NOTE_ON, NOTE_OFF):
        return f"noteoff {channel} {message[1]}\n"
    if kind == CONTROL:
        return f"cc {channel} {message[1]} {message[2]}\n"
    if kind == PROGRAM:
        return f"prog {channel} {message[1]}\n"
    return f"pitch_bend {channel} {message[1] | message[2] << 7}\n"  # 0..16383, 8192 = centre


def _drain(proc: subprocess.Popen, log: deque[str], ready: threading.Event) -> None:
    """Read its output until it ends (a full pipe would block it), keeping what is not the echo
    of a command; the echo of the ready token sets `ready`."""
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").strip().removeprefix(">").strip()  # "> " prompt, if any
        if line == _READY:
            ready.set()
        elif line and line.split()[0] not in _COMMANDS:
            log.append(line)


def _stop(proc: subprocess.Popen) -> None:
    """End of stdin makes it quit; kill it if it does not."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(QUIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class SilentOutput:
    """An output that plays nothing, for a machine with no audio device (the session is rendered to
    WAV afterwards); it checks each message as FluidSynth's output would."""

    name = "no audio device (WAV at the end)"

    def send(self, message: Sequence[int]) -> None:
        shell_command(message)

    def close(self) -> None:
        pass
