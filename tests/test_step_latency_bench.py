"""benchmarks/step_latency.py: runs end to end on a tiny random model and writes every figure.

No timing is asserted: these check the plumbing, not the machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark, save_tiny_model

MAESTRO = Path(__file__).resolve().parents[1].parent / "shared" / "midi" / "maestro"
VARIANTS = ("eager", "fp32", "int8", "sampler", "sampler_no_motif", "int8_batched", "sampler_batched")
PHRASE = "p20 p24 p27 wait6 endp24 p25 wait6 endp20 endp25 endp27 p22 wait12 endp22 wait3 "


bench = load_benchmark("step_latency")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "test.txt").write_text((PHRASE * 20).strip() + "\n\n" + (PHRASE * 7).strip() + "\n", encoding="utf-8")
    return folder


def _check(result: dict, steps: int) -> None:
    assert set(result["latency_ms"]) == set(VARIANTS)
    for stats in result["latency_ms"].values():
        assert set(stats) == {"p50", "p99", "mean", "max"}
        assert all(math.isfinite(v) and v > 0 for v in stats.values())
        assert stats["p50"] <= stats["p99"] <= stats["max"] and stats["mean"] <= stats["max"]
    for ratios in (*result["speedup_vs_eager"].values(), *result["batched_ratio"].values()):
        assert set(ratios) == {"p50", "p99"} and all(math.isfinite(v) and v > 0 for v in ratios.values())
    assert set(result["speedup_vs_eager"]) == {"fp32", "int8"}
    assert set(result["batched_ratio"]) == {"model", "sampler"}
    assert set(result["sampler_overhead_ms"]) == {"p50", "p99", "mean"}
    agree = result["agreement"]
    assert 0.0 <= agree["fraction"] <= 1.0
    assert 0.0 <= agree["accuracy_fp32"] <= 1.0 and 0.0 <= agree["accuracy_int8"] <= 1.0
    assert agree["steps"] > 0 and agree["sequences"] > 0
    assert all(isinstance(ok, bool) for ok in result["goals"].values()) and len(result["goals"]) == 5
    assert result["steps"] == steps
    assert result["machine"]["threads"] == 1 and result["machine"]["cpus"] >= 1 and result["machine"]["torch"]
    assert result["command"].startswith("python ") and "--steps" in result["command"]


def test_writes_every_figure_for_a_corpus_test_split(tiny_model, corpus, tmp_path, capsys):
    out = tmp_path / "latency.json"
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    argv = ["--model", str(tiny_model), "--corpus", str(corpus), "--steps", "50", "--warmup", "5", "--k", "4",
            "--json", str(out)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    _check(result, 50)
    assert result["k"] == 4 and result["agreement"]["sequences"] == 2
    assert result["agreement"]["steps"] == len((PHRASE * 27).split())  # two lines, each under --length
    assert torch.get_num_threads() == threads and torch.backends.mkldnn.enabled == onednn  # process left as found
    printed = capsys.readouterr().out
    assert "default eager" in printed and "K=4" in printed and "agreement" in printed


def test_length_cuts_the_maestro_excerpts(tiny_model, tmp_path):
    if not MAESTRO.is_dir():
        pytest.skip(f"{MAESTRO} not found")
    out = tmp_path / "latency.json"
    argv = ["--model", str(tiny_model), "--steps", "20", "--warmup", "2", "--k", "2", "--length", "100",
            "--json", str(out)]
    assert bench.main(argv) == 0
    agree = json.loads(out.read_text(encoding="utf-8"))["agreement"]
    assert agree["steps"] == 100 * agree["sequences"] and "maestro" in agree["source"]


def test_a_missing_corpus_is_a_one_line_error(tiny_model, tmp_path, capsys):
    assert bench.main(["--model", str(tiny_model), "--corpus", str(tmp_path / "none"), "--steps", "5"]) == 2
    assert "test.txt" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    assert "--corpus" in capsys.readouterr().out
