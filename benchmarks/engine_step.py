"""One generation step of a model's engine on a device: the time per token, batch 1 and batch K.

For a GPU run (training/gpu_run.sh) as for a CPU: the engine clara live would build there
(fp32 on cuda, int8 on a CPU unless --precision says otherwise), fed held-out-like tokens one at a
time with its hidden state carried, CUDA synchronised after every step so the time is the step's.

  python benchmarks/engine_step.py --model trained_models/clara-notewise --device cuda --json step.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from clara_live.config import InferenceConfig  # noqa: E402
from clara_live.engine import build_engine  # noqa: E402
from clara_live.model import load_model  # noqa: E402


def timed(engine, batch: int, steps: int, warmup: int, vocab: int) -> dict:
    hidden = engine.init_hidden(batch)
    rng = np.random.default_rng(0)
    ids = torch.as_tensor(rng.integers(0, vocab, (steps + warmup, batch, 1)), device=engine.device)
    cuda = engine.device.type == "cuda"
    times = []
    for i in range(steps + warmup):
        started = time.perf_counter()
        _, hidden = engine(ids[i], hidden)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"batch": batch, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "trained_models" /
                        "clara-notewise")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    loaded = load_model(args.model)
    engine = build_engine(loaded.model, InferenceConfig(device=args.device, precision=args.precision, threads=1))
    rows = [timed(engine, b, args.steps, args.warmup, len(loaded.vocabulary)) for b in (1, args.k)]
    result = {"model": str(args.model), "device": str(engine.device), "precision": engine.precision,
              "name": torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else "cpu",
              "rows": rows}
    for r in rows:
        print(f"{result['name']} {engine.precision} batch {r['batch']}: p50 {r['p50_ms']:.3f} ms, "
              f"p99 {r['p99_ms']:.3f} ms a step")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
