"""Model folders: save and load, and clear refusals of anything else."""

from __future__ import annotations

import json
import pickle

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
