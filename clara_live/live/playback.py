"""A MIDI file as the player: `clara live --play FILE.mid`.

`performance` reads a file's notes, pedal and controllers as the raw messages a keyboard would
send, with their times in seconds (the file's tempo map applied; the drum channel left out);
`TimedInput` is the thread that hands each message to a sink at its time, as `ports.InputPort`
does with what it reads. A demonstration, a soak test and a benchmark in one: the session cannot
tell it from a player.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from clara_live.errors import InputError
from clara_live.live.midi import DRUMS, OpenNotes, is_note_on
from clara_live.music.midi_io import check_span, midi_bytes
from clara_live.music.read import not_regular

Sink = Callable[[list[int], float], None]


def performance(path: str | Path, speed: float = 1.0) -> list[tuple[float, list[int]]]:
    """(seconds from the start, message) for every note on/off and controller of the file, in order,
    played `speed` times as fast. The file is read as encoding reads it (midi_io.midi_bytes: the same
    refusals, the same metas of a wrong length ignored, a format-2 file's tracks played together, the
    same span). Raises InputError (one line naming the file) when it cannot be read or holds no notes."""
    import mido

    if not speed > 0:
        raise InputError(f"speed {speed}: must be positive")
    path = Path(path)
    kind = not_regular(path)
    if kind is not None:
        raise InputError(f"{path}: {kind}")
    data = midi_bytes(path)
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
        if midi.type == 2:  # independent sequences: symusic reads them as one piece, and so do we
            midi.type = 1
        check_span(path, max(map(_last_note, midi.tracks), default=0) / midi.ticks_per_beat)
        t, out = 0.0, []
        for message in midi:  # merged tracks, delta times in seconds through the tempo map
            t += message.time
            if message.is_meta or getattr(message, "channel", DRUMS) == DRUMS:
                continue
            if message.type in ("note_on", "note_off", "control_change"):
                out.append((t / speed, message.bytes()))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or exc.__class__.__name__
        raise InputError(f"{path}: cannot read as MIDI ({reason})") from None
    if not any(is_note_on(m) for _, m in out):
        raise InputError(f"{path}: no notes to play")
    return out


def _last_note(track) -> int:
    """The tick of a track's last note message (0 with none)."""
    tick = last = 0
    for message in track:
        tick += message.time
        if message.type in ("note_on", "note_off"):
            last = tick
    return last


class TimedInput:
    """Hands each (seconds from start, message) of `events` to sink(message, t) when its time comes
    (t: seconds, monotonic clock) from `start()` on; `done` is set after the last one. Notes still
    held when it is closed early are released, so the session never keeps a key down that nobody holds."""

    def __init__(self, events: Iterable[tuple[float, list[int]]], sink: Sink, name: str = "file",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.events = sorted(events, key=lambda e: e[0])  # stable: messages at one time keep their order
        self.sink, self.clock, self.name = sink, clock, name
        self.began = 0.0
        self.done = threading.Event()
        self.sent = 0
        self._held: OpenNotes = OpenNotes()  # the notes it struck and has not released
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"clara-play {name}", daemon=True)

    def start(self) -> None:
        """Begin playing: the first message's time counts from now."""
        self.began = self.clock()
        self._thread.start()

    @property
    def duration(self) -> float:
        return self.events[-1][0] if self.events else 0.0

    def _run(self) -> None:
        for offset, message in self.events:
            due = self.began + offset
            while not self._stop.is_set():
                wait = due - self.clock()
                if wait <= 0:
                    break
                self._stop.wait(min(wait, 0.05))
            if self._stop.is_set():
                return
            self._held.update(message)
            self.sink(list(message), self.clock())
            self.sent += 1
        self._release()  # the file is over: the player's hands leave the keys
        self.done.set()

    def close(self) -> None:
        """Stop playing; release the notes it left held. Safe to call again."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        self._release()

    def _release(self) -> None:
        now = self.clock()
        for message in self._held.close_all():
            self.sink(message, now)
