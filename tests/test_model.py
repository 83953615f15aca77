"""AWD-LSTM: explicit hidden state, the regularisers, weight drop written for our torch."""

from __future__ import annotations

import torch

from clara_live.config import ModelConfig
from clara_live.engine import Engine
from clara_live.model import AWDLSTM, detach
from clara_live.model.awd_lstm import Dropouts
from clara_live.model.embedding_dropout import embedding_dropout
from clara_live.model.locked_dropout import LockedDropout
from clara_live.model.weight_drop import WeightDropLSTM

SMALL = ModelConfig(emb_size=8, hidden_size=16, num_layers=3)


def test_forward_shapes_and_explicit_hidden():
    torch.manual_seed(0)
    model = AWDLSTM(30, SMALL).eval()
    tokens = torch.randint(0, 30, (2, 7))
    hidden = model.init_hidden(2)
    assert [h.shape for h, _ in hidden] == [(1, 2, 16), (1, 2, 16), (1, 2, 8)]
    logits, new_hidden = model(tokens, hidden)
    assert logits.shape == (2, 7, 30)
    # the state is handed back, not kept: feeding in two halves equals feeding at once
    first, mid = model(tokens[:, :3], hidden)
    second, end = model(tokens[:, 3:], mid)
    torch.testing.assert_close(torch.cat([first, second], dim=1), logits)
    torch.testing.assert_close(end[-1][0], new_hidden[-1][0])
    assert all(not h.requires_grad for h, _ in detach(new_hidden))


def test_decoder_is_tied_to_embedding():
    model = AWDLSTM(30, SMALL)
    assert model.decoder.weight is model.embed.weight
    untied = AWDLSTM(30, ModelConfig(emb_size=8, hidden_size=16, num_layers=2, tie_weights=False))
    assert untied.decoder.weight is not untied.embed.weight and untied.decoder.in_features == 16


def test_weight_drop_masks_recurrent_weights_only_in_training():
    torch.manual_seed(0)
    layer = WeightDropLSTM(4, 6, weight_drop=0.5)
    x = torch.randn(3, 5, 4)
    state = (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))
    layer.eval()
    plain, _ = layer.lstm(x, state)
    evaluated, _ = layer(x, state)
    torch.testing.assert_close(evaluated, plain)  # evaluation: no mask
    layer.train()
    a, _ = layer(x, state)
    b, _ = layer(x, state)
    assert not torch.allclose(a, plain) and not torch.allclose(a, b)  # a fresh mask each forward
    # the mask touches only the recurrent weights: with zero state the first step cannot differ
    torch.testing.assert_close(a[:, 0], plain[:, 0])


def test_weight_drop_gradients_reach_the_raw_weights():
    torch.manual_seed(0)
    layer = WeightDropLSTM(4, 6, weight_drop=0.5).train()
    out, _ = layer(torch.randn(2, 5, 4), (torch.zeros(1, 2, 6), torch.zeros(1, 2, 6)))
    out.sum().backward()
    grad = layer.lstm.weight_hh_l0.grad
    assert grad is not None and grad.abs().sum() > 0
    # dropped entries get no gradient: about half the entries are exactly zero
    zero_fraction = (grad == 0).float().mean().item()
    assert 0.3 < zero_fraction < 0.7
    assert layer.lstm.weight_ih_l0.grad.abs().sum() > 0


def test_locked_dropout_shares_the_mask_over_time():
    torch.manual_seed(0)
    drop = LockedDropout().train()
    out = drop(torch.ones(4, 9, 5), 0.5)
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    drop.eval()
    assert torch.equal(drop(torch.ones(4, 9, 5), 0.5), torch.ones(4, 9, 5))


def test_embedding_dropout_drops_whole_tokens():
    torch.manual_seed(1)
    embed = torch.nn.Embedding(10, 6).train()
    tokens = torch.tensor([[3, 3, 3, 4, 4, 4]] * 8)
    out = embedding_dropout(embed, tokens, 0.5)
    # every occurrence of a token is dropped together, within a batch
    for t in (3, 4):
        rows = out[tokens == t]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    embed.eval()
    torch.testing.assert_close(embedding_dropout(embed, tokens, 0.5), embed(tokens))


def test_activations_for_ar_and_tar():
    model = AWDLSTM(30, SMALL).train()
    logits, _, acts = model(torch.randint(0, 30, (2, 6)), model.init_hidden(2), activations=True)
    assert acts.raw.shape == acts.dropped.shape == (2, 6, 8)
    (logits.sum() + acts.raw.pow(2).mean()).backward()
    assert model.layers[-1].lstm.weight_hh_l0.grad is not None


def test_encode_gives_every_layer_and_the_last_is_the_decoders_input():
    torch.manual_seed(0)
    model = AWDLSTM(30, SMALL).eval()
    tokens = torch.randint(0, 30, (2, 6))
    logits, hidden = model(tokens, model.init_hidden(2))
    layers, all_hidden = model.encode(tokens, model.init_hidden(2))
    assert [out.shape for out in layers] == [(2, 6, 16), (2, 6, 16), (2, 6, 8)]
    assert torch.equal(all_hidden[-1][0], hidden[-1][0])
    assert torch.equal(model.decoder(layers[-1]), logits)
    # each layer's output is its last hidden state at the last step
    assert all(torch.equal(out[:, -1], h[0]) for out, (h, _) in zip(layers, all_hidden, strict=True))


def test_encode_in_training_is_the_raw_activations_and_draws_the_same_masks():
    model = AWDLSTM(30, SMALL).train()
    tokens = torch.randint(0, 30, (2, 6))
    torch.manual_seed(1)
    _, _, acts = model(tokens, model.init_hidden(2), activations=True)
    torch.manual_seed(1)
    layers, _ = model.encode(tokens, model.init_hidden(2))
    assert torch.equal(layers[-1], acts.raw)


def test_a_dropout_override_replaces_the_configs_for_one_call():
    model = AWDLSTM(30, ModelConfig(emb_size=8, hidden_size=16, num_layers=3, weight_drop=0.0)).train()
    tokens = torch.randint(0, 30, (2, 6))
    expected, _ = model.eval().encode(tokens, model.init_hidden(2))
    model.train()
    none = Dropouts(emb=0.0, input=0.0, hidden=0.0, output=0.0)
    state = torch.get_rng_state()
    layers, _ = model.encode(tokens, model.init_hidden(2), none)
    assert torch.equal(layers[-1], expected[-1]) and torch.equal(torch.get_rng_state(), state)  # nothing drawn
    dropped, _ = model.encode(tokens, model.init_hidden(2))
    assert not torch.equal(dropped[-1], expected[-1])


def test_the_engine_agrees_with_the_model_exactly():
    torch.manual_seed(0)
    model = AWDLSTM(30, SMALL).eval()
    engine = Engine(model)  # fp32, no quantisation and no change to torch's process settings
    tokens = torch.randint(0, 30, (2, 9))
    logits, hidden, last = engine(tokens, engine.init_hidden(2), outputs=True)
    with torch.no_grad():
        expected, _ = model(tokens, model.init_hidden(2))
        layers, expected_hidden = model.encode(tokens, model.init_hidden(2))
    assert torch.equal(logits, expected) and torch.equal(last, layers[-1])
    assert all(torch.equal(a, b) for got, want in zip(hidden, expected_hidden, strict=True)
               for a, b in zip(got, want, strict=True))
    assert engine.output_size == 8
