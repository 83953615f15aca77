"""A style token per piece (corpus.style; clara_live.corpus.styles): at the head of each line, its
composer's where they have music enough in train, else its corpus's; listed in the manifest and
the vocabulary; touch files still aligned; the judges never see it (real files from ../shared)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clara_live.codec.tokens import Kind
from clara_live.codec.vocabulary import KINDS
from clara_live.config import load_config
from clara_live.corpus import SPLITS, build_corpus, find_sources
from clara_live.corpus.built import BuiltCorpus
from clara_live.corpus.sources import Source
from clara_live.corpus.styles import choose, token_for
from clara_live.judge.pieces import load_built

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
SONG = "Reichardt,_Louise/12_Ges_nge,_Op.3/6_Kriegslied_des_Mays/lc5002006.mxl"
PIANO_FILES = ["Chopin/chpn-p15.mid", "Chopin/chpn-p16.mid", "Chopin/chpn-p20.mid", "Bach/bach_846.mid"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    for name in PIANO_FILES:
        (root / "piano-midi-de" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / "piano-midi-de" / name, root / "piano-midi-de" / name)
    (root / "pop909").mkdir()
    (root / "pop909" / "README.md").write_text("# POP909: piano arrangements of popular songs\n")
    for name in ("001.mid", "002.mid"):
        shutil.copy(CORPUS / "pop909" / name, root / "pop909" / name)
    song = root / "openscore-lieder" / SONG
    song.parent.mkdir(parents=True)
    shutil.copy(CORPUS / "openscore-lieder" / SONG, song)
    (root / "openscore-lieder" / "README.md").write_text("# OpenScore Lieder\n\nSongs for voice and piano\n")
    return root


def _build(collection: Path, out: Path, *overrides: str) -> dict:
    config = load_config(overrides=["corpus.workers=1", f"corpus.cache={out.parent / 'cache'}", "codec.chamber=true",
                                    "corpus.valid_fraction=0", "corpus.test_fraction=0", *overrides])
    return build_corpus([str(collection)], out, config, progress=False)


@pytest.fixture(scope="module")
def builds(collection, tmp_path_factory) -> tuple[Path, dict, Path, dict]:
    root = tmp_path_factory.mktemp("built")
    styled = _build(collection, root / "styled", "corpus.style=true", "corpus.style_min_works=3")
    plain = _build(collection, root / "plain")
    return root / "styled", styled, root / "plain", plain


def test_each_line_opens_with_its_style_and_holds_no_other(builds):
    out, manifest, _, _ = builds
    want = {"chpn": "chopin", "bach": "piano", "pop909": "pop", "lc5002006": "lied"}  # Bach: one work, under 3
    for p in manifest["pieces"]:
        line = (out / f"{p['split']}.txt").read_text().splitlines()[p["line"]].split()
        assert line[0] == f"style_{p['style']}" and not any(t.startswith("style_") for t in line[1:])
        assert p["style"] == next(s for k, s in want.items() if k in p["source"])
        assert p["tokens"] == len(line)


def test_the_manifest_and_the_vocabulary_list_the_styles(builds):
    out, manifest, _, plain = builds
    counts = {name: (c["train"], c["valid"], c["test"], c["train_works"]) for name, c in manifest["styles"].items()}
    assert counts == {"chopin": (3, 0, 0, 3), "lied": (1, 0, 0, 1), "piano": (1, 0, 0, 1), "pop": (2, 0, 0, 2)}
    assert sum(s["tokens"] for s in manifest["styles"].values()) == manifest["splits"]["train"]["tokens"]
    assert [manifest["styles"][n]["composers"] for n in ("chopin", "pop")] == [["Chopin"], ["POP909"]]
    assert manifest["vocabulary"] == plain["vocabulary"] + ["style_chopin", "style_lied", "style_piano", "style_pop"]
    assert "styles" not in plain and not any("style" in p for p in plain["pieces"])


def test_the_tokens_and_touch_are_those_of_a_build_without_style(builds):
    out, _, plain_out, _ = builds
    for split in SPLITS:
        styled = [line.split() for line in (out / f"{split}.txt").read_text().splitlines()]
        plain = [line.split() for line in (plain_out / f"{split}.txt").read_text().splitlines()]
        assert [line[1:] for line in styled] == plain
        assert (out / f"{split}.touch").read_text() == (plain_out / f"{split}.touch").read_text()
    corpus = BuiltCorpus(out)
    pieces = corpus.pieces("train", touch=True)  # refuses a touch line out of step with its note-ons
    vocab = corpus.vocab()
    styled = [row for piece in pieces for row in piece if vocab.kind[row[0]] == KINDS.index(Kind.STYLE)]
    assert len(styled) == len(pieces) and all(row[1] == row[2] == 0 for row in styled)  # no note-on: no touch
    assert [(piece[:, 1] > 0).any() for piece in pieces].count(True) == 6 == len(pieces) - 1  # the score: no touch


def test_the_judges_read_the_music_without_its_style(builds):
    out, manifest, _, _ = builds
    corpus = BuiltCorpus(out)
    pieces = load_built(out, corpus.vocabulary)
    assert len(pieces) == len(manifest["pieces"])
    vocab = corpus.vocab()
    assert not any(np.isin(p.ids, list(vocab.style_ids.values())).any() for p in pieces)
    assert [len(p.ids) for p in pieces] == [len(a) - 1 for a in corpus.pieces("train")]


def test_a_composer_needs_works_in_train_to_be_a_style():
    sources = [Source(f"{i}.mid", str(i), "Chopin, Frédéric", styles=("chopin", "piano")) for i in range(3)] + [
        Source("song.mxl", "s", "Chopin", styles=("chopin", "lied")), Source("pop.mid", "p", "POP909", styles=("pop",))]
    # three train works and a song: chopin, whatever the corpus; a test piece takes train's choice
    assert choose(sources, ["train", "train", "train", "test", "train"], [0, 1, 2, 3, 4], 3) == [
        "chopin", "chopin", "chopin", "chopin", "pop"]
    # two works in train (a work's two pieces count once): each piece takes its corpus's style
    assert choose(sources, ["train", "train", "test", "train", "train"], [0, 0, 2, 3, 4], 3) == [
        "piano", "piano", "piano", "lied", "pop"]
    assert choose([Source("x.mid", "x", "")], ["train"], [0], 1) == ["piano"]


def test_style_names_are_spelled_as_the_composer_judge_spells_composers(collection):
    assert token_for("Chopin, Frédéric") == token_for("Chopin") == token_for("chopin") == "style_chopin"
    assert token_for("Chopin,_Fr_d_ric") == "style_chopin" and token_for("pop") == "style_pop"
    assert token_for("") == token_for("1999") == ""
    # folder names with a stand-in for a letter, or a space: no style of one or two letters
    assert [token_for(n) for n in ("Holm_s,_Augusta_Mary_Anne", "Ja_ll,_Marie", "M_ller-Hermann,_Johanna")] == [
        "style_holms", "style_jall", "style_mller"]
    assert token_for("Le_Beau,_Luise_Adolpha") == token_for("Le Beau, Luise Adolpha") == "style_lebeau"
    assert token_for("Saint-Georges,_Joseph_Bologne") != token_for("Saint-Saëns, Camille") == "style_saintsaens"
    assert token_for("Mendelssohn-Bartholdy, Felix") == token_for("Mendelssohn") == "style_mendelssohn"
    styles = {(s.corpus, s.styles) for s in find_sources([str(collection)])}
    assert styles == {("piano-midi-de", ("bach", "piano")), ("piano-midi-de", ("chopin", "piano")),
                      ("pop909", ("pop",)), ("openscore-lieder", ("reichardt", "lied"))}
