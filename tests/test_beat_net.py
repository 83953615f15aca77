"""The learned beat tracker's frames, numpy forward pass and weights file (clara_live.beat.net)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clara_live.beat import net as beat_net
from clara_live.errors import InputError
from training.beat_tracker import TCN

FPS = beat_net.FPS


def test_frames_count_onsets_velocities_and_bands():
    # a chord of three at 1.0 s (bass, middle, treble), one soft treble note at 1.5 s
    x = beat_net.frames([1.0, 1.0, 1.0, 1.5], [127, 127, 127, 32], [40, 60, 80, 90], start=0.0, length=100)
    assert x.shape == (100, beat_net.FEATURES) and x.dtype == np.float32
    chord, note = x[FPS], x[int(1.5 * FPS)]
    assert chord[0] == pytest.approx(math.log1p(3))
    assert chord[1] == pytest.approx(3.0)
    assert chord[2:5].tolist() == pytest.approx([math.log(2)] * 3)  # one in each band
    assert chord[5] == pytest.approx((40 - 21) / 87)  # the lowest pitch struck
    assert chord[6] == 1.0 and note[6] == 0.0  # the bass note is the lowest within half a second
    assert note[1] == pytest.approx(32 / 127) and note[2:5].tolist() == pytest.approx([0, 0, math.log(2)])
    assert np.count_nonzero(x.sum(axis=1)) == 2  # nothing anywhere else


def test_frames_round_to_the_nearest_frame_and_drop_what_is_outside():
    x = beat_net.frames([0.009, 0.011, -1.0, 3.0, math.nan], start=0.0, length=50)  # 50 frames: 1 s
    assert x[0, 0] == pytest.approx(math.log(2)) and x[1, 0] == pytest.approx(math.log(2))
    assert x[:, 0].sum() == pytest.approx(2 * math.log(2))
    assert x[0, 5] == pytest.approx((60 - 21) / 87)  # no pitches: middle C


def test_frames_start_at_the_first_onset_by_default():
    x = beat_net.frames([2.0, 2.5])
    assert x.shape == (int(0.5 * FPS) + 1, beat_net.FEATURES)
    assert x[0, 0] > 0 and x[-1, 0] > 0


def test_frames_refuse_lists_of_different_lengths():
    with pytest.raises(InputError, match="2 onsets, 1 velocities"):
        beat_net.frames([1.0, 2.0], [64])


def test_widen_marks_beats_and_their_neighbours():
    y = beat_net.widen([0.1, 0.5], 40, start=0.0)
    assert y[4:7].tolist() == [0.5, 1.0, 0.5] and y[24:27].tolist() == [0.5, 1.0, 0.5]
    assert y.sum() == pytest.approx(4.0)


def test_the_numpy_forward_equals_the_torch_model():
    torch.manual_seed(0)
    model = TCN(channels=8, blocks=4).eval()
    x = np.random.default_rng(0).normal(size=(300, beat_net.FEATURES)).astype(np.float32)
    with torch.no_grad():
        beat_logits, tempo_logits = model(torch.from_numpy(x)[None])
    got, tempo = beat_net.forward(beat_net.check(model.numpy_weights()), x)
    assert got.shape == (300, 2)
    np.testing.assert_allclose(got, torch.sigmoid(beat_logits)[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tempo, torch.softmax(tempo_logits, dim=1)[0].numpy(), atol=1e-5)


def test_the_shipped_weights_load_and_run():
    weights = beat_net.load()
    activation, tempo = beat_net.forward(weights, beat_net.frames(np.arange(20) * 0.5))
    assert activation.shape[1] == 2 and np.all((activation >= 0) & (activation <= 1))
    assert tempo is not None and tempo.sum() == pytest.approx(1.0, abs=1e-5)
    assert tempo.shape == weights["tempo.bpm"].shape


def test_loading_refuses_a_file_that_is_not_weights(tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="weights.npz: not a readable") as caught:
        beat_net.load(bad)
    assert "\n" not in str(caught.value)


def test_loading_never_unpickles(tmp_path):
    bad = tmp_path / "pickled.npz"
    np.savez(bad, blocks=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="pickled.npz") as caught:
        beat_net.load(bad)
    assert "\n" not in str(caught.value)


def test_loading_refuses_missing_or_misshapen_arrays(tmp_path):
    weights = TCN(channels=8, blocks=2).numpy_weights()
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in weights.items() if k != "block1.mix.bias"})
    with pytest.raises(InputError, match=r"missing.npz: no array 'block1.mix.bias'"):
        beat_net.load(missing)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**weights, "in.weight": np.zeros((8, 3), dtype=np.float32)})
    with pytest.raises(InputError, match=r"wrong.npz: in.weight has shape \(8, 3\)"):
        beat_net.load(wrong)
    nan = tmp_path / "nan.npz"
    np.savez(nan, **{**weights, "out.bias": np.full(2, np.nan, dtype=np.float32)})
    with pytest.raises(InputError, match="nan.npz: out.bias holds non-finite"):
        beat_net.load(nan)
