"""The session recorder: player and Clara on their own tracks, times through the tempo map,
every note closed, written atomically where it can be read back as a corpus file."""

from __future__ import annotations

import time

import mido
import pytest

from clara_live.live.recorder import TICKS_PER_BEAT, Recorder, SessionWriter, session_path
from clara_live.music.midi_io import read_midi


def _notes(track: mido.MidiTrack) -> list[tuple[int, int, str]]:
    """(absolute tick, note, type) of the note messages, velocity-0 note-ons read as offs."""
    out, now = [], 0
    for message in track:
        now += message.time
        if message.type in ("note_on", "note_off"):
            kind = "on" if message.type == "note_on" and message.velocity > 0 else "off"
            out.append((now, message.note, kind))
    return out


def test_tracks_and_times_follow_the_tempo_map(tmp_path):
    rec = Recorder(t0=100.0, bpm=120.0)
    rec.record(100.5, [0x90, 60, 90], "player")  # beat 1
    rec.record(101.0, [0x80, 60, 0], "player")  # beat 2
    rec.tempo(101.0, 60.0)  # from here a beat is a second
    rec.record(102.0, [0x90, 67, 70], "clara")  # beat 3
    rec.record(103.0, [0x90, 67, 0], "clara")  # beat 4
    rec.record(102.5, [0xF8], "player")  # clock: not music
    rec.record(102.5, [0xE0, 0, 64], "player")  # pitch bend: not kept
    midi = rec.to_midi(end=104.0)
    names = [t.name for t in midi.tracks]
    assert names == ["Clara Live session", "Player", "Clara"]
    assert _notes(midi.tracks[1]) == [(TICKS_PER_BEAT, 60, "on"), (2 * TICKS_PER_BEAT, 60, "off")]
    assert _notes(midi.tracks[2]) == [(3 * TICKS_PER_BEAT, 67, "on"), (4 * TICKS_PER_BEAT, 67, "off")]
    tempi = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempi == [mido.bpm2tempo(120.0), mido.bpm2tempo(60.0)]
    assert midi.length == pytest.approx(4.0, abs=1e-3)  # 104 s - 100 s
    assert rec.notes("player") == 1 and rec.notes("clara") == 1


def test_notes_still_sounding_are_closed_at_the_end_and_restrikes_are_paired(tmp_path):
    rec = Recorder(t0=0.0, bpm=120.0)
    rec.record(0.5, [0x90, 60, 90], "player")
    rec.record(1.0, [0x90, 60, 80], "player")  # struck again, never released
    rec.record(1.0, [0xB0, 64, 127], "player")  # pedal down, kept
    midi = rec.to_midi(end=2.0)
    assert _notes(midi.tracks[1]) == [(480, 60, "on"), (960, 60, "off"), (960, 60, "on"), (1920, 60, "off")]
    assert any(m.type == "control_change" and m.control == 64 for m in midi.tracks[1])


def test_save_is_a_midi_file_the_corpus_reader_takes(tmp_path):
    rec = Recorder(t0=0.0, bpm=100.0)
    for k, pitch in enumerate([60, 64, 67]):
        rec.record(k * 0.6, [0x90, pitch, 80], "player")
        rec.record(k * 0.6 + 0.5, [0x80, pitch, 0], "player")
        rec.record(2.0 + k * 0.6, [0x90, pitch + 12, 70], "clara")
        rec.record(2.5 + k * 0.6, [0x80, pitch + 12, 0], "clara")
    first = rec.save(tmp_path / "sessions", end=4.0, stamp=0.0)
    second = rec.save(tmp_path / "sessions", end=4.0, stamp=0.0)  # same second: a new name, nothing lost
    assert first != second and first.exists() and second.exists()
    assert not list((tmp_path / "sessions").glob(".*.tmp"))
    piece = read_midi(first)
    assert sorted(n.pitch for n in piece.notes) == [60, 64, 67, 72, 76, 79]
    assert piece.bpm == pytest.approx(100.0)
    assert min(n.start for n in piece.notes if n.pitch == 72) == pytest.approx(2.0 * 100 / 60, abs=0.01)


def test_the_writer_keeps_the_file_up_to_date_while_the_session_goes_on(tmp_path):
    now = [0.0]
    rec = Recorder(t0=0.0, bpm=120.0)
    path = session_path(tmp_path / "sessions", stamp=0.0)
    writer = SessionWriter(rec, path, interval=0.02, clock=lambda: now[0])
    try:
        assert path.exists() and _notes(mido.MidiFile(path).tracks[1]) == []  # there from the start
        rec.record(0.5, [0x90, 60, 90], "player")
        now[0] = 1.0
        deadline = time.monotonic() + 10
        while writer.writes < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # the note still held is closed where the file ends, so every write is a complete file
        assert _notes(mido.MidiFile(path).tracks[1]) == [(480, 60, "on"), (960, 60, "off")]
        writes = writer.writes
        time.sleep(0.1)
        assert writer.writes == writes  # nothing new: nothing written
    finally:
        final = writer.close(end=2.0)
    assert final == path and not list(path.parent.glob(".*.tmp"))
    assert _notes(mido.MidiFile(path).tracks[1]) == [(480, 60, "on"), (1920, 60, "off")]


def test_an_hour_of_messages_and_tempo_changes_reads_back_whole():
    """Each message is encoded as it is recorded; the file read back holds every one, at its time."""
    rec = Recorder(t0=0.0, bpm=100.0)
    for k in range(20000):
        rec.record(k * 0.18, [0x90, 40 + k % 40, 80], "player")
        rec.record(k * 0.18 + 0.1, [0x80, 40 + k % 40, 0], "player")
        rec.tempo(k * 0.18, 100.0 + k % 3)
    midi = rec.to_midi(end=3600.0)
    assert rec.notes("player") == 20000 == sum(1 for m in midi.tracks[1] if m.type == "note_on" and m.velocity)
    assert midi.length == pytest.approx(3600.0, abs=0.01)


def test_an_all_notes_off_closes_the_channel_s_notes_in_the_file():
    rec = Recorder(t0=0.0, bpm=120.0)
    rec.record(0.5, [0x90, 60, 90], "clara")
    rec.record(0.5, [0x91, 62, 90], "clara")
    rec.record(1.0, [0xB0, 123, 0], "clara")  # the panic's all-notes-off on channel 1
    midi = rec.to_midi(end=2.0)
    offs = [(m.channel, m.note) for m in midi.tracks[2] if m.type == "note_off"]
    assert offs[0] == (0, 60) and (1, 62) in offs
    # 60 closed by the all-notes-off (1 s: tick 960), 62 on another channel only where the file ends (2 s)
    assert _notes(midi.tracks[2]) == [(480, 60, "on"), (480, 62, "on"), (960, 60, "off"), (1920, 62, "off")]
