"""Training a judge on real corpus pieces with a tiny model: it runs, learns what can be learnt,
judges whole pieces from their windows, and the labelled loader skips and reports bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clara_live.codec import make_codec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig, ModelConfig
from clara_live.judge.classifier import Classifier
from clara_live.judge.data import split_pieces
from clara_live.judge.pieces import load_labelled
from clara_live.judge.predict import confusion, predict_pieces, top_k_accuracy
from training.judge import (
    HeadTraining,
    JudgeTraining,
    head_probabilities,
    log_loss,
    train_head,
    train_judge,
    window_features,
)

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

TINY = ModelConfig(emb_size=16, hidden_size=24, num_layers=2, dropout_emb=0.0, dropout_input=0.0,
                   dropout_hidden=0.0, dropout_output=0.0, weight_drop=0.0)


def test_the_loader_labels_by_folder_and_reports_bad_files(shared, tmp_path):
    codec = CodecConfig()
    vocabulary = make_codec(codec).vocabulary()
    for composer in ("Bach", "Chopin"):
        (tmp_path / composer).mkdir()
        for source in sorted((shared / "corpus" / "piano-midi-de" / composer).glob("*.mid"))[:2]:
            shutil.copy(source, tmp_path / composer / source.name)
    (tmp_path / "Bach" / "broken.mid").write_bytes(b"MThd not really")
    pieces, problems = load_labelled([str(tmp_path)], Vocabulary(vocabulary, codec))
    assert sorted({p.label for p in pieces}) == ["Bach", "Chopin"]
    assert len(pieces) == 4 and all(len(p.ids) > 100 for p in pieces)
    assert len(problems) == 1 and "broken.mid" in problems[0]
    assert {p.key.split("/")[0] for p in pieces} == {"Bach", "Chopin"}


def test_training_learns_a_label_the_tokens_carry():
    """Two 'composers': one writes only low notes, the other only high ones. A judge must tell them
    apart on pieces it never saw; split by piece."""
    rng = np.random.default_rng(0)
    vocab = 40
    def piece(low: bool) -> np.ndarray:
        base = 1 if low else 21
        return rng.integers(base, base + 18, size=int(rng.integers(80, 200)))
    items = [(f"{'low' if k % 2 == 0 else 'high'}/{k}.mid", "low" if k % 2 == 0 else "high") for k in range(40)]
    data = {key: piece(label == "low") for key, label in items}
    split = split_pieces(items)
    names = ["high", "low"]
    train = [(data[k], names.index(lab)) for k, lab in items if split[k] == "train"]
    test = [(data[k], names.index(lab)) for k, lab in items if split[k] == "test"]
    assert not {k for k, _ in items if split[k] == "train"} & {k for k, _ in items if split[k] == "test"}
    torch.manual_seed(0)
    model = Classifier(vocab, TINY, classes=2, head_dropout=0.0)
    history = train_judge(model, [p for p, _ in train], [y for _, y in train],
                          JudgeTraining(window=64, epochs=6, lr=5e-3, batch_size=8))
    assert history[-1] < history[0]
    probs = predict_pieces(model, [p for p, _ in test], window=64, stride=32)
    labels = [y for _, y in test]
    assert probs.shape == (len(test), 2) and torch.allclose(probs.sum(-1), torch.ones(len(test)))
    assert top_k_accuracy(probs, labels, 1) == 1.0
    assert top_k_accuracy(probs, labels, 2) == 1.0
    matrix = confusion(probs, labels, 2)
    assert matrix.sum() == len(test) and np.trace(matrix) == len(test)


def test_the_head_alone_learns_on_a_frozen_encoder_and_leaves_it_unchanged():
    """The composer's first stage: features computed once, only the head trained; pieces of
    very different lengths and unbalanced classes still come out right; a seed repeats a run."""
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    model = Classifier(40, TINY, classes=2, head_hidden=0, pool_layers="all", norm="standard")
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    before_training = {k: v.clone() for k, v in model.state_dict().items()}

    def piece(label: int, length: int) -> np.ndarray:
        return rng.integers(1 + 20 * label, 19 + 20 * label, size=length)

    train = [(piece(0, int(rng.integers(60, 400))), 0) for _ in range(9)] + [(piece(1, 70), 1) for _ in range(3)]
    test = [(piece(0, 120), 0), (piece(1, 300), 1), (piece(1, 90), 1)]
    features = [[window_features(model, ids, 32, 16)] for ids, _ in train]
    assert features[0][0].shape[1] == model.features == 3 * (24 + 16)  # every layer, pooled three ways
    history = train_head(model, features, [y for _, y in train], HeadTraining(epochs=30, lr=1e-2, batch_size=16))
    assert history[-1] < history[0]
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    stacked = torch.cat([f[0] for f in features])
    assert torch.allclose(model.head[0].mean, stacked.mean(0), atol=1e-5)
    labels = [y for _, y in test]
    cached = head_probabilities(model, [window_features(model, ids, 32, 16) for ids, _ in test])
    direct = predict_pieces(model, [ids for ids, _ in test], window=32, stride=16)
    assert torch.allclose(cached, direct, atol=1e-5)  # the cached features are the model's own
    assert top_k_accuracy(direct, labels, 1) == 1.0
    assert log_loss(direct, labels) < log_loss(torch.full_like(direct, 0.5), labels)
    again = Classifier(40, TINY, classes=2, head_hidden=0, pool_layers="all", norm="standard")
    again.load_state_dict(before_training)
    assert train_head(again, features, [y for _, y in train], HeadTraining(epochs=30, lr=1e-2, batch_size=16)) \
        == history
    assert all(torch.equal(a, b) for a, b in zip(again.head.parameters(), model.head.parameters(), strict=True))


def test_a_composer_judge_of_a_built_corpus(shared, tmp_path):
    """On a corpus `clara corpus` built: composers as every corpus spells them (a roll's "Chopin,
    Frédéric" is "Chopin"), those with fewer works left out, and the corpus's own split by work
    (the generator never read a test piece)."""
    import json

    from clara_live.cli import main
    from clara_live.judge.store import load_judge

    root = tmp_path / "corpora"
    for composer, count in (("Bach", 4), ("Chopin", 4), ("Grieg", 1)):
        (root / "piano-midi-de" / composer).mkdir(parents=True)
        for source in sorted((shared / "corpus" / "piano-midi-de" / composer).glob("*.mid"))[:count]:
            shutil.copy(source, root / "piano-midi-de" / composer / source.name)
    rolls = root / "pianolatron"
    catalog = json.loads((shared / "corpus" / "pianolatron" / "catalog.json").read_text())
    chopin = [r for r in catalog if r["druid"] == "wq296df7434"]
    (rolls / "Chopin,_Fr_d_ric").mkdir(parents=True)
    shutil.copy(shared / "corpus" / "pianolatron" / "Chopin,_Fr_d_ric" / "wq296df7434.mid", rolls / "Chopin,_Fr_d_ric")
    (rolls / "catalog.json").write_text(json.dumps(chopin))
    built = tmp_path / "built"
    assert main(["corpus", str(root), "-o", str(built), "--set", "corpus.valid_fraction=0.25",
                 "--set", "corpus.test_fraction=0.25"]) == 0
    manifest = json.loads((built / "manifest.json").read_text())
    out = tmp_path / "composer"
    assert main(["judge", "train-composer", "--corpus", str(built), "--out", str(out), "--head-epochs", "2",
                 "--window", "64", "--min-works", "2"]) == 0
    judge = load_judge(out, kind="composer")
    assert judge.classes == ["Bach", "Chopin"]  # Grieg's one work is left out
    split, labels = judge.info["split"], judge.info["labels"]
    assert split == {p["key"]: p["split"] for p in manifest["pieces"] if not p["key"].startswith("Grieg/")}
    assert labels["pianolatron:wq296df7434"] == "Chopin"
    assert all(Path(judge.info["sources"][k]).is_file() for k in split)
