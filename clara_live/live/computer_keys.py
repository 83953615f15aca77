"""The computer keyboard as a MIDI keyboard, for a player with no MIDI input at hand.

The layout most DAWs use (Ableton's, Logic's musical typing): the home row A S D F G H J K L ;
plays the white keys C D E F G A B C D E, the row above (W E _ T Y U _ O P) the black keys;
Z / X move an octave down / up, C / V the velocity down / up.

A terminal reports key presses, not releases. Without releases a note lasts until the player
strikes another key (keys struck within CHORD_WINDOW of each other sound together, as a chord),
or one beat, whichever comes first; a key held down repeats, and repeats keep its note sounding.
Where the terminal speaks the kitty keyboard protocol (kitty, foot, WezTerm, Ghostty, recent
iTerm2) it reports presses, repeats and releases, and a note lasts as long as its key is held.

`TypingKeyboard` is pure (key events and times in, MIDI messages out); `TerminalKeys` is the thread
that reads the terminal in cbreak mode and hands each message to a sink, as an input port would.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from clara_live.live.midi import NOTE_ON, note_off

CHORD_WINDOW = 0.04  # seconds: keys struck closer together than this sound together
REPEAT_GAP = 0.12  # seconds: the same key again sooner than this is the key held down (auto-repeat)
REPEAT_HOLD = 0.15  # seconds a held key's note outlasts its last repeat
VELOCITY_STEP = 20
KEYS = {"a": 0, "w": 1, "s": 2, "e": 3, "d": 4, "f": 5, "t": 6, "g": 7, "y": 8, "h": 9, "u": 10, "j": 11,
        "k": 12, "o": 13, "l": 14, "p": 15, ";": 16, "'": 17}  # key -> semitones above the octave's C
HELP = "keys: A S D F G H J K = C D E F G A B C, W E T Y U = black keys, Z/X octave, C/V velocity, Ctrl-C ends"
# kitty keyboard protocol: push flags 1 (disambiguate) + 2 (event types) + 8 (every key as an escape code)
KITTY_ON, KITTY_OFF = "\x1b[>11u", "\x1b[<u"
_KITTY = re.compile(rb"\x1b\[(\d+)(?::[\d:]*)?(?:;(\d*)(?::(\d+))?)?(?:;[\d:]*)?u")
_CSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)  # any other escape sequence, skipped
Sink = Callable[[list[int], float], None]


class TypingKeyboard:
    """Key events to MIDI messages. `press`, `release` and `due` return the messages to send at t
    (seconds, monotonic clock); `beat` is the hold of a note whose release is not reported."""

    def __init__(self, octave: int = 4, velocity: int = 100, channel: int = 0,
                 beat: Callable[[], float] = lambda: 0.6) -> None:
        self.octave = octave  # the octave of the A key's C (4: middle C)
        self.velocity = velocity
        self.channel = channel
        self.beat = beat
        self.sounding: dict[str, tuple[int, float, float]] = {}  # key -> (pitch, last pressed, release due at)
        self.reports_release = False  # set once a release event came: the terminal speaks kitty's protocol

    @property
    def status(self) -> str:
        return f"octave C{self.octave} · velocity {self.velocity}"

    def press(self, key: str, t: float, repeat: bool = False) -> list[list[int]]:
        """A key went down at t (repeat: the terminal says it is the key held down)."""
        key = key.lower()
        if key in ("z", "x", "c", "v"):
            if not repeat:
                self._control(key)
            return []
        if key not in KEYS:
            return []
        held = self.sounding.get(key)
        if held is not None and (repeat or (not self.reports_release and t - held[1] < REPEAT_GAP)):
            # the key held down: its note goes on (without releases, until REPEAT_HOLD after the last repeat)
            self.sounding[key] = (held[0], t, held[2] if self.reports_release else max(held[2], t + REPEAT_HOLD))
            return []
        if repeat:
            return []
        out = [] if self.reports_release else self._cut(t)  # a new key ends the notes struck before it
        if key in self.sounding:
            out.append(self._off(self.sounding.pop(key)[0]))
        pitch = 12 * (self.octave + 1) + KEYS[key]
        if not 0 <= pitch <= 127:
            return out
        self.sounding[key] = (pitch, t, t + self.beat())
        return [*out, [NOTE_ON | self.channel, pitch, self.velocity]]

    def release(self, key: str, t: float) -> list[list[int]]:  # noqa: ARG002 - the time is the caller's
        self.reports_release = True  # (a terminal that reports one release reports them all)
        held = self.sounding.pop(key.lower(), None)
        return [self._off(held[0])] if held is not None else []

    def due(self, t: float) -> list[list[int]]:
        """Note-offs of the notes whose hold ran out by t (not while releases are reported)."""
        if self.reports_release:
            return []
        gone = [key for key, (_, _, end) in self.sounding.items() if end <= t]
        return [self._off(self.sounding.pop(key)[0]) for key in gone]

    def close(self) -> list[list[int]]:
        """Note-offs for every note still sounding."""
        out = [self._off(pitch) for pitch, _, _ in self.sounding.values()]
        self.sounding.clear()
        return out

    def _cut(self, t: float) -> list[list[int]]:
        gone = [key for key, (_, struck, _) in self.sounding.items() if t - struck >= CHORD_WINDOW]
        return [self._off(self.sounding.pop(key)[0]) for key in gone]

    def _off(self, pitch: int) -> list[int]:
        return note_off(self.channel, pitch)

    def _control(self, key: str) -> None:
        if key == "z":
            self.octave = max(-1, self.octave - 1)
        elif key == "x":
            self.octave = min(8, self.octave + 1)
        elif key == "c":
            self.velocity = max(1, self.velocity - VELOCITY_STEP)
        else:
            self.velocity = min(127, self.velocity + VELOCITY_STEP)


class TerminalKeys:
    """The terminal's keys as a live input: a thread reads the terminal (cbreak mode: keys arrive as
    typed, unechoed; Ctrl-C still interrupts) and hands each message and its arrival time to
    sink(message, t), as `ports.InputPort` does. `close()` releases every note and restores the
    terminal; the terminal is restored also when the process ends by an exception."""

    def __init__(self, sink: Sink, beat: Callable[[], float] = lambda: 0.6, stdin: int | None = None,
                 stdout=None, clock: Callable[[], float] = time.monotonic) -> None:
        import termios
        import tty

        self.fd = sys.stdin.fileno() if stdin is None else stdin
        if not os.isatty(self.fd):
            raise OSError("standard input is not a terminal")
        self.stdout = sys.stdout if stdout is None else stdout
        self.sink, self.clock = sink, clock
        self.keys = TypingKeyboard(beat=beat)
        self.name = "computer keyboard"
        self._saved = termios.tcgetattr(self.fd)
        self._termios = termios
        tty.setcbreak(self.fd)
        self._write(KITTY_ON)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="clara-keys", daemon=True)
        self._thread.start()

    @property
    def status(self) -> str:
        return self.keys.status

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stdout.write(text)
            self.stdout.flush()

    def _read(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.01)
            now = self.clock()
            if ready:
                try:
                    data = os.read(self.fd, 1024)
                except OSError:
                    return
                if not data:
                    return  # the terminal is gone
                pending = self.feed(pending + data, now)
            elif pending:  # a lone Escape: no sequence follows it
                pending = self.feed(pending, now, final=True)
            with self._lock:
                messages = self.keys.due(now)
            for message in messages:
                self.sink(message, now)

    def feed(self, data: bytes, t: float, final: bool = False) -> bytes:
        """Hand the messages of the keys in data to the sink; returns an incomplete escape sequence's bytes."""
        i = 0
        while i < len(data):
            if data[i] == 0x1B:
                match = _KITTY.match(data, i)
                if match is not None:
                    self._kitty(int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1), t)
                    i = match.end()
                    continue
                other = _CSI.match(data, i)
                if other.end() == len(data) and not final and other.end() - i < 16:
                    return data[i:]  # the rest of the sequence is still on its way
                i = max(other.end(), i + 1)
                continue
            end = i + 1
            while end < len(data) and data[end] & 0xC0 == 0x80:  # a UTF-8 character's continuation bytes
                end += 1
            self._key(data[i:end].decode("utf-8", "replace"), t, "press")
            i = end
        return b""

    def _kitty(self, code: int, modifiers: int, event: int, t: float) -> None:
        self.keys.reports_release = True  # the terminal took the protocol: releases will come
        if code in (99, 100) and (modifiers - 1) & 4:  # Ctrl-C or Ctrl-D, which the protocol reports as keys
            os.kill(os.getpid(), signal.SIGINT)
            return
        if 0 < code < 0x110000 and not (modifiers - 1) & (2 | 4 | 8):  # no alt, ctrl or super
            self._key(chr(code), t, {1: "press", 2: "repeat", 3: "release"}.get(event, "press"))

    def _key(self, key: str, t: float, event: str) -> None:
        with self._lock:
            if event == "release":
                messages = self.keys.release(key, t)
            else:
                messages = self.keys.press(key, t, repeat=event == "repeat")
        for message in messages:
            self.sink(message, t)

    def close(self) -> None:
        """Stop reading, release every note, give the terminal back its settings; safe to call again."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(1.0)
        with self._lock:
            messages = self.keys.close()
        now = self.clock()
        for message in messages:
            self.sink(message, now)
        self._write(KITTY_OFF)
        with contextlib.suppress(self._termios.error):
            self._termios.tcsetattr(self.fd, self._termios.TCSADRAIN, self._saved)
