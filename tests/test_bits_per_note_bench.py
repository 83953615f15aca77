"""benchmarks/bits_per_note.py: the shipped model's bits per note on a small built corpus, corpus
by corpus, agreeing with `clara evaluate` on the same piece."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, SHARED, load_benchmark

from clara_live.cli import main as clara
from clara_live.config import load_config
from clara_live.corpus import build_corpus

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

bench = load_benchmark("bits_per_note")
SHIPPED = REPO / "trained_models" / "clara-notewise"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two")
    for name, files in (("pmd", sorted((SHARED / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:2]),
                        ("pop909", [SHARED / "corpus" / "pop909" / "001.mid"])):
        folder = root / "src" / name / ("Clementi" if name == "pmd" else "")
        folder.mkdir(parents=True)
        for f in files:
            shutil.copy(f, folder / f.name)
    (root / "src" / "pop909" / "README.md").write_text("# POP909\n")
    config = load_config(overrides=["corpus.workers=1", "corpus.valid_fraction=0.99", "corpus.test_fraction=0"])
    build_corpus([str(root / "src" / "pmd"), str(root / "src" / "pop909")], root / "built", config, progress=False)
    return root


def test_bits_per_note_by_corpus_agree_with_clara_evaluate(corpus, capsys):
    manifest = json.loads((corpus / "built" / "manifest.json").read_text())
    assert {p["split"] for p in manifest["pieces"]} == {"valid"}
    result = bench.measure(corpus / "built", SHIPPED, "valid")
    rows = result["corpora"]
    assert set(rows) == {"pmd", "pop909"} and rows["pmd"]["pieces"] == 2 and rows["pop909"]["pieces"] == 1
    song = next(p for p in manifest["pieces"] if p["corpus"] == "pop909")
    assert clara(["evaluate", "--model", str(SHIPPED), "--json", song["source"]]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert rows["pop909"]["bits_per_note"] == pytest.approx(evaluated["bits_per_note"], rel=0.01)
    assert 1.0 < rows["pmd"]["bits_per_note"] < rows["pop909"]["bits_per_note"] < 20.0  # the model knows Clementi


def test_pieces_moved_from_train_are_left_out(corpus, tmp_path):
    built = tmp_path / "built"
    shutil.copytree(corpus / "built", built)
    manifest = json.loads((built / "manifest.json").read_text())
    moved = next(p for p in manifest["pieces"] if p["corpus"] == "pmd")
    manifest["moved"] = [{"key": moved["key"], "from": "train", "to": "valid"}]
    (built / "manifest.json").write_text(json.dumps(manifest))
    result = bench.measure(built, SHIPPED, "valid")
    assert result["left_out_moved"] == 1 and result["corpora"]["pmd"]["pieces"] == 1
    assert bench.measure(built, SHIPPED, "valid", keep_moved=True)["corpora"]["pmd"]["pieces"] == 2
