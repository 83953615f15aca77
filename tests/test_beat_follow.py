"""The beat followed while the player plays (clara_live.beat.follow): a grid corrected at each
onset, following a tempo that drifts, deaf to ornaments, never dragged far by wrong notes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clara_live.beat.follow import MAX_CHANGE, BeatFollower
from clara_live.beat.tracker import TempoEstimate


def ramp(bpm_from: float, bpm_to: float, seconds: float, halves: bool = True, jitter: float = 0.0075,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(beats, onsets) of a tempo moving linearly from bpm_from to bpm_to: a note on every beat
    and, with halves, every half beat, each jittered."""
    rng = np.random.default_rng(seed)
    beats, t = [0.0], 0.0
    while t < seconds:
        t += 60.0 / (bpm_from + (bpm_to - bpm_from) * t / seconds)
        beats.append(t)
    b = np.array(beats)
    onsets = np.sort(np.concatenate([b, (b[:-1] + b[1:]) / 2])) if halves else b
    return b, onsets + rng.normal(0.0, jitter, len(onsets))


def test_a_steady_player_leaves_the_grid_where_it_was():
    follower = BeatFollower()
    follower.seed(TempoEstimate(100.0, 0.0, 1.0))
    beats, onsets = ramp(100.0, 100.0, 20.0)
    for t in onsets:
        follower.onset(t)
    assert follower.bpm == pytest.approx(100.0, rel=0.01)
    assert abs(follower.next_beat(beats[-3] - 0.1) - beats[-3]) < 0.02


@pytest.mark.parametrize("end_bpm", [85.0, 115.0])
def test_a_drifting_tempo_is_followed(end_bpm):
    follower = BeatFollower()
    follower.seed(TempoEstimate(100.0, 0.0, 1.0))
    beats, onsets = ramp(100.0, end_bpm, 30.0)
    for t in onsets[onsets < beats[-2] - 0.2]:
        follower.onset(t)
    assert follower.bpm == pytest.approx(60.0 / (beats[-1] - beats[-2]), rel=0.02)
    # the next beat is predicted within 20 ms; a grid that does not follow is far off by now
    assert abs(follower.next_beat(beats[-2] - 0.2) - beats[-2]) < 0.02
    frozen = BeatFollower(alpha=0.0, beta=0.0)
    frozen.seed(TempoEstimate(100.0, 0.0, 1.0))
    assert abs(frozen.next_beat(beats[-2] - 0.2) - beats[-2]) > 0.06


def test_ornaments_and_syncopations_change_nothing():
    follower = BeatFollower()
    follower.seed(TempoEstimate(120.0, 0.0, 1.0))
    before = follower.grid
    assert follower.onset(0.5 * 0.3) is None  # 0.3 of a beat: neither a beat nor a half beat
    assert follower.onset(0.5 * 1.72) is None
    assert follower.grid == before


def test_the_notes_of_a_chord_count_once():
    follower = BeatFollower()
    follower.seed(TempoEstimate(120.0, 0.0, 1.0))
    assert follower.onset(1.01) is not None
    assert follower.onset(1.02) is None and follower.onset(1.04) is None
    assert follower.corrections == 1


def test_a_player_far_off_the_grid_never_drags_the_period_beyond_its_bound():
    follower = BeatFollower()
    follower.seed(TempoEstimate(100.0, 0.0, 1.0))
    for k in range(1, 200):
        follower.onset(k * 0.6 + 0.08)  # always late by 0.13 of a beat
    assert 60.0 / follower.bpm <= 0.6 * (1 + MAX_CHANGE) + 1e-9


def test_unseeded_it_hears_nothing_and_bad_times_are_ignored():
    follower = BeatFollower()
    assert follower.onset(1.0) is None and follower.next_beat(1.0) is None and follower.bpm is None
    follower.seed(TempoEstimate(90.0, 2.0, 0.7))
    assert follower.onset(math.nan) is None and follower.onset(math.inf) is None
    assert follower.bpm == pytest.approx(90.0)
    assert follower.next_beat(2.0) == pytest.approx(2.0)


def melody(bpm: float, beats: int = 40, seed: int = 0) -> list[float]:
    """A syncopated melody: a cell a beat (a quarter, eighths, a dotted figure, a triplet, sixteenths,
    an off-beat eighth), ~8 ms of jitter."""
    rng = np.random.default_rng(seed)
    cells = ((0.0,), (0.0, 0.5), (0.0, 0.75), (0.0, 2 / 3), (0.0, 0.25, 0.5, 0.75), (0.5,), (0.0,), (0.0, 0.5))
    period = 60.0 / bpm
    return [(b + c) * period + float(rng.normal(0.0, 0.008)) for b in range(beats)
            for c in cells[int(rng.integers(len(cells)))]]


def locked_share(bpm: float, seeded_at: float, seeds: int = 10) -> float:
    shares = []
    for seed in range(seeds):
        onsets = melody(bpm, seed=seed)
        follower = BeatFollower()
        follower.pin(onsets[0], seeded_at)
        locked = []
        for t in onsets[1:]:
            follower.onset(t)
            locked.append(follower.locked)
        shares.append(np.mean(locked[5:]))
    return float(np.mean(shares))


def test_it_is_locked_on_the_player_s_beat_and_seldom_on_a_wrong_one():
    # what lets the metronome and clock out follow it (live/tempo.py's beat_grid)
    assert locked_share(100.0, 100.0) > 0.85
    for bpm in (84.0, 120.0, 150.0, 67.0):  # 5/6, 6/5, 3/2 and 2/3 of the grid's
        assert locked_share(bpm, 100.0) < 0.3


def test_pinned_on_a_phrase_s_first_note_its_chord_is_no_correction():
    follower = BeatFollower()
    follower.pin(5.0, 120.0)
    assert follower.onset(5.01) is None and follower.corrections == 0 and not follower.locked
    assert follower.next_beat(5.2) == pytest.approx(5.5)
    for k in range(1, 4):
        assert follower.onset(5.0 + 0.5 * k + 0.004) is not None
    assert follower.locked
