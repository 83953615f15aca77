"""`clara continue` with a chamber model (families p and v, issue 25): a voice-and-piano or
violin-and-piano prompt read in both families, continued in both (or in the one `--clara-part`
names), written with each family on its own track, channel and program. Tiny random models built
here (tests/test_duet.py): the way through is tested, not the music."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from test_duet import Recording

from clara_live.cli import main
from clara_live.config import LiveConfig, load_config
from clara_live.continuation import Request, chamber_parts, continue_piece, v_program
from clara_live.engine import build_engine
from clara_live.model import load_model
from clara_live.music.notes import Note, Piece
from clara_live.music.read import read_music

LINE = [72, 74, 76, 77, 79, 77, 76, 74]
CHORDS = [(48, 55, 64), (53, 57, 65), (55, 59, 62), (48, 52, 60)]


def duet(path: Path, name: str = "Violin", program: int | None = 40) -> Path:
    """Two bars of a line (its track named `name`, with `program` or none) over a chord a beat on a piano track."""
    midi = mido.MidiFile(ticks_per_beat=480)
    line = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    if program is not None:
        line.append(mido.Message("program_change", channel=1, program=program))
    for pitch in LINE:
        line += [mido.Message("note_on", channel=1, note=pitch, velocity=80),
                 mido.Message("note_off", channel=1, note=pitch, velocity=0, time=480)]
    piano = mido.MidiTrack([mido.MetaMessage("track_name", name="Piano")])
    for chord in CHORDS * 2:
        piano += [mido.Message("note_on", note=p, velocity=70) for p in chord]
        piano += [mido.Message("note_off", note=p, velocity=0, time=480 if k == 0 else 0) for k, p in enumerate(chord)]
    midi.tracks += [line, piano]
    midi.save(path)
    return path


def clara_tracks(path: Path) -> dict[str, tuple[set[int], set[int], int]]:
    """Clara's tracks in a written continuation: name -> (channels, programs, notes struck)."""
    out = {}
    for track in mido.MidiFile(path).tracks:
        if track.name.startswith("Clara"):
            out[track.name] = ({m.channel for m in track if not m.is_meta},
                               {m.program for m in track if m.type == "program_change"},
                               sum(m.type == "note_on" and m.velocity > 0 for m in track))
    return out


def test_a_part_is_v_by_its_program_or_its_track_s_name():
    notes = [Note(0.0, 1.0, 60 + i, 80, "p", i) for i in range(6)]
    piece = Piece(notes, 120.0, "test", ("Voice", "Piano right hand", "Soprano", "Violoncello", "MELODY", "Bass"))
    assert [n.family for n in chamber_parts(piece).notes] == ["v", "p", "v", "v", "v", "p"]


def test_the_prompt_is_read_in_both_families(tmp_path):
    for name, program in (("Violin", 40), ("Voice", None), ("Track 1", 52)):  # a program, a name, a choir
        piece = chamber_parts(read_music(duet(tmp_path / f"{name}.mid", name, program)))
        families = {(piece.parts[n.part], n.family) for n in piece.notes}
        assert families == {(name, "v"), ("Piano", "p")}, (name, program)
    piece = chamber_parts(read_music(duet(tmp_path / "unnamed.mid", "Track 1", None)))
    assert {n.family for n in piece.notes} == {"p"}  # neither a program nor a name says v: piano, as read


def test_both_families_are_fed_and_continued(chamber_model, tmp_path):
    config = load_config(overrides=["sampling.motif_pull=0"])
    loaded = load_model(chamber_model)
    struck = set()
    for seed in range(3):
        sampler = Recording(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                            config.sampling, seed=seed)
        piece = read_music(duet(tmp_path / "prompt.mid", "Voice", None))
        result = continue_piece(loaded, sampler, piece, Request(seconds=8.0), config.sampling)
        fed = {t[0] for t in sampler.vocab.text(sampler.fed) if t[0] in "pv"}
        assert fed == {"p", "v"}  # the voice as v, the piano as p
        assert {n.family for n in result.prompt} == {"p", "v"}
        struck |= {n.family for n in result.continuation}
    assert struck == {"p", "v"}


def test_a_piano_prompt_is_continued_on_the_piano(chamber_model, tmp_path):
    config = load_config(overrides=["sampling.motif_pull=0"])
    loaded = load_model(chamber_model)
    engine = build_engine(loaded.model, config.inference)
    piano = read_music(duet(tmp_path / "piano.mid", "Track 1", None))  # neither name nor program says v
    struck = {"piano prompt": set(), "silence": set()}
    for seed in range(3):
        for name, piece in (("piano prompt", piano), ("silence", None)):
            sampler = Recording(engine, loaded.vocabulary, loaded.codec, config.sampling, seed=seed)
            result = continue_piece(loaded, sampler, piece, Request(seconds=8.0), config.sampling)
            struck[name] |= {n.family for n in result.continuation}
    assert struck == {"piano prompt": {"p"}, "silence": {"p", "v"}}  # from silence the same model plays both


@pytest.mark.parametrize("part", ["p", "v"])
def test_clara_part_keeps_her_to_one_family(chamber_model, tmp_path, part, capsys):
    prompt = duet(tmp_path / "prompt.mid")
    for seed in range(3):
        out = tmp_path / f"out-{seed}.mid"
        assert main(["continue", str(prompt), "--model", str(chamber_model), "-o", str(out), "--seconds", "8",
                     "--seed", str(seed), "--clara-part", part]) == 0
        tracks = clara_tracks(out)
        assert tracks, capsys.readouterr()
        allowed = {"Clara piano"} if part == "p" else {"Clara violin", "Clara cello"}
        assert set(tracks) <= allowed, tracks


def test_the_written_duet_has_each_family_on_its_track_channel_and_program(chamber_model, tmp_path):
    prompt = duet(tmp_path / "prompt.mid")
    out = tmp_path / "out.mid"
    assert main(["continue", str(prompt), "--model", str(chamber_model), "-o", str(out), "--seconds", "8",
                 "--seed", "1"]) == 0
    midi = mido.MidiFile(out)
    programs = {t.name: {(m.channel, m.program) for m in t if m.type == "program_change"} for t in midi.tracks}
    assert programs["piano"] == {(0, 0)} and programs["violin"] == {(1, 40)}  # the prompt as read
    tracks = clara_tracks(out)
    assert tracks["Clara piano"][1] == {0} and tracks["Clara violin"][1] == {40}
    channels = [c for t in tracks.values() for c in t[0]]
    assert len(channels) == len(set(channels)) and not {0, 1} & set(channels)  # her own channels
    back = read_music(str(out))  # read back, the families are where they were written
    assert {(back.parts[n.part], n.family) for n in back.notes} >= {("Clara piano", "p"), ("Clara violin", "v")}


def test_a_piano_model_reads_the_duet_as_piano_and_refuses_a_v_part(piano_model, tmp_path, capsys):
    prompt = duet(tmp_path / "prompt.mid")
    out = tmp_path / "out.mid"
    assert main(["continue", str(prompt), "--model", str(piano_model), "-o", str(out), "--seconds", "4"]) == 0
    assert set(clara_tracks(out)) == {"Clara piano"}
    capsys.readouterr()
    assert main(["continue", str(prompt), "--model", str(piano_model), "-o", str(out), "--clara-part", "v"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(piano_model) in err[0] and "--clara-part v" in err[0] and "chamber" in err[0]


@pytest.mark.slow
@pytest.mark.system("fluidsynth", "fluid-soundfont-gm")
def test_the_wav_sounds_each_family_with_its_program(tmp_path):
    """A continuation's v note and p note, written as `clara continue` writes them and rendered as its --wav is:
    the v note (violin, program 40) holds its level for its two seconds, the p note (piano) decays."""
    from test_live_synth import levels, span

    from clara_live.continuation import Continuation, to_midi
    from clara_live.music.notes import StepNote
    from clara_live.render import render_wav

    held = {}
    for family in ("p", "v"):
        result = Continuation([], [StepNote(0, 48, 67, 100, family)], [], 0, 120.0, 1)  # 2 s at 120 bpm
        wav = tmp_path / f"{family}.wav"
        render_wav(to_midi(result, 12, 55, only_continuation=True, bar_steps=48), wav)
        db = levels(wav)
        held[family] = float(span(db, 1.8, 2.0).max() - span(db, 0.1, 0.3).max())
    assert held["v"] > -6.0 and held["p"] < -15.0, held


def test_the_piano_roll_draws_each_family_apart(chamber_model, tmp_path, monkeypatch):
    from clara_live import piano_roll

    drawn = []
    monkeypatch.setattr(piano_roll, "draw_piano_roll", lambda parts, *a, colours, **k: drawn.append((parts, colours)))
    prompt = duet(tmp_path / "prompt.mid", "Voice", None)
    assert main(["continue", str(prompt), "--model", str(chamber_model), "-o", str(tmp_path / "out.mid"),
                 "--seconds", "8", "--seed", "1", "--png", str(tmp_path / "out.png")]) == 0
    [(parts, colours)] = drawn
    labels = [label.split(", ")[-1] for label, _ in parts]
    assert labels == ["piano", "violin/voice"] * 2 and len(set(colours)) == 4
    assert all({n.family for n in notes} <= {"p" if label.endswith("piano") else "v"} for label, notes in parts)
    assert {n.pitch for n in parts[1][1]} <= set(LINE)  # the prompt's voice, drawn as v


def test_her_v_part_keeps_the_prompt_s_v_program(chamber_model, tmp_path):
    """A voice prompt at 52 or 53 goes on as a voice (her v tracks and the prompt's at its program), and so does
    a part named for a singer at any other (MuseScore's oboe for a Lied's voice) or none; a v part with no v
    program (named Melody, no program) is written at live.program_v's default, violin 40."""
    default = LiveConfig().program_v
    for name, program, expected in (("Voice", 52, 52), ("Track 1", 53, 53), ("Violin", 41, 41),
                                    ("Voice", None, 53), ("Voice", 68, 53), ("Melody", None, default)):
        prompt = duet(tmp_path / "prompt.mid", name, program)
        out = tmp_path / "out.mid"
        assert main(["continue", str(prompt), "--model", str(chamber_model), "-o", str(out), "--seconds", "8",
                     "--seed", "1", "--clara-part", "v"]) == 0
        tracks = clara_tracks(out)
        assert tracks and all(programs == {expected} for _, programs, _ in tracks.values()), (name, program, tracks)
        prompt_v = {m.program for t in mido.MidiFile(out).tracks if t.name in ("violin", "cello")
                    for m in t if m.type == "program_change"}
        assert prompt_v == {expected}, (name, program, prompt_v)


def test_the_v_program_is_the_prompt_s_one_v_program():
    def piece(*parts: tuple[str, int, str]) -> Piece:
        notes = [Note(0.0, 1.0, 60 + i, 80, family, i) for i, (_, _, family) in enumerate(parts)]
        return Piece(notes, 120.0, "test", tuple(p[0] for p in parts), tuple(p[1] for p in parts))

    assert v_program(piece(("Voice", 52, "v"), ("Piano", 0, "p"))) == 52
    assert v_program(piece(("Flute", 73, "v"), ("Piano", 0, "p"))) == 73
    assert v_program(piece(("Flute", 0, "v"), ("Piano", 0, "p"))) is None  # v by its name alone
    assert v_program(piece(("Flute", -1, "v"), ("Piano", 0, "p"))) is None  # a score part with no program
    # a singer's part sounds as a voice whatever its file gave it: none, a piano's, MuseScore's oboe
    for program in (-1, 0, 68):
        assert v_program(piece(("Singstimme", program, "v"), ("Piano", 0, "p"))) == 53
    assert v_program(piece(("Violin", 40, "v"), ("Cello", 42, "v"), ("Piano", 0, "p"))) is None  # two: as written
    assert v_program(piece(("Violin", 40, "v"), ("Violin II", 40, "v"))) == 40
    assert v_program(Piece([Note(0.0, 1.0, 60, 80, "v", 0)], 120.0, "test", ("Violin",))) is None  # no programs read
    assert v_program(Piece([Note(0.0, 1.0, 60, 80, "v", 0)], 120.0, "test", ("Voice",))) == 53
