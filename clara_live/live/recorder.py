"""Every live session saved as a MIDI file: the player's track and Clara's.

Messages are recorded as they are heard (the player's on arrival, Clara's as sent), with
their monotonic times; tempo changes are written into the file's tempo map, so its beats
line up with the music and it can join a personal corpus (`clara corpus`, `clara train --init`).

Each message is encoded into its track's bytes as it is recorded, so writing the whole session
costs a copy of bytes, not a pass over every message: `SessionWriter` rewrites the file
(atomically) every few seconds while the session goes on, and a session killed with SIGKILL, a
crash or a power cut loses only its last seconds.
"""

from __future__ import annotations

import bisect
import io
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mido

from clara_live.atomic import write_bytes
from clara_live.live.midi import ALL_NOTES_OFF, CONTROL, NOTE_OFF, NOTE_ON, PROGRAM, OpenNotes, kind

TICKS_PER_BEAT = 480
TRACKS = {"player": "Player", "clara": "Clara"}


def _varlen(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _meta(kind: int, data: bytes) -> bytes:
    return bytes([0xFF, kind]) + _varlen(len(data)) + data


def _set_tempo(bpm: float) -> bytes:
    return _meta(0x51, mido.bpm2tempo(bpm).to_bytes(3, "big"))


class _Track:
    """One track's events, encoded as they come: delta times and raw messages; notes struck again
    while sounding are closed first, offs of notes not sounding are dropped."""

    def __init__(self, name: str) -> None:
        self.data = bytearray(b"\x00" + _meta(0x03, name.encode("latin-1", "replace")))
        self.tick = 0
        self.sounding: OpenNotes = OpenNotes()
        self.notes = 0

    def add(self, tick: int, message: bytes) -> None:
        delta = max(0, tick - self.tick)
        self.tick += delta
        self.data += _varlen(delta) + message

    def record(self, tick: int, message: tuple[int, ...]) -> None:
        channel = message[0] & 0x0F
        if message[0] & 0xF0 == CONTROL and message[1] == ALL_NOTES_OFF:  # closes the channel's notes: say so
            for note in [n for n in self.sounding.open if n[0] == channel]:
                self.add(tick, bytes((NOTE_OFF | channel, note[1], 64)))
        what = self.sounding.update(message)
        if what == "other":  # a controller
            self.add(tick, bytes(message[:3]))
        elif what in ("on", "restrike"):
            if what == "restrike":  # struck again while sounding: close it first
                self.add(tick, bytes((NOTE_OFF | channel, message[1], 64)))
            self.notes += 1
            self.add(tick, bytes((NOTE_ON | channel, message[1], message[2])))
        elif what == "off":
            self.add(tick, bytes((NOTE_OFF | channel, message[1], 64)))

    def chunk(self, end_tick: int) -> bytes:
        """The track chunk as if it ended at end_tick: every note still sounding closed there."""
        tail, tick = bytearray(), self.tick
        for channel, key in sorted(self.sounding.open):
            tail += _varlen(max(0, end_tick - tick)) + bytes((NOTE_OFF | channel, key, 64))
            tick = max(tick, end_tick)
        tail += _varlen(max(0, end_tick - tick)) + _meta(0x2F, b"")
        body = bytes(self.data) + bytes(tail)
        return b"MTrk" + struct.pack(">I", len(body)) + body


class Recorder:
    """Collects note, pedal and controller messages per track; `save` writes a type-1 file.
    `record` and `tempo` may be called from any thread."""

    def __init__(self, t0: float, bpm: float) -> None:
        self.t0 = t0
        self._times = [t0]  # when each tempo began (seconds, monotonic clock)
        self._segments = [(t0, bpm, 0.0)]  # (time, bpm, beats from t0 to time)
        self._conductor = _Track("Clara Live session")
        self._conductor.add(0, _set_tempo(bpm))
        self._tracks = {track: _Track(name) for track, name in TRACKS.items()}
        self._lock = threading.Lock()
        self.version = 0  # counts changes, so a writer knows when there is something new

    def record(self, t: float, message: tuple[int, ...] | list[int], track: str) -> None:
        size = 2 if kind(message) == PROGRAM else 3  # a part's program (a duet's violin), or a note or controller
        if track not in self._tracks or len(message) < size or kind(message) not in (NOTE_OFF, NOTE_ON, CONTROL,
                                                                                      PROGRAM):
            return
        if not all(0 <= b < 128 for b in message[1:size]):  # a data byte out of range
            return
        with self._lock:
            self._tracks[track].record(self._ticks(t), tuple(message[:size]))
            self.version += 1

    def tempo(self, t: float, bpm: float) -> None:
        with self._lock:
            if abs(bpm - self._segments[-1][1]) <= 1e-6:
                return
            t = max(t, self._times[-1])
            beats = self._beats(t)
            self._times.append(t)
            self._segments.append((t, bpm, beats))
            self._conductor.add(round(beats * TICKS_PER_BEAT), _set_tempo(bpm))
            self.version += 1

    def notes(self, track: str) -> int:
        return self._tracks[track].notes

    def _beats(self, t: float) -> float:
        """Beats from t0 to t (seconds on the monotonic clock) through the tempo map."""
        if t <= self.t0:
            return 0.0
        start, bpm, beats = self._segments[bisect.bisect_right(self._times, t) - 1]
        return beats + (t - start) * bpm / 60.0

    def _ticks(self, t: float) -> int:
        return round(self._beats(t) * TICKS_PER_BEAT)

    def to_bytes(self, end: float) -> bytes:
        """The session up to `end` as a type-1 Standard MIDI File; a note still sounding there is closed there."""
        with self._lock:
            end_at = self._ticks(end)
            last = max([end_at, self._conductor.tick, *(t.tick for t in self._tracks.values())])
            chunks = [self._conductor.chunk(end_at)] + [t.chunk(last) for t in self._tracks.values()]
        header = b"MThd" + struct.pack(">IHHH", 6, 1, len(chunks), TICKS_PER_BEAT)
        return header + b"".join(chunks)

    def to_midi(self, end: float) -> mido.MidiFile:
        """The session up to `end`, read back as a mido file."""
        return mido.MidiFile(file=io.BytesIO(self.to_bytes(end)))

    def save(self, folder: str | Path, end: float, stamp: float | None = None) -> Path:
        """Write the session into folder as clara-session-YYYYmmdd-HHMMSS.mid (atomically)."""
        path = session_path(folder, stamp)
        write_bytes(path, self.to_bytes(end))
        return path


def session_path(folder: str | Path, stamp: float | None = None) -> Path:
    """A new file name in folder for a session begun at stamp (seconds since the epoch; now when None):
    clara-session-YYYYmmdd-HHMMSS.mid, with -2, -3 ... when that name is taken."""
    stamp = time.time() if stamp is None else stamp
    name = time.strftime("clara-session-%Y%m%d-%H%M%S", time.localtime(stamp))
    path = Path(folder) / f"{name}.mid"
    n = 1
    while path.exists():
        n += 1
        path = Path(folder) / f"{name}-{n}.mid"
    return path


class SessionWriter:
    """Writes the recorder's session to path (atomically) every `interval` seconds while it changes,
    on a thread of its own; `close(end)` writes it a last time, up to end. A write that fails is
    kept in `error` (the session goes on; the last write that worked stays on disk)."""

    def __init__(self, recorder: Recorder, path: str | Path, interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.recorder, self.path, self.interval, self.clock = recorder, Path(path), interval, clock
        self.error: Exception | None = None
        self.writes = 0
        self._written = -1  # the recorder's version last written
        self._stop = threading.Event()
        self._write()  # the file exists from the start
        self._thread = threading.Thread(target=self._run, name="clara-session-writer", daemon=True)
        self._thread.start()

    def _write(self, end: float | None = None) -> None:
        version = self.recorder.version
        data = self.recorder.to_bytes(self.clock() if end is None else end)
        write_bytes(self.path, data)
        self._written = version
        self.writes += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.recorder.version == self._written:
                continue
            try:
                self._write()
            except OSError as exc:
                self.error = exc

    def close(self, end: float) -> Path:
        """Stop the thread and write the whole session up to end; returns the path."""
        self._stop.set()
        self._thread.join()
        self._write(end)
        return self.path
