"""Model folders: save and load, and clear refusals of anything else."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import mido
import pytest
import torch

from clara_live.codec import make_codec
from clara_live.config import CodecConfig, ModelConfig
from clara_live.model import AWDLSTM, ModelError, load_model, save_model

SMALL = ModelConfig(emb_size=8, hidden_size=16, num_layers=2)
VOCAB = make_codec(CodecConfig(sample_freq=4)).vocabulary()


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    model = AWDLSTM(len(VOCAB), SMALL)
    save_model(tmp_path / "m", model, CodecConfig(sample_freq=4), VOCAB, {"note": "test"})
    return tmp_path / "m", model


def test_round_trip(folder):
    path, model = folder
    loaded = load_model(path)
    assert loaded.vocabulary == VOCAB and loaded.codec.sample_freq == 4 and loaded.info == {"note": "test"}
    assert not loaded.model.training
    tokens = torch.randint(0, 20, (1, 5))
    model.eval()
    torch.testing.assert_close(loaded.model(tokens, loaded.model.init_hidden(1))[0],
                               model(tokens, model.init_hidden(1))[0])


def test_missing_folder_and_files(tmp_path, folder):
    with pytest.raises(ModelError, match="no such model folder"):
        load_model(tmp_path / "nowhere")
    path, _ = folder
    (path / "weights.pt").unlink()
    with pytest.raises(ModelError, match="weights.pt: missing"):
        load_model(path)


def test_corrupt_weights_are_refused(folder):
    path, _ = folder
    (path / "weights.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="not a readable weights file"):
        load_model(path)


class Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_pickle_with_code_is_never_run(folder, tmp_path, monkeypatch):
    path, _ = folder
    monkeypatch.chdir(tmp_path)
    with open(path / "weights.pt", "wb") as handle:
        pickle.dump({"embed.weight": Evil()}, handle)
    with pytest.raises(ModelError, match="not a readable weights file"):
        load_model(path)
    assert not (tmp_path / "PWNED").exists()


def test_weights_that_do_not_fit_the_config(folder):
    path, _ = folder
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["hidden_size"] = 32
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="weights do not fit config.json"):
        load_model(path)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="other"), "not a Clara model config"),
    (lambda m: m.update(version=99), "format version 99"),
    (lambda m: m["model"].update(layers=3), "model.layers: unknown key"),
    (lambda m: m.update(vocabulary=["a", "a"]), "distinct strings"),
])
def test_foreign_configs_are_refused(folder, change, message):
    path, _ = folder
    meta = json.loads((path / "config.json").read_text())
    change(meta)
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_half_weights_load_as_float32_and_predict_alike(folder, tmp_path):
    from training.half_weights import half_weights

    path, _ = folder
    half_weights(path, tmp_path / "half")
    stored = torch.load(tmp_path / "half" / "weights.pt", weights_only=True)
    assert {v.dtype for v in stored.values()} == {torch.float16}
    assert stored["decoder.weight"].data_ptr() == stored["embed.weight"].data_ptr()  # stored once
    original, halved = load_model(path).model, load_model(tmp_path / "half").model
    assert all(p.dtype == torch.float32 for p in halved.parameters())
    assert halved.decoder.weight is halved.embed.weight  # still tied after loading
    tokens = torch.randint(0, original.vocab_size, (2, 30))
    a, _ = original(tokens, original.init_hidden(2))
    b, _ = halved(tokens, halved.init_hidden(2))
    assert torch.allclose(a, b, atol=1e-2) and not torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_weights_that_are_not_floating_point_are_refused(folder, dtype):
    """Weights cast to int8 load (load_state_dict casts them back) and predict nothing: refused, naming
    the file and the tensor."""
    path, _ = folder
    state = torch.load(path / "weights.pt", weights_only=True)
    state["layers.0.lstm.weight_ih_l0"] = state["layers.0.lstm.weight_ih_l0"].to(dtype)
    torch.save(state, path / "weights.pt")
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "weights.pt" in message and "layers.0.lstm.weight_ih_l0" in message
    assert str(dtype).removeprefix("torch.") in message


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_floating_point_weights_of_any_width_load_as_float32(folder, dtype):
    path, model = folder
    state = torch.load(path / "weights.pt", weights_only=True)
    torch.save({k: v.to(dtype) for k, v in state.items()}, path / "weights.pt")
    loaded = load_model(path).model
    assert {p.dtype for p in loaded.state_dict().values()} == {torch.float32}
    for name, tensor in model.state_dict().items():  # the values stored, not a fresh model's
        torch.testing.assert_close(loaded.state_dict()[name], tensor.to(dtype).float(), rtol=0, atol=0)


@pytest.mark.parametrize("key", ["emb_size", "hidden_size", "num_layers"])
@pytest.mark.parametrize("value", [0, -1, 1_000_000_000, 10**30, 2.5, 512.0, True, "512", None])
def test_every_size_in_config_json_is_checked_before_anything_is_built(folder, key, value):
    """A size of 10**9 overflowed torch's storage size even on the meta device (a RuntimeError
    traceback); each bad size is one line naming the file and the key."""
    path, _ = folder
    meta = json.loads((path / "config.json").read_text())
    meta["model"][key] = value
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "config.json" in message and f"model.{key}" in message


def test_the_largest_sizes_allowed_are_refused_by_their_shapes_before_allocating(folder):
    path, _ = folder
    meta = json.loads((path / "config.json").read_text())
    meta["model"].update(emb_size=16384, hidden_size=16384, num_layers=16)  # ~140 GB of float32
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="weights do not fit config.json"):
        load_model(path)


def test_a_vocabulary_past_the_maximum_is_refused_before_it_is_read(folder):
    from clara_live.model.store import MAX_VOCABULARY

    path, _ = folder
    meta = json.loads((path / "config.json").read_text())
    meta["vocabulary"] = [f"t{i}" for i in range(MAX_VOCABULARY + 1)]
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="vocabulary of 1,048,577 tokens, more than the 1,048,576 allowed"):
        load_model(path)


@pytest.mark.parametrize("spoil", ["int8", "hidden_size"])
@pytest.mark.parametrize("command", ["continue", "evaluate"])
def test_a_corrupt_model_is_one_line_in_the_commands_that_load_it(folder, tmp_path, capsys, spoil, command):
    """Weights cast to int8 were accepted (0 % accuracy); a hidden_size of 10**9 was a RuntimeError traceback."""
    from clara_live.cli import main

    path, _ = folder
    if spoil == "int8":
        state = torch.load(path / "weights.pt", weights_only=True)
        torch.save({k: (v * 100).to(torch.int8) for k, v in state.items()}, path / "weights.pt")
    else:
        meta = json.loads((path / "config.json").read_text())
        meta["model"]["hidden_size"] = 1_000_000_000
        (path / "config.json").write_text(json.dumps(meta))
    midi = tmp_path / "in.mid"
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=64, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=480)])
    mido.MidiFile(tracks=[track]).save(midi)
    if command == "continue":
        args = ["continue", str(midi), "-o", str(tmp_path / "x.mid"), "--tokens", "4", "--model", str(path)]
    else:
        args = ["evaluate", "--model", str(path), str(midi)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ("weights.pt" if spoil == "int8" else "config.json: model.hidden_size") in err
    assert not (tmp_path / "x.mid").exists()


def test_the_shipped_models_and_judges_pass_the_checks():
    from clara_live.judge.store import load_judge

    shipped = Path(__file__).resolve().parents[1] / "trained_models"
    for name in ("clara-notewise", "clara-chordwise"):
        load_model(shipped / name)
    for name in ("composer", "critic"):
        load_judge(shipped / name, kind=name)
