"""Judge folders: judge.json's every field checked before the judge is built, each refusal one line."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest
import torch

from clara_live.codec import make_codec
from clara_live.config import CodecConfig, ModelConfig
from clara_live.judge.classifier import Classifier
from clara_live.judge.store import LoadedJudge, load_judge, save_judge
from clara_live.model import ModelError

TINY = ModelConfig(emb_size=8, hidden_size=16, num_layers=2)


@pytest.fixture
def critic(tmp_path) -> Path:
    torch.manual_seed(0)
    vocabulary = make_codec(CodecConfig()).vocabulary()
    judge = Classifier(len(vocabulary), TINY, classes=2, head_hidden=4)
    save_judge(tmp_path / "critic", LoadedJudge(judge, "critic", ["generated", "human"], CodecConfig(), vocabulary,
                                                16, 8, {}))
    return tmp_path / "critic"


def spoil(folder: Path, **changes) -> None:
    meta = json.loads((folder / "judge.json").read_text())
    for key, value in changes.items():
        if value is KeyError:
            meta.pop(key)
        else:
            meta[key] = value
    (folder / "judge.json").write_text(json.dumps(meta))


def test_a_whole_judge_loads(critic):
    judge = load_judge(critic, kind="critic")
    assert (judge.window, judge.stride, judge.classes, judge.model.head_hidden) == (16, 8, ["generated", "human"], 4)


BAD = [
    ("window", -1), ("window", 0), ("window", 2.5), ("window", 16.0), ("window", True), ("window", "16"),
    ("window", None), ("window", 10**30), ("window", KeyError),
    ("stride", -1), ("stride", 0), ("stride", 1.5), ("stride", False), ("stride", 10**12), ("stride", KeyError),
    ("head_hidden", -1), ("head_hidden", 10**9), ("head_hidden", 4.0), ("head_hidden", True), ("head_hidden", KeyError),
    ("classes", []), ("classes", ["human"]), ("classes", ["human", "human"]), ("classes", ["generated", ""]),
    ("classes", ["generated", 3]), ("classes", "generated human"), ("classes", {"a": 1}), ("classes", KeyError),
    ("classes", ["generated", "machine"]),  # a critic is asked for P(human)
    ("pool_layers", "first"), ("pool_layers", 1), ("norm", "batch"), ("norm", None),
    ("info", [1, 2]), ("info", "x"),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}"[:40] for k, v in BAD])
def test_every_field_of_judge_json_is_checked_in_one_line(critic, key, value):
    spoil(critic, **{key: value})
    with pytest.raises(ModelError) as info:
        load_judge(critic, kind="critic")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{critic / 'judge.json'}: ") and key in message, message


@pytest.mark.parametrize(("key", "value"), [("window", 1), ("stride", 1), ("window", 2**20), ("stride", 2**20),
                                            ("head_hidden", 0)])
def test_the_edges_of_each_range_are_accepted(critic, key, value):
    if key == "head_hidden":  # a head without its hidden layer has other weights: save one
        vocabulary = make_codec(CodecConfig()).vocabulary()
        judge = Classifier(len(vocabulary), TINY, classes=2, head_hidden=0)
        save_judge(critic, LoadedJudge(judge, "critic", ["generated", "human"], CodecConfig(), vocabulary, 16, 8, {}))
    spoil(critic, **{key: value})
    judge = load_judge(critic, kind="critic")
    assert (judge.model.head_hidden if key == "head_hidden" else getattr(judge, key)) == value


def test_judge_critic_with_a_negative_window_is_one_line(critic, tmp_path, capsys):
    """It was a ValueError traceback from the windows, after the judge had loaded."""
    from clara_live.cli import main

    spoil(critic, window=-1)
    midi = tmp_path / "in.mid"
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=64, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=480)])
    mido.MidiFile(tracks=[track]).save(midi)
    assert main(["judge", "critic", str(midi), "--judge", str(critic)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "judge.json" in err and "window" in err
