"""`clara corpus` over several corpora: each read by its reader, works matched across corpora and
kept on one side of the split, encoded files cached, bad files reported (real files from
../shared, copied into a small collection laid out as ../shared/corpus is)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from clara_live.cli import main
from clara_live.config import CodecConfig, CorpusConfig, load_config
from clara_live.corpus import build_corpus, corpus_kind, find_sources, split_of
from clara_live.corpus.works import catalogue, composer_name, same_number

pytestmark = pytest.mark.slow  # real components (JACK, FluidSynth, the shipped model, corpora): not in test-fast

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
# fractions under which the twins' own hashes disagree: Islamey's ASAP work hashes to test, the
# piano-midi.de file to train; the Pianolatron roll of Chopin's prelude 16 to test, the file to train
FRACTIONS = ["corpus.valid_fraction=0.0", "corpus.test_fraction=0.2"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    pmd = root / "piano-midi-de"
    for name in ("Balakirev/islamei.mid", "Chopin/chpn-p16.mid", "Chopin/chpn-p15.mid"):
        (pmd / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / "piano-midi-de" / name, pmd / name)
    shutil.copy(CORPUS / "piano-midi-de" / "metadata.csv", pmd / "metadata.csv")  # the titles
    asap = root / "asap"
    with open(CORPUS / "asap" / "metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["folder"] == "Balakirev/Islamey"][:2]
        fields = reader.fieldnames
    for r in rows:
        (asap / r["midi_performance"]).parent.mkdir(parents=True, exist_ok=True)
        for column in ("midi_performance", "performance_annotations"):
            shutil.copy(CORPUS / "asap" / r[column], asap / r[column])
    with open(asap / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    rolls = root / "pianolatron"
    catalog = json.loads((CORPUS / "pianolatron" / "catalog.json").read_text())
    kept = [r for r in catalog if r["druid"] == "wq296df7434"]
    (rolls / "Chopin,_Fr_d_ric").mkdir(parents=True)
    shutil.copy(CORPUS / "pianolatron" / "Chopin,_Fr_d_ric" / "wq296df7434.mid", rolls / "Chopin,_Fr_d_ric")
    (rolls / "catalog.json").write_text(json.dumps(kept))
    pop = root / "pop909"
    pop.mkdir()
    (pop / "README.md").write_text("# POP909: piano arrangements of popular songs\n")
    for name in ("001.mid", "002.mid"):
        shutil.copy(CORPUS / "pop909" / name, pop / name)
    shutil.copy(SHARED / "midi" / "edge" / "corrupted_control168.mid", pop / "003.mid")
    return root


@pytest.fixture(scope="module")
def built(collection, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("built")
    config = load_config(overrides=["corpus.workers=2", *FRACTIONS])
    return out, build_corpus([str(collection)], out, config, progress=False)


def test_each_corpus_is_read_by_its_reader(collection):
    assert corpus_kind(collection) == "collection"
    assert [corpus_kind(collection / n) for n in ("asap", "pianolatron", "pop909", "piano-midi-de")] == [
        "asap", "pianolatron", "pop909", "plain"]
    found = find_sources([str(collection)])
    sources = {s.key: s for s in found}
    islamey = [s for s in found if s.corpus == "asap"]
    assert len(islamey) == 2 and {s.key for s in islamey} == {"asap:Balakirev/Islamey"}
    assert islamey[0].composer == "Balakirev" and islamey[0].title == "Islamey"
    roll = sources["pianolatron:wq296df7434"]
    assert roll.composer.startswith("Chopin") and "28" in roll.title  # from the catalogue, not the folder
    assert sources["pop909:001"].composer == "POP909"
    assert sources["Chopin/chpn-p16.mid"].corpus == "piano-midi-de"  # the plain folder's keys, as ever
    assert sources["Chopin/chpn-p16.mid"].title == "Preludes_Opus_28_16"  # from its metadata.csv


def test_a_work_in_two_corpora_lands_on_one_side(built):
    _, manifest = built
    config = CorpusConfig(valid_fraction=0.0, test_fraction=0.2)
    assert split_of("asap:Balakirev/Islamey", config) == "test" != split_of("Balakirev/islamei.mid", config)
    by_key: dict[str, set[str]] = {}
    for p in manifest["pieces"]:
        by_key.setdefault(p["key"], set()).add(p["split"])
    # matched by their notes: the performances take the sequenced piece's split
    assert by_key["asap:Balakirev/Islamey"] == by_key["Balakirev/islamei.mid"] == {"train"}
    # matched by the catalogue: op. 28 no. 16 in both titles
    assert by_key["pianolatron:wq296df7434"] == by_key["Chopin/chpn-p16.mid"] == {"train"}
    assert split_of("pianolatron:wq296df7434", config) == "test"
    joins = {(frozenset((m["a"], m["b"])), m["by"].split()[0]) for m in manifest["matches"]}
    assert (frozenset(("Balakirev/islamei.mid", "asap:Balakirev/Islamey")), "notes") in joins
    assert (frozenset(("Chopin/chpn-p16.mid", "pianolatron:wq296df7434")), "catalogue") in joins
    # a neighbouring prelude is another work: no join, and the pop songs join nothing
    assert not any("chpn-p15" in m["a"] + m["b"] or "pop909" in m["a"] + m["b"] for m in manifest["matches"])
    groups = {p["key"]: p["group"] for p in manifest["pieces"]}
    assert groups["asap:Balakirev/Islamey"] == groups["Balakirev/islamei.mid"] != groups["Chopin/chpn-p15.mid"]


def test_counts_by_corpus_and_a_bad_file_reported(built):
    _, manifest = built
    counts = {name: sum(c[s] for s in ("train", "valid", "test")) for name, c in manifest["corpora"].items()}
    assert counts == {"asap": 2, "pianolatron": 1, "pop909": 2, "piano-midi-de": 3}
    [bad] = manifest["skipped"]
    assert bad["source"].endswith("003.mid") and "not a readable MIDI file" in bad["reason"]


def test_a_second_build_reads_every_file_from_the_cache(collection, built, tmp_path):
    out, first = built
    config = load_config(overrides=["corpus.workers=1", *FRACTIONS])
    second = build_corpus([str(collection)], tmp_path, config, progress=False)
    assert second["cached"] == len(first["pieces"]) == 8  # a file that failed is read again (and fails)
    for split in ("train", "valid", "test"):
        assert (tmp_path / f"{split}.txt").read_text() == (out / f"{split}.txt").read_text()
    assert second["skipped"] == first["skipped"]
    # another codec setting is another key: nothing cached
    other = build_corpus([str(collection / "pop909")], tmp_path / "sf8",
                         load_config(overrides=["corpus.workers=1", "codec.sample_freq=8"]), progress=False)
    assert other["cached"] == 0


def test_the_cli_builds_the_rest_and_exits_1_when_a_file_failed(collection, tmp_path, capsys):
    assert main(["corpus", str(collection / "pop909"), "-o", str(tmp_path / "c"), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "003.mid" in captured.out and "1 of 3 inputs could not be encoded" in captured.err
    assert len((tmp_path / "c" / "train.txt").read_text().splitlines()) + len(
        (tmp_path / "c" / "valid.txt").read_text().splitlines()) + len(
        (tmp_path / "c" / "test.txt").read_text().splitlines()) == 2


def test_lieder_keep_their_piano_part(tmp_path):
    from clara_live.config import CodecConfig
    from clara_live.corpus import encode_source

    song = next((CORPUS / "openscore-lieder" / "Gounod,_Charles").rglob("*.mxl"))
    folder = tmp_path / "openscore-lieder" / "Gounod,_Charles" / "song"
    folder.mkdir(parents=True)
    shutil.copy(song, folder / song.name)
    (tmp_path / "openscore-lieder" / "README.md").write_text("# OpenScore Lieder\n\nSongs for voice and piano\n")
    [source] = find_sources([str(tmp_path / "openscore-lieder")])
    assert source.families == ("p",) and composer_name(source.composer) == "gounod"
    piano = encode_source(source, CodecConfig())
    everything = encode_source(source._replace(families=()), CodecConfig())
    assert piano.error is None and everything.error is None
    ons = [sum(t.startswith("p") for t in e.tokens) for e in (piano, everything)]
    assert 0 < ons[0] < ons[1]  # the voice's notes are gone, the piano's kept


@pytest.mark.parametrize(("a", "b", "same"), [
    ("Etudes_Opus_10_5_Black_Key", "Etudes_op_10_12", False),
    ("Preludes op. 28", "Preludes_Opus_28_16", True),
    ("Prelude op. 28, no. 16, b-flat minor", "Preludes_Opus_28_16", True),
    ("Piano_Sonata_in_A_minor_D_784_Opus_143_2", "Sonata a minor, D. 784", True),
    ("Fugue_bwv_846", "Prelude_bwv_847", False),
    ("For_Elise", "Für Elise", False),  # no catalogue number: the notes decide
])
def test_catalogue_numbers(a, b, same):
    assert bool(same_number(catalogue(a), catalogue(b))) is same


def test_composers_as_every_corpus_spells_them():
    assert {composer_name(n) for n in ("Beethoven, Ludwig van", "Beethoven", "Beethoven,_Ludwig_van")} == {"beethoven"}
    assert composer_name("Chopin, Frédéric") == composer_name("Chopin") == "chopin"
    assert composer_name("Mendelssohn-Bartholdy, Felix") == "mendelssohn"


def test_performances_on_their_beats_unless_asked_for_seconds(collection, built, tmp_path):
    """corpus.performance_grid (default beats): ASAP's performances re-timed on their annotated
    beats (clara_live.music.beats); "seconds" reads their MIDI times as they are, cached apart;
    other corpora are the same either way."""
    out, beats = built
    config = load_config(overrides=["corpus.workers=1", "corpus.performance_grid=seconds", *FRACTIONS])
    seconds = build_corpus([str(collection)], tmp_path, config, progress=False)
    assert seconds["cached"] == len(beats["pieces"]) - 2  # the two performances are encoded anew
    new = {m["split"]: (tmp_path / f"{m['split']}.txt").read_text().splitlines() for m in seconds["pieces"]}
    old = {m["split"]: (out / f"{m['split']}.txt").read_text().splitlines() for m in beats["pieces"]}
    for a, b in zip(beats["pieces"], seconds["pieces"], strict=True):
        assert a["key"] == b["key"] and a["split"] == b["split"]
        same = new[b["split"]][b["line"]] == old[a["split"]][a["line"]]
        assert same is (a["corpus"] != "asap"), a["key"]


def test_a_model_carries_its_corpus_s_held_out_pieces(collection, built, tmp_path):
    """splits.json (written by the trainer) names every valid and test piece of the corpus, found
    again under the corpora's root; ASAP's performances of one score count once unless asked."""
    from training.heldout import model_items, write_splits

    _, manifest = built
    write_splits(manifest, tmp_path)
    everything = ("piano-midi-de", "asap", "pianolatron", "pop909")
    for split in ("valid", "test"):
        items = model_items(tmp_path, split, everything, per_score=0, root=collection)
        expected = {Path(p["source"]).resolve() for p in manifest["pieces"] if p["split"] == split}
        assert {i.path.resolve() for i in items} == expected
    every = {**manifest, "pieces": [{**p, "split": "test"} for p in manifest["pieces"]]}  # all held out
    write_splits(every, tmp_path)
    held = model_items(tmp_path, "test", everything, per_score=0, root=collection)
    assert len(held) == len(manifest["pieces"]) and all(i.path.is_file() for i in held)
    performed = [i for i in held if i.corpus == "asap"]
    one = [i for i in model_items(tmp_path, "test", everything, root=collection) if i.corpus == "asap"]
    assert len(one) == len({i.path.parent for i in performed}) <= len(performed)
    assert model_items(tmp_path / "no-model", "test") is None


def test_the_judges_read_every_piece_of_a_built_corpus_under_its_own_key(built):
    """ASAP keys a score (its split is the score's): the judges tell its performances apart."""
    from clara_live.judge.pieces import load_built

    out, manifest = built
    pieces = load_built(out, manifest["vocabulary"])
    assert len(pieces) == len(manifest["pieces"]) == len({p.key for p in pieces})
    performed = sorted(p.key for p in pieces if p.corpus == "asap")
    assert len(performed) == 2 and all(k.startswith("asap:Balakirev/Islamey/") for k in performed)
    assert {p.split for p in pieces if p.corpus == "asap"} == {p["split"] for p in manifest["pieces"]
                                                               if p["key"] == "asap:Balakirev/Islamey"}


def test_a_performance_filed_twice_keeps_two_keys(tmp_path):
    """ASAP files a performance under its score's folder and its "_no_repeat" twin, both keyed by
    the score: the judges still read them as two pieces."""
    from clara_live.judge.pieces import load_built

    sources = ["asap/B/18-2/Schmitt01.mid", "asap/B/18-2_no_repeat/Schmitt01.mid", "asap/B/18-2/Ko02.mid",
               "pmd/Bach/a.mid"]
    keys = ["asap:B/18-2", "asap:B/18-2", "asap:B/18-2", "Bach/a.mid"]
    pieces = [{"source": s, "key": k, "composer": "B", "corpus": "asap", "group": 0, "split": "valid", "line": i}
              for i, (s, k) in enumerate(zip(sources, keys, strict=True))]
    manifest = {"vocabulary": ["wait1", "p1"], "pieces": pieces, "codec": dataclasses.asdict(CodecConfig())}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "valid.txt").write_text("p1 wait1\n" * 4)
    got = [p.key for p in load_built(tmp_path, ["wait1", "p1"], ("valid",))]
    assert got == ["asap:B/18-2/18-2/Schmitt01", "asap:B/18-2/18-2_no_repeat/Schmitt01", "asap:B/18-2/Ko02",
                   "Bach/a.mid"]


def test_a_manifest_without_codec_settings_is_refused_in_one_line(tmp_path):
    from clara_live.corpus.built import BuiltCorpus
    from clara_live.errors import InputError

    (tmp_path / "manifest.json").write_text(json.dumps({"vocabulary": ["wait1"], "pieces": []}))
    with pytest.raises(InputError, match=r"manifest.json: no codec settings"):
        BuiltCorpus(tmp_path)


def test_a_score_joining_a_roll_never_moves_the_roll():
    from collections import Counter

    from clara_live.corpus.works import Member, assign

    config = CorpusConfig()
    roll, song = "pianolatron:roll11", "openscore-lieder:Song/11.mxl"
    assert split_of(roll, config) == "test" and split_of(song, config) == "train" and song < roll
    members = [Member(roll, "pianolatron", False, "Schumann, Robert", "roll11", "Widmung, Op. 25", Counter()),
               Member(song, "openscore-lieder", False, "Schumann,_Robert", "Song", "1 Widmung Op. 25", Counter(),
                      score=True)]
    works = assign(members, config)
    assert works.groups[0] == works.groups[1] and works.splits == ["test", "test"]  # the roll's, not the first key's
    # scores alone: their first key's, as before
    alone = assign([m._replace(score=True) for m in members], config)
    assert alone.splits == ["train", "train"]
