"""Model folders: save and load, and clear refusals of anything else."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from clara_live.config import CodecConfig, ModelConfig
from clara_live.model import AWDLSTM, ModelError, load_model, save_model

SMALL = ModelConfig(emb_size=8, hidden_size=16, num_layers=2)
VOCAB = [f"t{i}" for i in range(20)]


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
