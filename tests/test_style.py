"""--style (issue 25): the style token opens the music Clara hears, in continue and live; a style
the model does not know means none, said in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clara_live.cli import main
from clara_live.codec import make_codec
from clara_live.config import CodecConfig, ModelConfig, SamplingConfig
from clara_live.model import AWDLSTM
from clara_live.model.store import save_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PROMPT = SHARED / "corpus" / "piano-midi-de" / "Chopin" / "chpn-p7.mid"



@pytest.fixture
def styled(tmp_path) -> Path:
    """A tiny model whose vocabulary holds two styles, the chopin row made to matter."""
    codec = CodecConfig()
    vocabulary = make_codec(codec).vocabulary() + ["style_chopin", "style_pop", "style_piano"]
    torch.manual_seed(0)
    model = AWDLSTM(len(vocabulary), ModelConfig(emb_size=16, hidden_size=32, num_layers=2, touch=False)).eval()
    with torch.no_grad():
        model.embed.weight[-3] *= 40  # style_chopin: a state far from any other token's
    save_model(tmp_path / "m", model, codec, vocabulary)
    return tmp_path / "m"


def _fed(model: Path, style: str) -> list[int]:
    """The ids `continue_piece` feeds the sampler before sampling, a style asked for."""
    from clara_live.config import InferenceConfig
    from clara_live.continuation import Request, continue_piece
    from clara_live.engine import build_engine
    from clara_live.model import load_model
    from clara_live.music.read import read_music
    from clara_live.sampling.sampler import Sampler

    loaded = load_model(model)
    sampling = SamplingConfig(style=style)
    sampler = Sampler(build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32")), loaded.vocabulary,
                      loaded.codec, sampling, seed=1)
    fed: list[int] = []
    feed_ids = sampler.feed_ids
    sampler.feed_ids = lambda ids, *rest: (fed.extend(ids), feed_ids(ids, *rest))[1]
    continue_piece(loaded, sampler, read_music(PROMPT), Request(seconds=2.0), sampling)
    return fed


def test_a_known_style_opens_the_prompt_and_an_unknown_one_is_none(styled, capsys, torch_settings_restored):
    from clara_live.model import load_model

    vocabulary = load_model(styled).vocabulary
    chopin = _fed(styled, "chopin")
    assert chopin[0] == vocabulary.index("style_chopin")
    assert vocabulary.index("style_chopin") not in chopin[1:] and vocabulary.index("style_pop") not in chopin
    plain, none, unknown = _fed(styled, ""), _fed(styled, "none"), _fed(styled, "bach")
    assert none == unknown == chopin[1:]  # the prompt as before, no style token
    assert plain == [vocabulary.index("style_piano"), *none]  # none asked for: the piano corpora's style
    out = styled.parent / "bach.mid"
    assert main(["continue", str(PROMPT), "--model", str(styled), "-o", str(out), "--seconds", "2",
                 "--style", "bach"]) == 0
    err = capsys.readouterr().err
    assert "'bach' is not a style this model knows" in err and "chopin, piano, pop" in err


def test_the_live_worker_opens_with_the_style(styled, torch_settings_restored):
    from clara_live.config import InferenceConfig
    from clara_live.engine import build_engine
    from clara_live.live.worker import Worker
    from clara_live.model import load_model
    from clara_live.sampling.sampler import Sampler

    loaded = load_model(styled)
    engine = build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32"))
    logits = {}
    for style in ("none", "chopin"):
        sampler = Sampler(engine, loaded.vocabulary, loaded.codec, SamplingConfig(style=style), seed=1)
        Worker(sampler, lambda *event: None)
        logits[style] = sampler.logits.clone()
    assert not torch.allclose(logits["none"], logits["chopin"])


def test_a_style_must_be_lower_case_letters():
    from clara_live.config import ConfigError

    with pytest.raises(ConfigError, match="sampling.style"):
        SamplingConfig(style="Chopin!")
