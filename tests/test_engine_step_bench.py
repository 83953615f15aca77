"""benchmarks/engine_step.py, the step timing the GPU run (training/gpu_run.sh) reports, on the CPU."""

from __future__ import annotations

import json

from conftest import REPO, load_benchmark


def test_engine_step_times_batch_one_and_k(tmp_path, capsys, torch_settings_restored):
    bench = load_benchmark("engine_step")
    assert bench.main(["--model", str(REPO / "trained_models" / "clara-notewise"), "--device", "cpu",
                       "--steps", "30", "--warmup", "5", "--k", "4", "--json", str(tmp_path / "s.json")]) == 0
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["precision"] == "int8" and [r["batch"] for r in result["rows"]] == [1, 4]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in result["rows"])
    assert "int8 batch 1" in capsys.readouterr().out
