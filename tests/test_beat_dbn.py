"""Beats decoded from a beat activation (clara_live.beat.dbn): synthetic activations."""

from __future__ import annotations

import numpy as np
import pytest

from clara_live.beat import dbn as beat_dbn
from clara_live.beat.net import FPS


def activation(beat_frames, length: int, floor: float = 0.02, peak: float = 0.9) -> np.ndarray:
    a = np.full(length, floor)
    a[np.asarray(beat_frames, dtype=int)] = peak
    return a


def test_steady_peaks_are_the_beats():
    a = activation(range(10, 500, 25), 500)  # 120 bpm at 50 frames a second
    beats = beat_dbn.track(a, prior_bpm=100.0)
    assert beats.tolist() == pytest.approx(np.arange(10, 500, 25) / FPS)


def test_the_beats_follow_a_tempo_that_slows():
    # intervals from 20 to 30 frames (150 down to 100 bpm): every peak is a beat
    frames = np.cumsum(np.r_[5, np.linspace(20, 30, 20).round()]).astype(int)
    beats = beat_dbn.track(activation(frames, int(frames[-1]) + 10), prior_bpm=100.0)
    assert beats.tolist() == pytest.approx(frames / FPS)


def test_a_flat_activation_between_peaks_adds_no_beats():
    beats = beat_dbn.track(activation(range(10, 500, 50), 500), prior_bpm=120.0)
    assert np.diff(beats).tolist() == pytest.approx([1.0] * (len(beats) - 1))  # 60 bpm, whatever the guess


def test_off_beat_peaks_above_the_threshold_are_beats():
    a = activation(range(10, 500, 50), 500)
    a[35:500:50] = 0.3  # off-beat notes the network half believes
    beats = beat_dbn.track(a, prior_bpm=100.0)
    assert np.diff(beats).tolist() == pytest.approx([0.5] * (len(beats) - 1))


def test_a_tempo_head_settles_an_ambiguous_level():
    a = activation(range(10, 500, 50), 500)
    a[35:500:50] = 0.3
    bpm = np.geomspace(20.0, 300.0, 48)
    slow = np.exp(-0.5 * (np.log2(bpm / 60.0) / 0.1) ** 2)
    beats = beat_dbn.track(a, prior_bpm=100.0, tempo=(bpm, slow / slow.sum()))
    assert np.diff(beats).tolist() == pytest.approx([1.0] * (len(beats) - 1))


def test_a_peak_between_frames_is_interpolated():
    a = np.full(200, 0.02)
    for f in range(20, 200, 30):
        a[f], a[f + 1] = 0.8, 0.8  # the peak halfway between two frames
    beats = beat_dbn.track(a, prior_bpm=100.0)
    assert beats.tolist() == pytest.approx((np.arange(20, 200, 30) + 0.5) / FPS)


def test_the_state_space_spans_the_tempo_range():
    space = beat_dbn.state_space()
    bpm = 60.0 * FPS / space.intervals
    assert bpm.max() == pytest.approx(300.0) and bpm.min() == pytest.approx(20.0)
    assert np.all(np.diff(space.intervals) > 0)


@pytest.mark.parametrize("length", [0, 1])
def test_too_short_an_activation_has_no_beats(length):
    assert beat_dbn.track(np.full(length, 0.5), prior_bpm=100.0).size == 0
