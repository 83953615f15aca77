"""`clara continue` end to end: the shipped model, a tiny chordwise model, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mido
import pytest
import torch
from conftest import REPO, SHARED

from clara_live.cli import main
from clara_live.codec import make_codec, to_steps
from clara_live.config import CodecConfig, ModelConfig
from clara_live.model.awd_lstm import AWDLSTM
from clara_live.model.store import save_model
from clara_live.music.read import read_music

pytestmark = pytest.mark.slow  # real components (JACK, FluidSynth, the shipped model, corpora): not in test-fast

PROMPT = SHARED / "corpus" / "piano-midi-de" / "Chopin" / "chpn-p7.mid"


def _prompt() -> Path:
    assert PROMPT.is_file(), f"{PROMPT}: the shared corpus is missing"
    return PROMPT


def _tracks(path: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Track name -> (absolute tick, channel, pitch) of every note-on."""
    out = {}
    for track in mido.MidiFile(str(path)).tracks[1:]:
        name, tick, notes = "", 0, []
        for msg in track:
            tick += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "note_on" and msg.velocity:
                notes.append((tick, msg.channel, msg.note))
        out[name] = notes
    return out


def test_continue_writes_prompt_then_clara_on_her_own_channel(tmp_path, capsys, pairing_errors):
    out = tmp_path / "out.mid"
    assert main(["continue", str(_prompt()), "-o", str(out), "--seconds", "6", "--seed", "7"]) == 0
    assert "seed 7" in capsys.readouterr().out
    assert pairing_errors(out) == []
    tracks = _tracks(out)
    prompt = [v for k, v in tracks.items() if not k.startswith("Clara")]
    clara = [v for k, v in tracks.items() if k.startswith("Clara")]
    assert len(prompt) == 1 and len(clara) == 1 and clara[0], tracks.keys()
    assert {c for _, c, _ in clara[0]}.isdisjoint({c for _, c, _ in prompt[0]})
    midi = mido.MidiFile(str(out))
    last_prompt_off = max(t for t, _, _ in prompt[0])
    assert min(t for t, _, _ in clara[0]) > last_prompt_off  # Clara starts after the prompt's last onset
    step = midi.ticks_per_beat // 12
    span = max(t for t, _, _ in clara[0]) - min(t for t, _, _ in clara[0])
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    assert span < 6 / (tempo / 1e6) * midi.ticks_per_beat  # onsets within 6 s at the prompt's tempo
    assert all(t % step == 0 for t, _, _ in clara[0])  # on the model's grid


def test_same_seed_same_music_and_only_continuation(tmp_path):
    a, b, c = (tmp_path / f"{n}.mid" for n in "abc")
    base = ["continue", str(_prompt()), "--tokens", "120", "--random-freq", "1", "--top-k", "0", "--temperature",
            "1.2"]
    assert main([*base, "-o", str(a), "--seed", "3", "--only-continuation"]) == 0
    assert main([*base, "-o", str(b), "--seed", "3", "--only-continuation"]) == 0
    assert main([*base, "-o", str(c), "--seed", "4", "--only-continuation"]) == 0
    assert _tracks(a) == _tracks(b)
    assert _tracks(a) != _tracks(c)
    assert all(name.startswith("Clara") for name in _tracks(a))


@pytest.mark.parametrize("flags", [["--beam", "3"], ["--candidates", "4"], ["--form", "aab"], []])
def test_every_search_from_scratch_gives_paired_music(tmp_path, flags, pairing_errors):
    out = tmp_path / "out.mid"
    assert main(["continue", "-o", str(out), "--seed", "1", "--tokens", "60", *flags]) == 0
    assert pairing_errors(out) == []
    assert sum(len(v) for v in _tracks(out).values()) > 0


def test_aab_repeats_the_phrase_and_departs_from_its_middle(tmp_path):
    out = tmp_path / "out.mid"
    # on the grid (--touch flat): learned touch draws each statement's timing afresh (a repeat is played again,
    # not copied), and an onset moved by up to half a step may round to the next
    assert main(["continue", "-o", str(out), "--seed", "5", "--form", "aab", "--set", "sampling.phrase_bars=2",
                 "--set", "sampling.random_freq=1", "--set", "sampling.top_k=0", "--touch", "flat"]) == 0
    # a chamber model's v and p alike, each onset as a step
    step = mido.MidiFile(str(out)).ticks_per_beat // 12
    notes = [(round(t / step), d, p) for track in _tracks(out).values() for t, d, p in track]
    bar = 12 * 4
    phrase = 2 * bar
    statements = [sorted((t - k * phrase, p) for t, _, p in notes if k * phrase <= t < (k + 1) * phrase)
                  for k in range(3)]
    assert statements[0] and statements[0] == statements[1]
    first_half = [n for n in statements[0] if n[0] < bar]
    assert [n for n in statements[2] if n[0] < bar] == first_half
    assert not any(t >= 3 * phrase for t, _, _ in notes)


@pytest.mark.system("fluidsynth", "fluid-soundfont-gm")
def test_png_and_wav(tmp_path):
    out, png, wav = tmp_path / "o.mid", tmp_path / "o.png", tmp_path / "o.wav"
    assert main(["continue", str(_prompt()), "-o", str(out), "--seconds", "3", "--seed", "2",
                 "--png", str(png), "--wav", str(wav)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 44100


def test_long_prompt_uses_its_last_whole_bars(tmp_path, capsys):
    out = tmp_path / "o.mid"
    assert main(["continue", str(_prompt()), "-o", str(out), "--tokens", "10", "--seed", "0",
                 "--set", "sampling.prompt_tokens=200"]) == 0
    line = capsys.readouterr().out
    context = int(line.split("context ")[1].split()[0])
    assert 0 < context <= 200


def _tiny_chordwise_model(folder: Path) -> None:
    codec = CodecConfig(encoding="chordwise", sample_freq=4)
    chords: dict[str, int] = {}
    for token in make_codec(codec).encode(to_steps(read_music(_prompt()), codec)):
        if not token.startswith("prest"):
            chords[token] = chords.get(token, 0) + 1
    vocabulary = make_codec(codec).vocabulary(chords)
    torch.manual_seed(0)
    model = AWDLSTM(len(vocabulary), ModelConfig(emb_size=16, hidden_size=32, num_layers=2))
    save_model(folder, model, codec, vocabulary)


def test_chordwise_model_continues_from_its_own_config(tmp_path, pairing_errors):
    _tiny_chordwise_model(tmp_path / "chord")
    out = tmp_path / "o.mid"
    assert main(["continue", str(_prompt()), "-o", str(out), "--model", str(tmp_path / "chord"), "--seconds", "4",
                 "--seed", "1", "--set", "sampling.random_freq=1", "--set", "sampling.top_k=0"]) == 0
    assert pairing_errors(out) == []
    midi = mido.MidiFile(str(out))
    assert midi.ticks_per_beat % 4 == 0
    clara = [v for k, v in _tracks(out).items() if k.startswith("Clara")]
    assert clara and clara[0]
    assert all(t % (midi.ticks_per_beat // 4) == 0 for t, _, _ in clara[0])


@pytest.mark.parametrize("name", ["corrupted_control168.mid", "empty.mid"])
def test_unreadable_prompt_is_one_line_and_exit_1(tmp_path, name):
    result = subprocess.run([sys.executable, "-m", "clara_live", "continue", str(SHARED / "midi" / "edge" / name),
                             "-o", str(tmp_path / "o.mid")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert not (tmp_path / "o.mid").exists()


def test_foreign_model_folder_is_refused(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert main(["continue", "-o", str(tmp_path / "o.mid"), "--model", str(tmp_path / "m")]) == 1
    assert "config.json" in capsys.readouterr().err


def test_only_the_continuation_begins_in_its_first_bar_and_keeps_its_place_in_the_bar(tmp_path):
    """Alone, Clara's part starts in bar 1 (not after the prompt's length of silence), moved by
    whole bars, so each note keeps its place in the bar and its distance from the others."""
    whole, alone = tmp_path / "whole.mid", tmp_path / "alone.mid"
    base = ["continue", str(_prompt()), "--tokens", "120", "--seed", "3"]
    assert main([*base, "-o", str(whole)]) == 0
    assert main([*base, "-o", str(alone), "--only-continuation", "--png", str(tmp_path / "alone.png")]) == 0
    theirs = [n for name, notes in _tracks(whole).items() if name.startswith("Clara") for n in notes]
    hers = [n for notes in _tracks(alone).values() for n in notes]
    bar = mido.MidiFile(str(alone)).ticks_per_beat * 4
    assert hers and min(t for t, _, _ in hers) < bar <= min(t for t, _, _ in theirs)
    shift = min(t for t, _, _ in theirs) - min(t for t, _, _ in hers)
    assert shift % bar == 0
    assert sorted((t + shift, pitch) for t, _, pitch in hers) == sorted((t, pitch) for t, _, pitch in theirs)
    assert (tmp_path / "alone.png").stat().st_size > 1000
