"""clara corpus on real files: splits, augmentation, manifest, bad files skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clara_live.cli import main
from clara_live.config import CorpusConfig, load_config
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


def test_pieces_stay_on_one_side_and_only_train_is_augmented(built):
    _, manifest = built
    assert len(manifest["pieces"]) == 12
    splits = {p["split"] for p in manifest["pieces"]}
    assert splits == {"train", "valid", "test"}, "fractions of 0.25 should fill every split from 12 pieces"
    for piece in manifest["pieces"]:
        shifts = [v["transpose"] for v in piece["versions"]]
        if piece["split"] == "train":
            assert sorted(shifts + piece["left_out"]) == list(range(-6, 6))
        else:
            assert shifts == [0] and piece["left_out"] == []


def test_token_files_match_manifest(built):
    out, manifest = built
    for split in ("train", "valid", "test"):
        lines = (out / f"{split}.txt").read_text().splitlines()
        versions = [v for p in manifest["pieces"] if p["split"] == split for v in p["versions"]]
        assert len(lines) == len(versions) == manifest["splits"][split]["versions"]
        for v in versions:
            assert len(lines[v["line"]].split()) == v["tokens"]
        assert sum(v["tokens"] for v in versions) == manifest["splits"][split]["tokens"]
    vocabulary = set(manifest["vocabulary"])
    assert all(t in vocabulary for line in (out / "train.txt").read_text().splitlines() for t in line.split())


def test_transpositions_are_real_shifts_that_stay_in_range(built):
    out, manifest = built
    lines = (out / "train.txt").read_text().splitlines()
    piece = next(p for p in manifest["pieces"] if p["split"] == "train" and len(p["versions"]) > 1)
    by_shift = {v["transpose"]: lines[v["line"]].split() for v in piece["versions"]}
    base = by_shift[0]
    for shift, tokens in by_shift.items():
        assert len(tokens) == len(base)
        for a, b in zip(base, tokens, strict=True):
            if a.startswith("wait"):
                assert a == b
            else:
                prefix = "endp" if a.startswith("endp") else "p"
                assert int(b[len(prefix):]) - int(a[len(prefix):]) == shift and 0 <= int(b[len(prefix):]) < 62
    counted = manifest["transpositions"]
    assert counted["kept"] == sum(len(p["versions"]) for p in manifest["pieces"])
    assert counted["left_out"] == sum(len(p["left_out"]) for p in manifest["pieces"])


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
