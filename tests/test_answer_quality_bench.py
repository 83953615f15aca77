"""benchmarks/answer_quality.py: its metrics on music made by hand, its prompts cut from
held-out works only, and a small run of both paths (offline and live) with the shipped model.

No figure of the model's quality is asserted here: that is the benchmark's job (BENCHMARKS.md).
"""

from __future__ import annotations

import json

import pytest
from conftest import load_benchmark

from training import heldout

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

bench = load_benchmark("answer_quality")
Timed = bench.Timed


def _line(pitches: list[int], ioi: float = 0.25, length: float = 0.2) -> list[Timed]:
    return [Timed(i * ioi, i * ioi + length, p) for i, p in enumerate(pitches)]


def test_touch_tells_a_flat_sequencer_from_a_played_line():
    prompt = [n._replace(velocity=v) for n, v in zip(_line([60, 62, 64, 65]), (70, 72, 74, 76), strict=True)]
    flat = bench.touch(_line([60, 62, 64, 65, 67, 65, 64, 62]), prompt, 2.0, 0.5)  # all at 80, on a 0.25 s grid
    assert flat["vel_sd"] == 0.0 and flat["vel_distinct"] == pytest.approx(12 / 2.0)
    assert flat["vel_level"] == pytest.approx(80 - 73) and flat["vel_beat"] == 0.0
    assert flat["ioi_s_entropy"] == 0.0  # one inter-onset interval
    # louder on the beats (every other onset at 0.5 s beats), placed a little off the grid
    played = [Timed(i * 0.25 + (0.012 if i % 3 else -0.008), i * 0.25 + 0.2, 60 + i, 90 if i % 2 == 0 else 60)
              for i in range(8)]
    shaped = bench.touch(played, prompt, 2.0, 0.5)
    assert shaped["vel_sd"] == pytest.approx(15.0) and shaped["vel_beat"] > 20.0
    assert shaped["ioi_s_entropy"] > 1.0  # the intervals differ in seconds: what a 1/12-beat grid cannot see
    assert bench.touch([], prompt, 2.0, 0.5)["vel_level"] == 127.0


def test_runs_and_loop_share_count_repeated_onset_sets():
    notes = _line([60, 60, 60, 60, 60, 62, 64, 64])
    chord = [Timed(3.0 + d, 3.2, p) for d, p in ((0.0, 48), (0.01, 52), (0.02, 55))]  # a spread chord is one set
    m = bench.measure(notes + chord, _line([60, 62, 64]), 4.0, 0.5)
    assert m["longest_run"] == 5
    assert m["loop_share"] == pytest.approx(5 / 9)  # five of the nine onset sets are in a run of >= 4
    assert m["distinct"] == 6


def test_key_register_and_motifs_against_the_prompt():
    prompt = _line([60, 64, 67, 72, 67, 64])
    same = bench.measure(prompt, prompt, 2.0, 0.5)
    assert same["pc_cosine"] == pytest.approx(1.0) and same["drift"] == 0.0 and same["motif_reuse"] == 1.0
    up = bench.measure([n._replace(pitch=n.pitch + 12) for n in prompt], prompt, 2.0, 0.5)
    assert up["pc_cosine"] == pytest.approx(1.0) and up["drift"] == pytest.approx(12.0)
    assert up["motif_reuse"] == 1.0  # the same intervals an octave up
    tritone = bench.measure([n._replace(pitch=n.pitch + 6) for n in prompt], prompt, 2.0, 0.5)
    assert tritone["pc_cosine"] < 0.3


def test_silence_polyphony_density_and_rhythm():
    prompt = _line([60, 62, 64, 65], ioi=0.5, length=0.5)  # legato, one voice, 2 onsets a second
    sparse = [Timed(0.0, 1.0, 60), Timed(0.0, 1.0, 64), Timed(3.0, 4.0, 67)]
    m = bench.measure(sparse, prompt, 4.0, 0.5)
    assert m["silence"] == pytest.approx(0.5)
    assert m["polyphony"] == pytest.approx((2 * 1.0 + 1 * 1.0) / 2.0)  # two voices then one, vs one
    assert m["density"] == pytest.approx((2 / 4.0) / (4 / 2.0))
    assert m["ioi_entropy"] == 0.0  # one interval
    varied = bench.measure(_line([60] * 2, 0.5) + [Timed(1.25, 1.4, 62), Timed(1.5, 1.6, 64)], prompt, 3.0, 0.5)
    assert varied["ioi_entropy"] > 1.0


def test_distance_is_zero_for_the_reference_and_grows_with_a_difference():
    real = [bench.measure(_line([60 + i, 62, 64, 65 + i]), _line([60, 62, 64]), 1.0, 0.5) for i in range(5)]
    assert bench.distance(real, real) == 0.0
    loops = [bench.measure(_line([60] * 8), _line([60, 62, 64]), 2.0, 0.5) for _ in range(5)]
    assert bench.distance(loops, real) > 1.0


def test_prompts_come_from_held_out_works_only(shared):
    prompts = bench.load_prompts("valid", 6.0, 6.0, limit=4)
    valid = {f"piano-midi-de:{i.work}" for i in heldout.piano_midi_de("valid")} | \
        {f"asap:{i.work}" for i in heldout.asap("valid")}
    train = {f"piano-midi-de:{i.work}" for i in heldout.piano_midi_de("train")}
    assert prompts and all(p.name in valid and p.name not in train for p in prompts)
    for p in prompts:
        assert p.span == 6.0 and all(0.0 <= n.start < 6.0 for n in p.notes)  # 6 s before the cut ...
        assert all(0.0 <= n.start < 6.0 for n in p.reference)  # ... and the real 6 s after it


def test_prompts_a_model_s_own_corpus_trained_on_are_left_out(shared, tmp_path):
    """--corpus: a model trained on another split (a corpus built by `clara corpus`) is never
    prompted with a piece of its train split."""
    items = heldout.piano_midi_de("valid")[:3]
    manifest = {"pieces": [{"source": str(items[0].path), "split": "train"},
                           {"source": str(items[1].path), "split": "valid"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert bench.trained_on(tmp_path) == {items[0].path.resolve()}
    names = [p.name for p in bench.load_prompts("valid", 6.0, 6.0, limit=3, corpus=tmp_path)]
    everyone = [p.name for p in bench.load_prompts("valid", 6.0, 6.0, limit=3)]
    assert f"piano-midi-de:{items[0].work}" in everyone and f"piano-midi-de:{items[0].work}" not in names


def test_an_asap_work_in_piano_midi_de_takes_that_pieces_split(shared):
    splits = heldout.asap_splits()
    # the Appassionata's first movement is in piano-midi.de's train split, so never a held-out work
    assert splits["Beethoven/Piano_Sonatas/23-1"] == "train"
    assert heldout.asap_work("Beethoven/Piano_Sonatas/17-1_no_repeat") == "Beethoven/Piano_Sonatas/17-1"


@pytest.mark.parametrize("path", ["offline", "live"])
def test_both_paths_run_end_to_end(shared, tmp_path, path):
    out = tmp_path / "report.json"
    assert bench.main(["--limit", "2", "--settings", "default", "--path", path, "--prompt-seconds", "6",
                       "--seconds", "6", "--json", str(out), "--png", str(tmp_path), "--examples", "1"]) == 0
    report = json.loads(out.read_text())
    result = report["results"]["default"]
    assert set(result["median"]) == set(bench.METRICS) | set(bench.TOUCH)
    assert report["results"]["real"]["distance"] == 0.0
    assert result["median"]["distinct"] > 0  # Clara played
    assert report["reference_tokens"] > 0
    assert (tmp_path / f"{path}-default-0.png").stat().st_size > 1000


def test_seeds_take_every_prompt_that_many_times_with_its_own_seed(shared, tmp_path):
    out = tmp_path / "report.json"
    assert bench.main(["--limit", "2", "--settings", "default", "--seeds", "2", "--prompt-seconds", "6",
                       "--seconds", "6", "--json", str(out), "--rows"]) == 0
    report = json.loads(out.read_text())
    rows = report["results"]["default"]["rows"]
    assert report["seeds"] == 2 and len(rows) == 4 and len(report["results"]["real"]["rows"]) == 2
    assert rows[:2] != rows[2:]  # a second take of the same prompts is another continuation
    by_corpus = report["results"]["default"]["by_corpus"]  # each corpus's prompts apart, both takes
    corpora = [name.split(":")[0] for name in report["prompts"]]
    assert set(by_corpus) == set(corpora)
    for corpus, median in by_corpus.items():
        assert median == bench.summarise([r for i, r in enumerate(rows) if corpora[i % 2] == corpus])
