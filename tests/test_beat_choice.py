"""The tempo chosen among both estimators' candidates (clara_live.beat.choice): what a jamming
player needs of it, bad input, and the shipped weights' file checked as a model's is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clara_live.beat import choice as beat_choice
from clara_live.beat.choice import FEATURES, check, estimate_tempo_chosen
from clara_live.errors import InputError
from training import tempo_data


def steady(bpm: float, cells: list[tuple[float, ...]], seed: int = 0, jitter: float = 0.0075) -> list[float]:
    rng = np.random.default_rng(seed)
    period = 60.0 / bpm
    return [10.0 + (beat + c) * period + float(rng.normal(0.0, jitter))
            for beat, cell in enumerate(cells) for c in cell]


@pytest.mark.parametrize("bpm", [60.0, 84.0, 120.0, 150.0])
def test_a_steady_dotted_phrase_is_heard_at_its_tempo_exactly(bpm):
    cells = [(0.0,), (0.0, 0.75), (0.0, 0.5), (0.0,), (0.0, 0.75), (0.0, 0.5), (0.0,), (0.0,)] * 2
    onsets = steady(bpm, cells)
    estimate = estimate_tempo_chosen(onsets, [84] * len(onsets), prior_bpm=100.0)
    assert estimate is not None
    assert estimate.bpm == pytest.approx(bpm, rel=0.01)
    k = (estimate.beat_time - 10.0) / estimate.period
    assert abs(k - round(k)) < 0.05  # on the phrase's beats


def test_a_second_phrase_keeps_the_tempo_heard_before():
    # even eighths at 90 bpm fit 90 and 180 alike; heard before at 90, the second phrase stays there
    onsets = steady(90.0, [(0.0, 0.5)] * 12, seed=3)
    estimate = estimate_tempo_chosen(onsets, None, prior_bpm=90.5, informed=True)
    assert estimate is not None and estimate.bpm == pytest.approx(90.0, rel=0.01)


@pytest.mark.parametrize("onsets", [
    [1.0],  # one note
    [1.0, 1.0, 1.0, 1.0, 1.0],  # every note at one onset
    [1.0, 1.01, 1.02, 3.0, 3.01, 3.02],  # two chords
    [],
])
def test_too_little_evidence_gives_no_estimate(onsets):
    assert estimate_tempo_chosen(onsets, None, prior_bpm=100.0) is None


@pytest.mark.parametrize("bpm", [20.0, 400.0])
def test_pulses_out_of_range_stay_in_range(bpm):
    onsets = [k * 60.0 / bpm for k in range(12)]
    estimate = estimate_tempo_chosen(onsets, None, prior_bpm=100.0)
    assert estimate is None or 20.0 <= estimate.bpm <= 300.0


@pytest.mark.parametrize("prior", [float("nan"), float("inf"), 0.0, -5.0])
def test_a_bad_first_guess_gives_no_estimate_and_no_crash(prior):
    assert estimate_tempo_chosen(steady(100.0, [(0.0,)] * 8), None, prior_bpm=prior) is None


def test_random_onsets_do_not_crash():
    rng = np.random.default_rng(0)
    for _ in range(20):
        onsets = np.sort(rng.uniform(0.0, 4.0, 6)).tolist()
        estimate = estimate_tempo_chosen(onsets, rng.integers(1, 128, 6).tolist(), prior_bpm=100.0)
        assert estimate is None or 20.0 <= estimate.bpm <= 300.0


def test_the_synthetic_phrases_are_steady_and_split():
    phrases = tempo_data.synthetic_phrases(count=20)
    assert {p["split"] for p in phrases} == {"train", "valid", "test"}
    for p in phrases:
        assert 40.0 <= p["bpm"] <= 240.0 and p["onsets"][0] == 0.0
        assert np.all(np.diff(p["onsets"]) >= 0) and len(p["onsets"]) == len(p["velocities"]) == len(p["pitches"])


def shipped() -> dict:
    return json.loads(beat_choice.WEIGHTS.read_text(encoding="utf-8"))


def test_the_shipped_weights_load():
    ranker = beat_choice.load()
    assert ranker.hidden_weight.shape == (len(ranker.hidden_bias), len(FEATURES))


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(features=d["features"][:-1]), "not a tempo chooser"),
    (lambda d: d.update(hidden=True), "hidden"),
    (lambda d: d.update(hidden=0), "hidden"),
    (lambda d: d.update(mean=d["mean"][:-1]), "mean"),
    (lambda d: d["scale"].__setitem__(0, 0.0), "scale must be positive"),
    (lambda d: d["out_weight"].__setitem__(0, float("nan")), "out_weight"),
    (lambda d: d["hidden_weight"].__setitem__(0, "x"), "hidden_weight"),
    (lambda d: d["hidden_bias"].__setitem__(0, True), "hidden_bias"),
])
def test_a_spoilt_weights_file_is_refused_in_one_line(change, words):
    data = shipped()
    change(data)
    with pytest.raises(InputError, match=words) as caught:
        check(data, "choice.json")
    assert "\n" not in str(caught.value) and "choice.json" in str(caught.value)


def test_an_unreadable_weights_file_names_itself(tmp_path):
    path = tmp_path / "choice.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not a readable tempo chooser"):
        beat_choice.load(path)


def test_clara_live_refuses_a_bad_tempo_chooser_in_one_line_before_any_port(capsys, monkeypatch, tmp_path):
    """The chooser is loaded at start, not at the first phrase's end, mid-session."""
    from clara_live.cli import main
    from clara_live.live import ports

    bad = tmp_path / "choice.json"
    bad.write_text('{"features": []}')
    real = beat_choice.load
    monkeypatch.setattr(beat_choice, "load", lambda: real(bad))
    monkeypatch.setattr(ports, "resolve_api", lambda api: pytest.fail("a port was opened"))
    code = main(["live", "--no-ui", "--no-save"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and str(bad) in err[0] and "not a tempo chooser" in err[0]
