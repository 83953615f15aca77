"""The `clara` command as a user runs it: main(argv) in-process, one real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mido
import pytest

from clara_live.cli import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MAESTRO = SHARED / "midi" / "maestro" / "maestro_1.mid"
EDGE = SHARED / "midi" / "edge"


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("encode", "decode", "corpus"):
        assert command in out


def test_encode_then_decode_round_trip(tmp_path, capsys):
    tokens = tmp_path / "m.txt"
    assert main(["encode", str(MAESTRO), "-o", str(tokens)]) == 0
    words = tokens.read_text().split()
    assert words and all(w.startswith(("p", "endp", "wait")) for w in words)
    midi_path = tmp_path / "m.mid"
    assert main(["decode", str(tokens), "-o", str(midi_path)]) == 0
    again = tmp_path / "again.txt"
    assert main(["encode", str(midi_path), "-o", str(again), "--set", "codec.sustain_pedal=false"]) == 0
    assert again.read_text().split() == words


def test_flags_and_set_change_the_encoding(tmp_path):
    out = tmp_path / "c.txt"
    assert main(["encode", str(MAESTRO), "-o", str(out), "--encoding", "chordwise", "--sample-freq", "4"]) == 0
    words = out.read_text().split()
    chords = [w for w in words if "rest" not in w]
    assert chords and all(len(c) == 63 and c[0] == "p" and set(c[1:]) <= {"0", "1"} for c in chords)
    assert all(w[:5] == "prest" for w in words if w not in chords)
    assert main(["encode", str(MAESTRO), "-o", str(out), "--set", "codec.max_wait=5"]) == 0
    waits = [int(w[4:]) for w in out.read_text().split() if w.startswith("wait")]
    assert max(waits) == 5


def test_decode_writes_tempo_from_config(tmp_path):
    tokens = tmp_path / "t.txt"
    tokens.write_text("p27 wait12 endp27 p31 wait24 endp31\n")
    out = tmp_path / "t.mid"
    assert main(["decode", str(tokens), "-o", str(out), "--set", "codec.bpm=90"]) == 0
    midi = mido.MidiFile(out)
    tempos = [m.tempo for t in midi.tracks for m in t if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(90)]
    notes = [m.note for t in midi.tracks for m in t if m.type == "note_on"]
    assert notes == [60, 64]


def test_bad_midi_is_one_line_error_with_exit_1(tmp_path, capsys):
    assert main(["encode", str(EDGE / "corrupted_control168.mid"), "-o", str(tmp_path / "x.txt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupted_control168.mid" in err[0] and "not a readable MIDI file" in err[0]
    assert not (tmp_path / "x.txt").exists()


def test_bad_token_names_file_and_position(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("p3 wait2 foo\n")
    assert main(["decode", str(bad), "-o", str(tmp_path / "bad.mid")]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad.txt" in err and "token 3" in err and "'foo'" in err
    assert not (tmp_path / "bad.mid").exists()


def test_batch_goes_on_after_a_bad_file(tmp_path, capsys):
    inputs = [str(EDGE / "corrupted_control168.mid"), str(MAESTRO), str(tmp_path / "missing.mid")]
    out = tmp_path / "tokens"
    assert main(["encode", *inputs, "-o", str(out)]) == 1
    assert (out / "maestro_1.txt").read_text().split()
    err = capsys.readouterr().err
    assert "corrupted_control168.mid" in err and "missing.mid: no such file" in err and "2 of 3 inputs failed" in err


@pytest.mark.parametrize("override, message", [
    ("codec.nope=1", "codec.nope: unknown key"),
    ("codec.sample_freq=abc", "codec.sample_freq: expected int"),
    ("nosection.x=1", "nosection: unknown section"),
    ("codecsample_freq", "expected section.key=value"),
])
def test_bad_override_is_refused_naming_the_key(tmp_path, capsys, override, message):
    assert main(["encode", str(MAESTRO), "-o", str(tmp_path / "x.txt"), "--set", override]) == 1
    assert message in capsys.readouterr().err


def test_console_script_runs_as_a_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "clara_live", "decode", str(tmp_path / "none.txt"),
                             "-o", str(tmp_path / "x.mid")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "none.txt" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_sampling_preset_sets_its_rule_and_flags_still_win():
    from clara_live.cli import _config, build_parser
    from clara_live.config import SAMPLING_PRESETS, load_config

    parser = build_parser()
    default = _config(parser.parse_args(["continue", str(MAESTRO), "-o", "x.mid"])).sampling
    assert default == load_config().sampling
    assert {k: getattr(default, k) for k in SAMPLING_PRESETS["default"]} == SAMPLING_PRESETS["default"]
    clara = _config(parser.parse_args(["continue", str(MAESTRO), "-o", "x.mid", "--preset", "clara"])).sampling
    assert (clara.random_freq, clara.top_k, clara.temperature) == (0.5, 5, 1.0)
    mixed = _config(parser.parse_args(["live", "--preset", "clara", "--top-k", "8"])).sampling
    assert (mixed.random_freq, mixed.top_k) == (0.5, 8)


def test_live_candidates_and_critic_set_the_live_session_only():
    from clara_live.cli import _config, build_parser
    from clara_live.config import load_config

    parser = build_parser()
    live = _config(parser.parse_args(["live", "--candidates", "3", "--critic", "judges/mine"])).live
    assert (live.candidates, live.critic) == (3, "judges/mine")
    # continue's own --candidates and --critic leave the live settings as they were
    cont = _config(parser.parse_args(["continue", "-o", "x.mid", "--candidates", "3", "--critic", "judges/mine"]))
    assert cont.live == load_config().live


@pytest.mark.parametrize("model", ["clara-notewise", "clara-chordwise"])
def test_evaluate_reports_bits_per_note_from_the_notes_it_encoded(capsys, model):
    """bits/note = NLL (nats/token) x tokens / notes / ln 2, the notes those the codec encoded:
    comparable across encodings, though their tokens per note differ threefold."""
    import json
    import math

    from clara_live.codec import make_codec, to_steps
    from clara_live.model import load_model
    from clara_live.music.notes import normalise
    from clara_live.music.read import read_music

    repo = Path(__file__).resolve().parents[1]
    files = sorted((repo.parent / "shared" / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:1]
    assert main(["evaluate", "--model", str(repo / "trained_models" / model), "--json", *map(str, files)]) == 0
    result = json.loads(capsys.readouterr().out)
    codec = load_model(repo / "trained_models" / model).codec
    notes = sum(len(normalise(to_steps(read_music(f, codec.sustain_pedal), codec))) for f in files)
    tokens = sum(len(make_codec(codec).encode(to_steps(read_music(f, codec.sustain_pedal), codec))) for f in files)
    assert result["notes"] == notes and result["tokens"] == tokens - len(files)  # a file's first token unpredicted
    assert result["bits_per_note"] == pytest.approx(result["nll"] * result["tokens"] / notes / math.log(2))
    assert 0.5 < result["bits_per_note"] < 20
