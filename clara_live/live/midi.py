"""MIDI messages as the live package meets them: raw bytes (a list or tuple of ints, status byte first),
the status constants, and `OpenNotes`, the one bookkeeping of which notes a stream of messages left
sounding (the scheduler's, the synth's, the recorder's and a played file's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

NOTE_OFF, NOTE_ON, CONTROL, PROGRAM, BEND = 0x80, 0x90, 0xB0, 0xC0, 0xE0
CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC  # system real-time
SUSTAIN, ALL_NOTES_OFF = 64, 123  # controllers
DRUMS = 9  # General MIDI's channel 10, counted from 0
Message = Sequence[int]
Owner = TypeVar("Owner")


def kind(message: Message) -> int:
    """The channel message's kind (NOTE_ON, CONTROL, ...), 0 for a system message or none."""
    return message[0] & 0xF0 if message and 0x80 <= message[0] < 0xF0 else 0


def is_note_on(message: Message) -> bool:
    return len(message) >= 3 and kind(message) == NOTE_ON and message[2] > 0


def note_off(channel: int, key: int, velocity: int = 0) -> list[int]:
    return [NOTE_OFF | channel, key, velocity]


class OpenNotes(Generic[Owner]):
    """Which (channel, key) notes sound, and who struck each (an answer's tag, a track, a time).

    `update` books one message and says what it was to the notes: "on" (a new note), "restrike" (a key
    struck again while it sounds: close it first, so its next off is unambiguous), "off" (a sounding
    note released), "stray" (an off of a note not sounding: drop it), or "other"."""

    def __init__(self) -> None:
        self.open: dict[tuple[int, int], Owner | None] = {}

    def update(self, message: Message, owner: Owner | None = None) -> str:
        if len(message) < 3 or kind(message) not in (NOTE_ON, NOTE_OFF):
            if kind(message) == CONTROL and len(message) >= 3 and message[1] == ALL_NOTES_OFF:
                self.silence(message[0] & 0x0F)
            return "other"
        note = (message[0] & 0x0F, message[1])
        if is_note_on(message):
            struck_again = note in self.open
            self.open[note] = owner
            return "restrike" if struck_again else "on"
        if note not in self.open:
            return "stray"
        del self.open[note]
        return "off"

    def release(self, note: tuple[int, int]) -> Owner | None:
        """Forget one note (it is being closed); returns who struck it."""
        return self.open.pop(note, None)

    def silence(self, channel: int) -> None:
        """An all-notes-off on channel: every note there is closed."""
        self.open = {note: owner for note, owner in self.open.items() if note[0] != channel}

    def close_all(self) -> list[list[int]]:
        """Note-offs for every open note, in (channel, key) order; then none is open."""
        offs = [note_off(channel, key) for channel, key in sorted(self.open)]
        self.open.clear()
        return offs
