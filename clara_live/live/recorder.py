"""Every live session saved as a MIDI file: the player's track and Clara's.

Messages are recorded as they are heard (the player's on arrival, Clara's as sent), with
their monotonic times; tempo changes are written into the file's tempo map, so its beats
line up with the music and it can join a personal corpus (`clara corpus`, `clara train --init`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import mido

from clara_live.music.midi_io import write_midi

TICKS_PER_BEAT = 480
NOTE_OFF, NOTE_ON, CONTROL = 0x80, 0x90, 0xB0
TRACKS = {"player": "Player", "clara": "Clara"}


class Recorder:
    """Collects note, pedal and controller messages per track; `save` writes a type-1 file."""

    def __init__(self, t0: float, bpm: float) -> None:
        self.t0 = t0
        self.tempi: list[tuple[float, float]] = [(t0, bpm)]  # (time, bpm)
        self.events: dict[str, list[tuple[float, tuple[int, ...]]]] = {track: [] for track in TRACKS}
        self._lock = threading.Lock()

    def record(self, t: float, message: tuple[int, ...] | list[int], track: str) -> None:
        if track not in self.events or not message or message[0] >= 0xF0:
            return
        if message[0] & 0xF0 not in (NOTE_OFF, NOTE_ON, CONTROL):
            return
        with self._lock:
            self.events[track].append((t, tuple(message)))

    def tempo(self, t: float, bpm: float) -> None:
        with self._lock:
            if abs(bpm - self.tempi[-1][1]) > 1e-6:
                self.tempi.append((t, bpm))

    def notes(self, track: str) -> int:
        return sum(1 for _, m in self.events[track] if m[0] & 0xF0 == NOTE_ON and m[2] > 0)

    def _ticks(self, t: float) -> int:
        """Seconds on the monotonic clock to ticks through the tempo map."""
        beats, (last_t, last_bpm) = 0.0, self.tempi[0]
        for when, bpm in self.tempi[1:]:
            if when >= t:
                break
            beats += (when - last_t) * last_bpm / 60.0
            last_t, last_bpm = when, bpm
        beats += (max(t, last_t) - last_t) * last_bpm / 60.0
        return round(beats * TICKS_PER_BEAT)

    def to_midi(self, end: float) -> mido.MidiFile:
        """The session up to `end`; a note still sounding there is closed there."""
        with self._lock:
            tempi = list(self.tempi)
            events = {track: list(items) for track, items in self.events.items()}
        midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        conductor = mido.MidiTrack()
        conductor.append(mido.MetaMessage("track_name", name="Clara Live session", time=0))
        now = 0
        for when, bpm in tempi:
            tick = self._ticks(max(when, self.t0))
            conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=tick - now))
            now = tick
        conductor.append(mido.MetaMessage("end_of_track", time=max(0, self._ticks(end) - now)))  # silence counts
        midi.tracks.append(conductor)
        for track, name in TRACKS.items():
            midi.tracks.append(self._track(name, events[track], end))
        return midi

    def _track(self, name: str, events: list[tuple[float, tuple[int, ...]]], end: float) -> mido.MidiTrack:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        sounding: set[tuple[int, int]] = set()
        timed = []
        for t, message in sorted(events, key=lambda e: e[0]):
            kind, channel = message[0] & 0xF0, message[0] & 0x0F
            key = (channel, message[1])
            if kind == NOTE_ON and message[2] > 0:
                if key in sounding:  # struck again while sounding: close it first
                    timed.append((t, mido.Message("note_off", channel=channel, note=key[1])))
                sounding.add(key)
                timed.append((t, mido.Message("note_on", channel=channel, note=key[1], velocity=message[2])))
            elif kind in (NOTE_ON, NOTE_OFF):
                if key in sounding:
                    sounding.discard(key)
                    timed.append((t, mido.Message("note_off", channel=channel, note=key[1])))
            else:
                timed.append((t, mido.Message("control_change", channel=channel, control=message[1],
                                              value=message[2])))
        close_at = max([end, *(t for t, _ in timed)])
        for channel, note in sorted(sounding):
            timed.append((close_at, mido.Message("note_off", channel=channel, note=note)))
        now = 0
        for t, message in timed:
            tick = self._ticks(t)
            track.append(message.copy(time=max(0, tick - now)))
            now = max(now, tick)
        return track

    def save(self, folder: str | Path, end: float, stamp: float | None = None) -> Path:
        """Write the session into folder as clara-session-YYYYmmdd-HHMMSS.mid (atomically)."""
        stamp = time.time() if stamp is None else stamp
        name = time.strftime("clara-session-%Y%m%d-%H%M%S", time.localtime(stamp))
        path = Path(folder) / f"{name}.mid"
        n = 1
        while path.exists():
            n += 1
            path = Path(folder) / f"{name}-{n}.mid"
        write_midi(self.to_midi(end), path)
        return path
