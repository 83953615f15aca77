"""`clara judge train-composer` and `clara judge composer` end to end on a tiny corpus: the judge
folder is written and loads, the split never shares a piece, the JSON is well formed, and a bad
file gets one line while the others are still judged."""

from __future__ import annotations

import json
import shutil

import pytest

from clara_live.cli import main
from clara_live.judge.store import load_judge
from clara_live.model import ModelError

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

COMPOSERS = ("Bach", "Chopin", "Mozart")


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory, shared):
    corpus = tmp_path_factory.mktemp("corpus")
    for composer in COMPOSERS:
        (corpus / composer).mkdir()
        for source in sorted((shared / "corpus" / "piano-midi-de" / composer).glob("*.mid"))[:3]:
            shutil.copy(source, corpus / composer / source.name)
    out = tmp_path_factory.mktemp("judge") / "composer"
    code = main(["judge", "train-composer", "--corpus", str(corpus), "--out", str(out), "--head-epochs", "3",
                 "--epochs", "1", "--window", "32", "--per-piece", "1", "--transpose", "1"])
    assert code == 0
    return corpus, out


def test_training_writes_a_judge_that_loads(tiny_judge):
    corpus, out = tiny_judge
    judge = load_judge(out, kind="composer")
    assert judge.classes == list(COMPOSERS) and judge.window == 32
    split = judge.info["split"]
    assert sorted(split) == sorted(f"{c}/{p.name}" for c in COMPOSERS for p in (corpus / c).glob("*.mid"))
    assert {s for s in split.values()} <= {"train", "valid", "test"}
    assert (out / "confusion.png").stat().st_size > 1000
    metrics = judge.info["metrics"]
    assert 0.0 <= metrics["top1"] <= metrics["top3"] <= 1.0
    assert len(metrics["head_loss"]) == 3 and len(metrics["train_loss"]) == 1  # both stages ran
    assert judge.model.pool_layers == "all" and judge.model.norm == "standard"
    assert judge.model.head[0].std.ne(1).any()  # the standardisation was fitted and saved
    with pytest.raises(ModelError, match="composer"):
        load_judge(out, kind="critic")


def test_composer_json_is_well_formed_and_a_bad_file_is_one_line(tiny_judge, tmp_path, capsys):
    corpus, out = tiny_judge
    good = sorted((corpus / "Bach").glob("*.mid"))[0]
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd nonsense")
    capsys.readouterr()
    code = main(["judge", "composer", str(good), str(bad), "--judge", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and "broken.mid" in errors[0]
    results = json.loads(captured.out)
    assert [r["file"] for r in results] == [str(good)]
    top = results[0]["top"]
    assert len(top) == 3 and {c for c, _ in top} == set(COMPOSERS)
    probabilities = [p for _, p in top]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-3)


def test_one_composer_is_refused_in_one_line(tmp_path, capsys, shared):
    (tmp_path / "Bach").mkdir()
    for source in sorted((shared / "corpus" / "piano-midi-de" / "Bach").glob("*.mid"))[:2]:
        shutil.copy(source, tmp_path / "Bach" / source.name)
    code = main(["judge", "train-composer", "--corpus", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "at least two composers" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_missing_judge_is_one_line(tmp_path, capsys, shared):
    code = main(["judge", "composer", str(next((shared / "midi" / "maestro").glob("*.mid"))),
                 "--judge", str(tmp_path / "nothing")])
    assert code == 1
    assert "no such judge folder" in capsys.readouterr().err


def test_a_judge_stored_in_half_precision_judges_alike(tiny_judge, tmp_path):
    import torch

    from clara_live.judge.predict import predict_pieces
    from clara_live.judge.store import save_judge

    corpus, out = tiny_judge
    full = load_judge(out)
    save_judge(tmp_path / "half", full, half=True)
    half = load_judge(tmp_path / "half")
    assert (tmp_path / "half" / "weights.pt").stat().st_size < 0.6 * (out / "weights.pt").stat().st_size
    assert half.classes == full.classes and half.info == full.info
    ids = [torch.arange(2, 120) % len(full.vocabulary)]
    a = predict_pieces(full.model, [i.numpy() for i in ids], full.window, full.stride)
    b = predict_pieces(half.model, [i.numpy() for i in ids], half.window, half.stride)
    assert torch.allclose(a, b, atol=2e-3)


def test_a_chamber_judge_reads_a_melody_track_as_v_as_continue_reads_a_prompt(tmp_path):
    """A judge built on a chamber model hears a file's parts in its families: a track named Melody (POP909's) is
    v over the piano, as the joint corpus wrote POP909 and as `clara continue` reads a prompt; a piano judge hears
    both as p."""
    import mido
    from conftest import build_midi

    from clara_live.codec import CodecConfig, make_codec
    from clara_live.codec.vocabulary import Vocabulary
    from clara_live.judge.pieces import encode_file

    def track(name: str, pitches: tuple[int, ...]) -> list[tuple[int, mido.Message]]:
        events = [(0, mido.MetaMessage("track_name", name=name))]
        for k, pitch in enumerate(pitches):
            events += [(k * 480, mido.Message("note_on", note=pitch, velocity=80)),
                       (k * 480 + 400, mido.Message("note_off", note=pitch))]
        return events

    song = build_midi(tmp_path / "song.mid", [track("MELODY", (72, 74, 76)), track("PIANO", (48, 52, 55))])
    for chamber, melody_family in ((True, "v"), (False, "p")):
        codec = CodecConfig(chamber=chamber)
        vocab = Vocabulary(make_codec(codec).vocabulary(), codec)
        struck = [t for t in vocab.text(encode_file(str(song), vocab)) if t[0] in "pv" and t[1:].isdigit()]
        low = codec.low_pitch
        assert [t for t in struck if int(t[1:]) + low >= 72] == [f"{melody_family}{p - low}" for p in (72, 74, 76)]
        assert [t for t in struck if int(t[1:]) + low < 60] == [f"p{p - low}" for p in (48, 52, 55)]
