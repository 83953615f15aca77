"""A MIDI file as the player: its messages as a keyboard sends them, at their times."""

from __future__ import annotations

import threading
import time

import mido
import pytest

from clara_live.errors import InputError
from clara_live.live.playback import TimedInput, performance


def _file(path, tempo_bpm=120.0):
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm)))
    track.append(mido.Message("note_on", note=60, velocity=90, time=0))
    track.append(mido.Message("control_change", control=64, value=127, time=240))
    track.append(mido.Message("note_on", channel=9, note=36, velocity=90, time=0))  # drums: not the player's
    track.append(mido.Message("note_off", note=60, velocity=0, time=240))
    track.append(mido.Message("pitchwheel", pitch=100, time=0))
    midi.save(str(path))
    return path


def test_performance_is_the_keyboard_s_messages_at_their_seconds(tmp_path):
    path = _file(tmp_path / "a.mid")
    assert performance(path) == [(0.0, [0x90, 60, 90]), (0.25, [0xB0, 64, 127]), (0.5, [0x80, 60, 0])]
    fast = performance(path, speed=2.0)
    assert [t for t, _ in fast] == [0.0, 0.125, 0.25]


def test_a_file_that_cannot_be_played_is_one_line(tmp_path):
    empty = tmp_path / "empty.mid"
    mido.MidiFile().save(str(empty))
    with pytest.raises(InputError, match="empty.mid: no notes"):
        performance(empty)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00")
    with pytest.raises(InputError, match="bad.mid: cannot read"):
        performance(bad)
    with pytest.raises(InputError, match="speed"):
        performance(empty, speed=0)


def test_timed_input_hands_each_message_over_at_its_time_and_releases_held_notes_when_closed():
    got, done = [], threading.Event()
    events = [(0.0, [0x90, 60, 90]), (0.05, [0x90, 64, 90]), (0.1, [0x80, 60, 0]), (30.0, [0x80, 64, 0])]
    player = TimedInput(events, lambda m, t: got.append((m, t)) or (len(got) == 3 and done.set()))
    player.start()
    assert done.wait(10)
    assert [m for m, _ in got] == [[0x90, 60, 90], [0x90, 64, 90], [0x80, 60, 0]]
    assert all(t - player.began >= offset for (_, t), (offset, _) in zip(got, events, strict=False))
    player.close()  # long before the last message: the note still held is released
    assert got[-1][0] == [0x80, 64, 0] and not player.done.is_set()
    player.close()
    assert len(got) == 4


def test_timed_input_says_when_it_is_done():
    got = []
    player = TimedInput([(0.0, [0x90, 60, 90]), (0.01, [0x80, 60, 0])], lambda m, t: got.append(m))
    player.start()
    assert player.done.wait(10) and player.sent == 2
    time.sleep(0.01)
    player.close()
    assert got == [[0x90, 60, 90], [0x80, 60, 0]]  # nothing held: nothing added
