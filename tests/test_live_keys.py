"""The computer keyboard as a MIDI keyboard: the layout, notes without releases, kitty's releases,
and the terminal reader on a real pseudo-terminal."""

from __future__ import annotations

import os
import termios
import time

import pytest

from clara_live.live.computer_keys import CHORD_WINDOW, KITTY_OFF, KITTY_ON, TerminalKeys, TypingKeyboard

ON, OFF = 0x90, 0x80


def test_the_home_row_is_the_white_keys_and_the_row_above_the_black_ones():
    keys = TypingKeyboard(beat=lambda: 10.0)
    pitches = []
    for i, key in enumerate("awsedftgyhujk"):
        pitches += [m[1] for m in keys.press(key, i * 1.0) if m[0] == ON]
    assert pitches == list(range(60, 73))  # C4 .. C5, chromatic


def test_octave_and_velocity_keys():
    keys = TypingKeyboard()
    assert keys.press("z", 0.0) == [] and keys.press("c", 0.0) == []
    assert keys.press("a", 0.1) == [[ON, 48, 80]]
    for _ in range(3):
        keys.press("x", 1.0)
        keys.press("v", 1.0)
    assert keys.press("A", 2.0)[-1] == [ON, 84, 127]  # shift does not matter; velocity stops at 127
    assert keys.status == "octave C6 · velocity 127"
    for _ in range(20):
        keys.press("z", 3.0)
    assert keys.press("a", 4.0)[-1] == [ON, 0, 127]  # the lowest octave: C-1 is MIDI 0


def test_without_releases_a_note_lasts_until_the_next_key_or_a_beat():
    keys = TypingKeyboard(beat=lambda: 0.5)
    assert keys.press("a", 0.0) == [[ON, 60, 100]]
    assert keys.press("d", 0.2) == [[OFF, 60, 0], [ON, 64, 100]]  # the next key ends the first
    assert keys.due(0.6) == []
    assert keys.due(0.7) == [[OFF, 64, 0]]  # a beat after it was struck
    assert keys.sounding == {}


def test_keys_struck_together_sound_as_a_chord():
    keys = TypingKeyboard(beat=lambda: 1.0)
    out = keys.press("a", 0.0) + keys.press("d", CHORD_WINDOW / 2) + keys.press("g", CHORD_WINDOW * 0.9)
    assert [m for m in out if m[0] == OFF] == []
    assert sorted(p for p, _, _ in keys.sounding.values()) == [60, 64, 67]
    assert sorted(m[1] for m in keys.press("h", 0.5) if m[0] == OFF) == [60, 64, 67]


def test_a_held_key_repeating_keeps_its_note_and_a_new_stroke_strikes_again():
    keys = TypingKeyboard(beat=lambda: 0.5)
    keys.press("a", 0.0)
    t = 0.45
    while t < 2.0:  # the terminal's auto-repeat, every 30 ms
        assert keys.press("a", t) == [] or t == 0.45
        t += 0.03
    assert keys.due(2.0) == []  # still held
    assert keys.due(2.0 + 0.2) == [[OFF, 60, 0]]
    assert keys.press("a", 3.0) == [[ON, 60, 100]]
    assert keys.press("a", 3.5) == [[OFF, 60, 0], [ON, 60, 100]]  # struck again after a pause: a new note


def test_with_release_events_a_note_lasts_as_long_as_its_key():
    keys = TypingKeyboard(beat=lambda: 0.1)
    keys.release("q", 0.0)  # the terminal reports releases: from now on notes wait for theirs
    assert keys.press("a", 0.0) == [[ON, 60, 100]]
    assert keys.press("d", 1.0) == [[ON, 64, 100]]  # a new key does not end the held one
    assert keys.press("a", 1.5, repeat=True) == []
    assert keys.due(5.0) == []
    assert keys.release("a", 6.0) == [[OFF, 60, 0]]
    assert keys.close() == [[OFF, 64, 0]] and keys.sounding == {}


def test_keys_outside_the_layout_play_nothing():
    keys = TypingKeyboard()
    assert keys.press("1", 0.0) == [] and keys.press("m", 0.1) == [] and keys.press("é", 0.2) == []


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


class _Screen:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def _wait_for(got: list, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.005)


def test_the_terminal_reader_plays_typed_keys_and_gives_the_terminal_back(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    got, screen = [], _Screen()
    keys = TerminalKeys(lambda m, t: got.append((m, t)), beat=lambda: 30.0, stdin=slave, stdout=screen)
    try:
        assert termios.tcgetattr(slave)[3] & termios.ICANON == 0  # keys come as typed, not by line
        assert screen.text == KITTY_ON
        os.write(master, b"a")
        _wait_for(got, 1)
        time.sleep(0.1)
        os.write(master, b"\x1b[Ag")  # an arrow key (ignored), then G
        _wait_for(got, 3)
    finally:
        keys.close()
    messages = [m for m, _ in got]
    assert messages == [[ON, 60, 100], [OFF, 60, 0], [ON, 67, 100], [OFF, 67, 0]]  # the last closed by close()
    assert all(t2 >= t1 for (_, t1), (_, t2) in zip(got, got[1:], strict=False))
    assert screen.text == KITTY_ON + KITTY_OFF
    assert termios.tcgetattr(slave) == before


def test_the_terminal_reader_takes_kitty_press_and_release_events(pty):
    master, slave = pty
    got = []
    keys = TerminalKeys(lambda m, t: got.append(m), beat=lambda: 0.01, stdin=slave, stdout=_Screen())
    try:
        os.write(master, b"\x1b[97u")  # a pressed (no event type: a press)
        os.write(master, b"\x1b[100;1:1u\x1b[97;1:2u")  # d pressed, a repeating
        _wait_for(got, 2)
        time.sleep(0.1)  # longer than the "beat": with releases reported notes wait for them
        os.write(master, b"\x1b[97;1:3u\x1b[100;1:3u")  # both released
        _wait_for(got, 4)
    finally:
        keys.close()
    assert got == [[ON, 60, 100], [ON, 64, 100], [OFF, 60, 0], [OFF, 64, 0]]


def test_a_terminal_is_needed():
    read, write = os.pipe()
    try:
        with pytest.raises(OSError, match="not a terminal"):
            TerminalKeys(lambda m, t: None, stdin=read)
    finally:
        os.close(read)
        os.close(write)
