"""MIDI in and out: timing in quarter notes, families, the sustain pedal, edge files, writing."""

from __future__ import annotations

import shutil

import mido
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clara_live.codec import to_steps
from clara_live.config import CodecConfig
from clara_live.errors import InputError
from clara_live.music.instruments import DRUM_CHANNEL, PROGRAM_OF_FAMILY, family_of
from clara_live.music.midi_io import read_midi, steps_to_midi, write_midi
from clara_live.music.notes import Note, StepNote, normalise
from clara_live.music.read import read_music


def on(tick: int, pitch: int, channel: int = 0, velocity: int = 80) -> tuple[int, mido.Message]:
    return tick, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)


def off(tick: int, pitch: int, channel: int = 0) -> tuple[int, mido.Message]:
    return tick, mido.Message("note_off", channel=channel, note=pitch, velocity=0)


def program(program: int, channel: int = 0) -> tuple[int, mido.Message]:
    return 0, mido.Message("program_change", channel=channel, program=program)


def pedal(tick: int, down: bool, channel: int = 0) -> tuple[int, mido.Message]:
    return tick, mido.Message("control_change", channel=channel, control=64, value=127 if down else 0)


def timing(piece) -> list[tuple[float, float, int]]:
    return [(n.start, n.end, n.pitch) for n in piece.notes]


# --- instrument families ------------------------------------------------------------------


@pytest.mark.parametrize(("prog", "family"), [
    (0, "p"), (6, "p"), (8, "p"), (19, "p"), (21, "p"), (24, "p"), (33, "p"), (45, "p"), (46, "p"), (47, "p"),
    (104, "p"), (108, "p"),
    (40, "v"), (41, "v"), (42, "v"), (43, "v"), (44, "v"), (48, "v"), (52, "v"), (56, "v"), (65, "v"), (73, "v"),
    (80, "v"), (88, "v"), (95, "v"), (109, "v"), (110, "v"), (111, "v"),
    (96, None), (103, None), (112, None), (118, None), (127, None),
])
def test_family_of_general_midi_programs(prog, family):
    assert family_of(prog) == family


def test_drums_are_dropped_whatever_the_program():
    assert all(family_of(p, is_drum=True) is None for p in range(128))
    assert DRUM_CHANNEL == 9
    assert PROGRAM_OF_FAMILY == {"p": 0, "v": 40}


# --- reading ------------------------------------------------------------------------------


def test_read_times_in_quarter_notes_with_velocity_and_part(make_midi):
    path = make_midi("a.mid", [
        [program(0), on(0, 60, velocity=17), off(240, 60), on(480, 64, velocity=127), off(1200, 64)],
        [program(40, 1), on(960, 72, 1, velocity=55), off(1920, 72, 1)],
    ], tempos=[(0, 90.0)])
    piece = read_midi(path)
    assert piece.notes == [Note(0.0, 0.5, 60, 17, "p", 0), Note(1.0, 2.5, 64, 127, "p", 0),
                           Note(2.0, 4.0, 72, 55, "v", 1)]
    assert piece.bpm == pytest.approx(90.0)
    assert piece.source == str(path)


def test_ticks_per_beat_does_not_change_the_times(make_midi):
    coarse = make_midi("coarse.mid", [[on(0, 60), off(96, 60), on(144, 62), off(192, 62)]], ticks_per_beat=96)
    fine = make_midi("fine.mid", [[on(0, 60), off(480, 60), on(720, 62), off(960, 62)]], ticks_per_beat=480)
    assert timing(read_midi(coarse)) == timing(read_midi(fine)) == [(0.0, 1.0, 60), (1.5, 2.0, 62)]


def test_tempo_change_does_not_move_the_step_grid(make_midi):
    # a note on each beat; the tempo halves after two beats and doubles after four
    notes = [m for beat in range(6) for m in (on(480 * beat, 60 + beat), off(480 * beat + 240, 60 + beat))]
    path = make_midi("tempo.mid", [[program(0), *notes]], tempos=[(0, 120.0), (960, 60.0), (1920, 180.0)])
    piece = read_midi(path)
    assert [n.start for n in piece.notes] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(n.end - n.start == 0.5 for n in piece.notes)
    assert [n.start for n in to_steps(piece, CodecConfig(sample_freq=12))] == [0, 12, 24, 36, 48, 60]
    assert piece.bpm == pytest.approx(120.0)  # the first tempo


def test_lakh_tempo_changes_keep_onsets_on_the_tick_grid(edge):
    midi = mido.MidiFile(edge / "multitrack_lakh.mid")
    tempos = {m.tempo for track in midi.tracks for m in track if m.type == "set_tempo"}
    assert len(tempos) > 1  # the file really changes tempo
    piece = read_midi(edge / "multitrack_lakh.mid")
    # every onset is a whole number of ticks: quarter notes * ticks_per_beat
    assert all(abs(n.start * midi.ticks_per_beat - round(n.start * midi.ticks_per_beat)) < 1e-6
               for n in piece.notes)


def test_drums_and_unpitched_programs_are_dropped(make_midi):
    path = make_midi("band.mid", [
        [program(0), on(0, 60), off(480, 60)],
        [program(0, 9), on(0, 36, 9), off(120, 36, 9)],  # channel 10
        [program(115, 2), on(0, 70, 2), off(480, 70, 2)],  # woodblock
        [program(33, 3), on(0, 40, 3), off(480, 40, 3)],  # plucked bass: piano-like
    ])
    assert sorted((n.pitch, n.family) for n in read_midi(path).notes) == [(40, "p"), (60, "p")]


def test_note_under_the_pedal_sounds_until_the_lift(make_midi):
    path = make_midi("pedal.mid", [[
        program(0), pedal(0, True), on(0, 60), off(480, 60), on(480, 64), off(960, 64), pedal(1920, False),
        on(1920, 67), off(2400, 67),  # after the lift: unchanged
    ]])
    assert timing(read_midi(path)) == [(0.0, 4.0, 60), (1.0, 4.0, 64), (4.0, 5.0, 67)]
    assert timing(read_music(path, sustain_pedal=False)) == [(0.0, 1.0, 60), (1.0, 2.0, 64), (4.0, 5.0, 67)]


def test_release_before_the_pedal_goes_down_is_not_held(make_midi):
    path = make_midi("late.mid", [[program(0), on(0, 60), off(240, 60), pedal(480, True), pedal(960, False)]])
    assert timing(read_midi(path)) == [(0.0, 0.5, 60)]


def test_each_release_is_held_to_the_lift_of_its_own_press(make_midi):
    path = make_midi("presses.mid", [[
        program(0), pedal(0, True), on(0, 60), off(240, 60), pedal(960, False),
        on(1200, 62), off(1300, 62),  # released between the presses: not held
        pedal(1440, True), on(1440, 64), off(1500, 64), pedal(2400, False),
    ]])
    assert timing(read_midi(path)) == [(0.0, 2.0, 60), (2.5, 1300 / 480, 62), (3.0, 5.0, 64)]


def test_pedal_in_one_hand_applies_to_the_other_hand_of_the_same_program(make_midi):
    path = make_midi("hands.mid", [
        [program(0), pedal(0, True), on(0, 48), off(240, 48), pedal(1920, False)],  # left hand, pedal
        [program(0), on(0, 72), off(480, 72)],  # right hand
        [program(40, 1), on(0, 76, 1), off(480, 76, 1)],  # another program: no pedal
    ])
    assert sorted(timing(read_midi(path))) == [(0.0, 1.0, 76), (0.0, 4.0, 48), (0.0, 4.0, 72)]
    assert sorted(timing(read_midi(path, sustain_pedal=False))) == [(0.0, 0.5, 48), (0.0, 1.0, 72), (0.0, 1.0, 76)]


def test_pedal_in_a_track_of_its_own_holds_the_notes(make_midi):
    path = make_midi("pedal_track.mid", [
        [program(0), pedal(0, True), pedal(1920, False)],
        [program(0), on(0, 60), off(480, 60)],
    ])
    assert timing(read_midi(path)) == [(0.0, 4.0, 60)]


def test_piano_midi_de_pedal_track_lengthens_notes(shared):
    path = shared / "corpus" / "piano-midi-de" / "Beethoven" / "appass_2.mid"
    midi = mido.MidiFile(path)
    assert any(all(m.type != "note_on" for m in t) and any(m.is_cc(64) for m in t) for t in midi.tracks)
    held, dry = read_midi(path).notes, read_midi(path, sustain_pedal=False).notes
    assert sum(a.end > b.end for a, b in zip(held, dry, strict=True)) > 0


def test_real_file_pedal_lengthens_notes(maestro_files):
    def key(n: Note) -> tuple:
        return n.start, n.pitch, n.part, n.end

    held = sorted(read_midi(maestro_files[0]).notes, key=key)
    dry = sorted(read_midi(maestro_files[0], sustain_pedal=False).notes, key=key)
    assert [(n.start, n.pitch, n.velocity) for n in held] == [(n.start, n.pitch, n.velocity) for n in dry]
    assert all(a.end >= b.end for a, b in zip(held, dry, strict=True))
    assert sum(a.end > b.end for a, b in zip(held, dry, strict=True)) > len(dry) // 10


def test_real_file_sample_spans_composers(maestro_files, corpus_sample):
    assert len(maestro_files) >= 5
    assert len({p.parent.name for p in corpus_sample}) >= 10


def test_real_files_read_to_valid_notes(real_midi):
    piece = read_music(real_midi)
    assert piece.notes and piece.notes == sorted(piece.notes)
    for n in piece.notes:
        assert 0 <= n.start <= n.end and 0 <= n.pitch <= 127 and 1 <= n.velocity <= 127 and n.family in "pv"


# --- edge files and errors ----------------------------------------------------------------


def test_corrupted_file_raises_input_error_naming_it(edge):
    path = edge / "corrupted_control168.mid"
    with pytest.raises(InputError, match="corrupted_control168.mid") as info:
        read_music(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_empty_file_reads_to_a_piece_without_notes(edge):
    piece = read_music(edge / "empty.mid")
    assert piece.notes == [] and piece.bpm > 0
    assert to_steps(piece, CodecConfig()) == []


def test_missing_file_raises_input_error_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mid: no such file"):
        read_music(tmp_path / "nope.mid")


def test_unknown_suffix_raises_input_error_naming_it(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("p1 wait1")
    with pytest.raises(InputError, match=r"notes\.txt: unknown file type \.txt"):
        read_music(path)
    bare = tmp_path / "README"
    bare.write_text("x")
    with pytest.raises(InputError, match=r"README: unknown file type \(none\)"):
        read_music(bare)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match=r"not a regular file \(a folder\)"):
        read_music(tmp_path)


def test_garbage_with_a_midi_suffix_raises_input_error(tmp_path):
    path = tmp_path / "fake.mid"
    path.write_bytes(b"this is not a MIDI file at all")
    with pytest.raises(InputError, match=r"fake\.mid: not a readable MIDI file"):
        read_music(path)


def test_suffix_is_case_insensitive(maestro_files, tmp_path):
    upper = tmp_path / "PIECE.MID"
    shutil.copy(maestro_files[0], upper)
    assert read_music(upper).notes == read_music(maestro_files[0]).notes


# --- writing ------------------------------------------------------------------------------


def test_steps_to_midi_writes_a_track_per_family_with_its_program(tmp_path, pairing_errors):
    notes = [StepNote(0, 12, 60, 90, "p"), StepNote(6, 18, 72, 40, "v")]
    midi = steps_to_midi(notes, 12, bpm=100.0)
    assert midi.type == 1 and midi.ticks_per_beat % 12 == 0 and midi.ticks_per_beat >= 480
    tempo = [m for m in midi.tracks[0] if m.type == "set_tempo"]
    assert [mido.tempo2bpm(m.tempo) for m in tempo] == [pytest.approx(100.0)]
    programs = [[(m.channel, m.program) for m in t if m.type == "program_change"] for t in midi.tracks[1:]]
    assert programs == [[(0, 0)], [(1, 40)]]
    ons = [(m.note, m.velocity) for t in midi.tracks for m in t if m.type == "note_on"]
    assert ons == [(60, 90), (72, 40)]
    write_midi(midi, tmp_path / "out.mid")
    assert pairing_errors(tmp_path / "out.mid") == []
    assert read_midi(tmp_path / "out.mid").bpm == pytest.approx(100.0)


def test_violin_only_notes_use_one_track():
    midi = steps_to_midi([StepNote(0, 1, 60, 80, "v")], 4)
    assert len(midi.tracks) == 2
    assert [m.program for m in midi.tracks[1] if m.type == "program_change"] == [40]


def test_empty_notes_write_a_valid_file(tmp_path):
    write_midi(steps_to_midi([], 12), tmp_path / "empty.mid")
    assert read_midi(tmp_path / "empty.mid").notes == []


def test_note_off_comes_before_a_strike_at_the_same_tick():
    midi = steps_to_midi([StepNote(0, 4, 60), StepNote(4, 8, 60)], 4)
    events = [(m.type, m.time) for m in midi.tracks[1] if m.type.startswith("note")]
    assert events == [("note_on", 0), ("note_off", 480), ("note_on", 0), ("note_off", 480)]


def test_overlapping_notes_of_one_pitch_are_still_paired(tmp_path, pairing_errors):
    write_midi(steps_to_midi([StepNote(0, 8, 60), StepNote(2, 4, 60)], 4), tmp_path / "overlap.mid")
    assert pairing_errors(tmp_path / "overlap.mid") == []


step_note = st.builds(lambda s, d, p, v, f: StepNote(s, s + d, p, v, f),
                      st.integers(0, 200), st.integers(1, 60), st.integers(0, 127), st.integers(1, 127),
                      st.sampled_from("pv"))


@given(notes=st.lists(step_note, max_size=30), sample_freq=st.sampled_from([1, 3, 4, 5, 7, 12, 24, 100, 480]))
def test_written_steps_read_back_exactly(notes, sample_freq, tmp_path_factory, pairing_errors):
    notes = normalise(notes)
    path = tmp_path_factory.getbasetemp() / "steps.mid"
    write_midi(steps_to_midi(notes, sample_freq), path)
    assert pairing_errors(path) == []
    config = CodecConfig(sample_freq=sample_freq, chamber=True, low_pitch=0, num_pitches=128, violin_low=0)
    # velocity, pitch, family and the exact steps all come back
    assert to_steps(read_midi(path), config) == notes


def test_write_midi_replaces_the_file_atomically(tmp_path):
    target = tmp_path / "deep" / "er" / "out.mid"
    write_midi(steps_to_midi([StepNote(0, 1, 60)], 12), target)
    write_midi(steps_to_midi([StepNote(0, 2, 62)], 12), target)
    assert [n.pitch for n in read_midi(target).notes] == [62]
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.mid"]  # no temporary left behind


# --- hostile bytes: what a parser reads wrong unless told --------------------------------------------


def smf(*tracks: bytes, fmt: int = 1, ticks_per_beat: int = 480) -> bytes:
    """A Standard MIDI File of raw track bodies (each event with its delta time), byte for byte."""
    chunks = b"".join(b"MTrk" + len(t).to_bytes(4, "big") + t for t in tracks)
    return b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + len(tracks).to_bytes(2, "big") + \
        ticks_per_beat.to_bytes(2, "big") + chunks


EOT = b"\x00\xff\x2f\x00"


def test_notes_never_released_close_at_the_next_strike_of_their_key_or_the_track_s_end(tmp_path, capsys):
    # 60 struck at 0 and again at 960 and never released; 62 released; 64 never; the track ends at 1920
    track = (b"\x00\x90\x3c\x50" b"\x83\x60\x90\x3e\x40" b"\x81\x70\x80\x3e\x00" b"\x81\x70\x90\x3c\x60"
             b"\x83\x60\x90\x40\x30" b"\x83\x60\xff\x01\x00" + EOT)
    path = tmp_path / "held.mid"
    path.write_bytes(smf(track, fmt=0))
    assert timing(read_midi(path)) == [(0.0, 2.0, 60), (1.0, 1.5, 62), (2.0, 4.0, 60), (3.0, 4.0, 64)]
    assert [n.velocity for n in read_midi(path).notes] == [80, 64, 96, 48]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"clara: warning: {path}: 3 notes had no note-off; closed at the next strike of their key "
                   "or the track's end"] * 2


def test_a_note_struck_twice_and_released_once_keeps_both_strikes(tmp_path, capsys):
    # the release pairs with the first strike (as symusic pairs them); the second sounds to the track's end
    track = b"\x00\x90\x3c\x40" b"\x10\x90\x3c\x50" b"\x10\x80\x3c\x00" b"\x20\xff\x01\x00" + EOT
    path = tmp_path / "twice.mid"
    path.write_bytes(smf(track, fmt=0, ticks_per_beat=16))
    assert timing(read_midi(path)) == [(0.0, 2.0, 60), (1.0, 4.0, 60)]
    assert "1 notes had no note-off" in capsys.readouterr().err


def test_unreleased_notes_keep_their_track_s_instrument(tmp_path, capsys):
    violin = b"\x00\xc1\x28" b"\x00\x91\x48\x40" b"\x83\x60\xff\x01\x00" + EOT
    piano = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00" + EOT
    drums = b"\x00\x99\x24\x40\x83\x60\xff\x01\x00" + EOT  # channel 10: dropped, released or not
    path = tmp_path / "parts.mid"
    path.write_bytes(smf(violin, piano, drums))
    notes = read_midi(path).notes
    assert [(n.pitch, n.family, n.end) for n in notes] == [(60, "p", 1.0), (72, "v", 1.0)]
    assert len({n.part for n in notes}) == 2


def test_a_file_whose_notes_are_all_released_reads_without_a_warning(maestro_files, capsys):
    for path in maestro_files:
        read_midi(path)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("event, kind", [
    (b"\xff\x51\x01\x05", "a tempo of 1 byte, not 3"), (b"\xff\x51\x00", "a tempo of 0 bytes, not 3"),
    (b"\xff\x51\x04\x07\xa1\x20\x00", "a tempo of 4 bytes, not 3"),
    (b"\xff\x58\x02\x06\x03", "a time signature of 2 bytes, not 4"),
    (b"\xff\x59\x01\x04", "a key signature of 1 byte, not 2"),
])
def test_a_meta_event_of_the_wrong_length_is_ignored_with_a_warning(tmp_path, capsys, event, kind):
    """`FF 51 01 05` was read as the 3 bytes from its first on (327,824 us a quarter: 183 bpm)."""
    track = b"\x00" + event + b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00\x00\x90\x3e\x40\x83\x60\x80\x3e\x00" + EOT
    path = tmp_path / "meta.mid"
    path.write_bytes(smf(track, fmt=0))
    piece = read_midi(path, seconds=True)
    assert piece.bpm == 120.0
    assert timing(piece) == [(0.0, 0.5, 60), (0.5, 1.0, 62)]
    assert capsys.readouterr().err == f"clara: warning: {path}: ignored 1 meta event of the wrong length ({kind})\n"


def test_a_good_tempo_after_a_bad_one_still_counts(tmp_path, capsys):
    track = b"\x00\xff\x51\x01\x05" b"\x00\xff\x51\x03\x09\x89\x68" b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00" + EOT
    path = tmp_path / "tempos.mid"
    path.write_bytes(smf(track, fmt=0))
    assert read_midi(path).bpm == pytest.approx(96.0)
    assert "ignored 1 meta event" in capsys.readouterr().err


def test_a_division_of_0_ticks_a_quarter_is_refused_for_what_it_is(tmp_path):
    path = tmp_path / "tpq0.mid"
    path.write_bytes(bytes.fromhex("4d546864000000060000000100004d54726b0000000d00903c408360803c4000ff2f00"))
    with pytest.raises(InputError, match="tpq0.mid: .*0 ticks a quarter note"):
        read_midi(path)
