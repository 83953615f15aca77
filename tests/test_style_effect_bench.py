"""benchmarks/style_effect.py: a continuation's notes as the composer judge hears them, and a small run
with the shipped model and judge. No figure of the styles' effect is asserted (BENCHMARKS.md has them)."""

from __future__ import annotations

import json

import pytest
from conftest import load_benchmark

from clara_live.codec.vocabulary import Vocabulary
from clara_live.judge.store import load_judge

pytestmark = pytest.mark.slow

bench = load_benchmark("style_effect")
Timed = bench.answer_quality.Timed


def _vocab() -> Vocabulary:
    judge = load_judge(bench.REPO / "trained_models" / "composer", kind="composer")
    return Vocabulary(judge.vocabulary, judge.codec)


def test_a_continuation_is_heard_on_the_judge_s_grid_from_its_notes_alone():
    vocab = _vocab()
    # a C major arpeggio of eighths at 120 bpm (0.25 s), then a chord
    notes = [Timed(i * 0.25, i * 0.25 + 0.2, p) for i, p in enumerate((60, 64, 67, 72))] + \
        [Timed(1.0, 2.0, p) for p in (48, 55, 64)]
    text = vocab.text(bench.judge_ids(notes, vocab))
    sf = vocab.codec.sample_freq
    low = vocab.codec.low_pitch
    struck = [t for t in text if t.startswith("p")]
    assert struck == [f"p{p - low}" for p in (60, 64, 67, 72, 48, 55, 64)]
    now, onsets = 0, []
    for t in text:
        if t.startswith("wait"):
            now += int(t[4:])
        elif t.startswith("p"):
            onsets.append(now)
    assert onsets == [0, sf // 2, sf, 3 * sf // 2] + [2 * sf] * 3  # eighths at 120 bpm: half a beat of its grid
    assert bench.judge_ids(notes[:3], vocab) is None  # too few notes to judge
    assert bench.judge_ids([n._replace(start=n.start - 5.0) for n in notes], vocab) is None  # before the cut: not hers


def test_a_small_run_names_a_composer_for_each_continuation_under_each_style(shared, tmp_path):
    out = tmp_path / "style.json"
    assert bench.main(["--limit", "2", "--seconds", "6", "--styles", "chopin,none", "--json", str(out),
                       "--prompt-seconds", "4"]) == 0
    report = json.loads(out.read_text())
    classes = set(load_judge(bench.REPO / "trained_models" / "composer", kind="composer").classes) | {"(silent)"}
    for style in ("chopin", "none"):
        named = report["named"][style]
        assert sum(named.values()) == 2 and set(named) <= classes
    ratio = report["ratio"]["chopin"]
    assert ratio["composer"] == "Chopin" and 0.0 <= ratio["under_style"] <= 1.0 and 0.0 <= ratio["no_style"] <= 1.0


def test_from_silence_the_style_alone_opens_her_music(shared):
    loaded = bench.load_model(bench.REPO / "trained_models" / "clara-joint")
    config = bench.load_config()
    engine = bench.build_engine(loaded.model, config.inference)

    def play(style: str) -> list:  # from silence (no prompt)
        return bench.answer_quality.offline(loaded, engine, config, None, 4.0, {"style": style}, seed=3)

    chopin = play("chopin")
    assert chopin and min(n.start for n in chopin) >= 0.0  # she plays, from the start
    assert play("chopin") == chopin  # a seed repeats
    assert play("none") != chopin  # the token changes her music
