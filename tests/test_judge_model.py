"""The judges' classifier and data: concat pooling over real steps only, an encoder that is the
generator's, piece-level averaging, and a split that never puts one piece on two sides."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig, ModelConfig
from clara_live.judge.classifier import Classifier, piece_probabilities, pool
from clara_live.judge.data import pad_batch, split_pieces, transposed_versions, windows
from clara_live.model import AWDLSTM

TINY = ModelConfig(emb_size=16, hidden_size=24, num_layers=2)


def test_pool_reads_only_the_real_steps():
    out = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 2])
    pooled = pool(out, lengths)
    for row, n in enumerate(lengths.tolist()):
        real = out[row, :n]
        expected = torch.cat([real[-1], real.mean(0), real.max(0).values])
        assert torch.allclose(pooled[row], expected)


def test_the_encoder_is_the_generator():
    torch.manual_seed(0)
    generator = AWDLSTM(40, TINY).eval()
    clf = Classifier.from_generator(generator, classes=3).eval()
    tokens = torch.randint(0, 40, (2, 7))
    logits, _ = generator(tokens, generator.init_hidden(2))
    with torch.no_grad():
        assert torch.allclose(generator.decoder(clf.encode(tokens)[-1]), logits, atol=1e-6)


def test_padding_does_not_change_a_window_s_logits():
    torch.manual_seed(1)
    clf = Classifier(40, TINY, classes=4).eval()
    short = [5, 6, 7]
    tokens, lengths = pad_batch([short, list(range(1, 11))])
    with torch.no_grad():
        alone = clf(*pad_batch([short]))
        batched = clf(tokens, lengths)
    assert torch.allclose(alone[0], batched[0], atol=1e-6)
    assert batched.shape == (2, 4)


def test_training_mode_learns_a_separable_toy_task():
    torch.manual_seed(2)
    clf = Classifier(20, TINY, classes=2)
    opt = torch.optim.Adam(clf.parameters(), lr=0.01)
    data = [([1, 2, 3, 1, 2, 3], 0), ([7, 8, 9, 7, 8, 9], 1)] * 8
    tokens, lengths = pad_batch([d for d, _ in data])
    labels = torch.tensor([y for _, y in data])
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(clf(tokens, lengths), labels)
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        assert (clf(tokens, lengths).argmax(-1) == labels).all()


def test_a_piece_is_the_mean_of_its_windows():
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]))
    probs = piece_probabilities(logits, torch.tensor([0, 0, 2]), count=3)
    assert torch.allclose(probs[0], torch.tensor([0.7, 0.3]))
    assert torch.allclose(probs[1], torch.tensor([0.5, 0.5]))  # no window: uniform
    assert torch.allclose(probs[2], torch.tensor([0.2, 0.8]))


def test_the_split_never_shares_a_piece_and_every_big_label_is_in_every_split():
    items = [(f"{c}/piece{i}.mid", c) for c, n in (("Bach", 20), ("Chopin", 12), ("Ravel", 3), ("Lone", 1))
             for i in range(n)]
    split = split_pieces(items)
    assert set(split) == {k for k, _ in items}  # each piece exactly once
    sides = {(label, split[key]) for key, label in items}
    for label in ("Bach", "Chopin"):
        assert {s for lab, s in sides if lab == label} == {"train", "valid", "test"}
    assert Counter(split[k] for k, lab in items if lab == "Ravel") == {"test": 1, "train": 2}
    assert split["Lone/piece0.mid"] == "train"
    assert split == split_pieces(list(reversed(items)))  # stable: order and runs do not matter
    with pytest.raises(ValueError, match="twice"):
        split_pieces([("a.mid", "x"), ("a.mid", "y")])


@pytest.mark.parametrize(("length", "size", "stride"), [(0, 4, 2), (3, 4, 2), (4, 4, 2), (10, 4, 3), (11, 4, 4)])
def test_windows_cover_the_sequence(length, size, stride):
    spans = windows(length, size, stride)
    covered = set()
    for start, end in spans:
        assert 0 <= start < end <= length and end - start == min(size, length)
        covered.update(range(start, end))
    assert covered == set(range(length))
    if length > size:
        assert spans[-1][1] == length


def test_transposed_versions_are_the_piece_then_each_key_with_notes_off_the_keyboard_dropped_whole():
    vocab = Vocabulary(["wait1", "wait2", "p0", "p1", "p2", "endp0", "endp1", "endp2", "<unk>"], CodecConfig())
    ids = vocab.ids(["p0", "p2", "wait1", "endp0", "endp2", "wait2", "p1", "endp1"], "piece")
    versions = [vocab.text(v) for v in transposed_versions(ids, vocab, 2)]
    assert versions[0] == vocab.text(ids)
    assert versions[1:] == [["p0", "wait1", "endp0", "wait2"], ["p1", "wait1", "endp1", "wait2", "p0", "endp0"],
                            ["p1", "wait1", "endp1", "wait2", "p2", "endp2"], ["p2", "wait1", "endp2", "wait2"]]


def test_an_all_layer_standardised_head_saves_and_loads(tmp_path):
    from clara_live.codec import make_codec
    from clara_live.config import CodecConfig
    from clara_live.judge.store import LoadedJudge, load_judge, save_judge

    torch.manual_seed(3)
    vocabulary = make_codec(CodecConfig()).vocabulary()
    clf = Classifier(len(vocabulary), TINY, classes=3, head_hidden=0, pool_layers="all", norm="standard")
    clf.head[0].fit(torch.randn(50, clf.features) * 3 + 1)
    save_judge(tmp_path, LoadedJudge(clf, "composer", ["a", "b", "c"], CodecConfig(), vocabulary, 16, 8, {}))
    loaded = load_judge(tmp_path, kind="composer").model
    assert (loaded.pool_layers, loaded.norm, loaded.head_hidden) == ("all", "standard", 0)
    tokens, lengths = pad_batch([[5, 6, 7, 8], [9, 10]])
    with torch.no_grad():
        assert torch.allclose(loaded(tokens, lengths), clf.eval()(tokens, lengths), atol=1e-6)
