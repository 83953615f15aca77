"""clara corpus on real files: splits, augmentation, manifest, bad files skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clara_live.cli import main
from clara_live.config import ConfigError, CorpusConfig, load_config
from clara_live.corpus import build_corpus, find_sources, split_of

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PIANO = SHARED / "corpus" / "piano-midi-de"


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    """Three composers' folders (copied into tmp: tests never write under ../shared) plus bad files."""
    root = tmp_path_factory.mktemp("src")
    for composer in ("Clementi", "Haydn", "Grieg"):
        (root / composer).mkdir()
        for midi in sorted((PIANO / composer).glob("*.mid"))[:4]:
            shutil.copy(midi, root / composer / midi.name)
    (root / "Edge").mkdir()
    for name in ("corrupted_control168.mid", "empty.mid"):
        shutil.copy(SHARED / "midi" / "edge" / name, root / "Edge" / name)
    return root


@pytest.fixture(scope="module")
def built(small_corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus")
    config = load_config(overrides=["corpus.workers=2", "corpus.valid_fraction=0.25", "corpus.test_fraction=0.25"])
    return out, build_corpus([str(small_corpus)], out, config, progress=False)


def test_split_is_stable_and_follows_fractions():
    config = CorpusConfig(valid_fraction=0.1, test_fraction=0.2)
    keys = [f"Composer/piece_{i}.mid" for i in range(4000)]
    splits = [split_of(k, config) for k in keys]
    assert splits == [split_of(k, config) for k in keys]
    assert abs(splits.count("test") / 4000 - 0.2) < 0.03
    assert abs(splits.count("valid") / 4000 - 0.1) < 0.03


def test_bad_files_are_skipped_with_reasons(built):
    _, manifest = built
    reasons = {Path(s["source"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"corrupted_control168.mid", "empty.mid"}
    assert "not a readable MIDI file" in reasons["corrupted_control168.mid"]
    assert reasons["empty.mid"] == "no notes"


def test_pieces_stay_on_one_side_each_stored_once_with_its_keys(built):
    _, manifest = built
    assert len(manifest["pieces"]) == 12 and manifest["format"] == 2
    splits = {p["split"] for p in manifest["pieces"]}
    assert splits == {"train", "valid", "test"}, "fractions of 0.25 should fill every split from 12 pieces"
    low, high = manifest["codec"]["low_pitch"], manifest["codec"]["low_pitch"] + manifest["codec"]["num_pitches"] - 1
    for piece in manifest["pieces"]:
        if piece["split"] == "train":
            assert 0 in piece["shifts"] and set(piece["shifts"]) <= set(range(-6, 6)) and len(piece["shifts"]) > 1
        else:
            assert piece["shifts"] == [0]
    # a shift is left out exactly when a note would leave the range
    for piece in [p for p in manifest["pieces"] if p["split"] == "train"][:2]:
        notes = _notes(piece["source"], manifest)
        lowest, highest = min(n.pitch for n in notes), max(n.pitch for n in notes)
        assert piece["shifts"] == [s for s in range(-6, 6) if low <= lowest + s and highest + s <= high]


def _notes(source: str, manifest: dict):
    from clara_live.codec import to_steps
    from clara_live.config import CodecConfig
    from clara_live.music.read import read_music

    return to_steps(read_music(source), CodecConfig(**manifest["codec"]))


def test_token_files_match_manifest(built):
    out, manifest = built
    for split in ("train", "valid", "test"):
        lines = (out / f"{split}.txt").read_text().splitlines()
        pieces = [p for p in manifest["pieces"] if p["split"] == split]
        assert len(lines) == len(pieces) == manifest["splits"][split]["pieces"]
        assert sorted(p["line"] for p in pieces) == list(range(len(pieces)))
        for p in pieces:
            assert len(lines[p["line"]].split()) == p["tokens"]
        assert sum(p["tokens"] for p in pieces) == manifest["splits"][split]["tokens"]
    vocabulary = set(manifest["vocabulary"])
    assert all(t in vocabulary for line in (out / "train.txt").read_text().splitlines() for t in line.split())


def test_a_drawn_key_is_the_piece_encoded_in_that_key(built):
    """Training transposes ids through the codec's shift table: the same tokens as encoding the
    notes moved by that many semitones (what the 12 stored copies held)."""
    from clara_live.codec import make_codec, transpose
    from clara_live.config import CodecConfig
    from training.data import Corpus, TrainSet

    out, manifest = built
    corpus = Corpus(out)
    pieces = corpus.pieces("train")
    augment = corpus.augment(pieces, corpus.vocabulary, CorpusConfig())
    train = sorted((p for p in manifest["pieces"] if p["split"] == "train"), key=lambda p: p["line"])
    codec_config = CodecConfig(**manifest["codec"])
    codec = make_codec(codec_config)
    piece, ids = train[0], pieces[0]
    notes = _notes(piece["source"], manifest)
    for shift in (piece["shifts"][0], piece["shifts"][-1]):
        moved = augment.table[shift][ids] if shift else ids
        assert [corpus.vocabulary[i] for i in moved] == codec.encode(transpose(notes, shift, codec_config))
    # an epoch holds every piece once (weights 1), each in one of its keys, and differs by epoch
    streams = [TrainSet(pieces, augment).stream(seed=3, epoch=e) for e in range(2)]
    assert all(len(s) == sum(len(p) for p in pieces) for s in streams)
    assert not np.array_equal(streams[0], streams[1])
    assert np.array_equal(streams[0], TrainSet(pieces, augment).stream(seed=3, epoch=0))


def test_corpus_weights_draw_a_corpus_more_or_less_often(built):
    from training.data import Corpus, TrainSet

    out, manifest = built
    name = manifest["pieces"][0]["corpus"]  # the folder's name
    corpus = Corpus(out)
    pieces = corpus.pieces("train")
    once = sum(len(p) for p in pieces)
    doubled = corpus.augment(pieces, corpus.vocabulary, CorpusConfig(weights=f"{name}=2"))
    assert len(TrainSet(pieces, doubled).stream(seed=1, epoch=0)) == 2 * once
    none = corpus.augment(pieces, corpus.vocabulary, CorpusConfig(weights=f"other=3, {name}=0"))
    assert len(TrainSet(pieces, none).stream(seed=1, epoch=0)) == 0
    with pytest.raises(ConfigError, match="corpus.weights"):
        CorpusConfig(weights="asap=lots")


def test_composer_counts_come_from_folders(built):
    _, manifest = built
    composers = manifest["composers"]
    assert set(composers) == {"Clementi", "Haydn", "Grieg"}
    assert all(sum(c[s] for s in ("train", "valid", "test")) == 4 for c in composers.values())


def test_chordwise_vocabulary_from_train_with_unk(small_corpus, tmp_path):
    config = load_config(overrides=["codec.encoding=chordwise", "codec.sample_freq=4", "corpus.workers=1",
                                    "corpus.transpose_low=0", "corpus.transpose_high=0"])
    manifest = build_corpus([str(small_corpus / "Clementi")], tmp_path, config, progress=False)
    vocabulary = manifest["vocabulary"]
    assert vocabulary[0] == "<unk>" and manifest["unknown_token"] == "<unk>"
    train_chords = {t for line in (tmp_path / "train.txt").read_text().splitlines() for t in line.split()
                    if "rest" not in t}
    assert train_chords and train_chords <= set(vocabulary)
    assert len(set(vocabulary)) == len(vocabulary)


def test_music21_composer_source():
    sources = find_sources(["music21:mozart"])
    assert sources and all(s.location.startswith("music21:") and s.composer == "mozart" for s in sources)


def test_cli_corpus_and_missing_source(tmp_path, small_corpus, capsys):
    out = tmp_path / "c"
    assert main(["corpus", str(small_corpus / "Grieg"), "-o", str(out), "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["codec"]["sample_freq"] == 12 and manifest["splits"]["train"]["pieces"] >= 1
    assert "train:" in capsys.readouterr().out
    assert main(["corpus", str(tmp_path / "nowhere"), "-o", str(out)]) == 1
    assert "nowhere: no such file or folder" in capsys.readouterr().err
