"""Training speed on this machine: our AWD-LSTM against a plain nn.LSTM stack, in fp32 and bf16.

Both models take the trainer's step (autocast as training.precision sets it, cross-entropy,
AdamW, gradient clipping) on the same random batches: ours with every AWD-LSTM regulariser on
(embedding, locked and weight drop, AR and TAR) as config.yaml sets them, the baseline with
none. Each precision runs with the oneDNN switch the trainer gives it (training/hardware.py).
Passes alternate between models and precisions so load on the machine falls on all alike;
a cell's timed steps stop after about --seconds (each pass a share, at least one step), so
emulated bf16 stays short.
Goals: ours >= 0.85x the baseline's tokens/s in fp32 (issue 3); bf16 >= 2.5x fp32 on a CPU
with AMX (issue 13; not judged on other CPUs).

    python benchmarks/train_speed.py [--precision fp32,bf16,fp32-onednn] [--batch 32,64,128] [--models awd,plain]
                                     [--steps N] [--repeat R] [--seconds S] [--bptt T] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clara_live.config import load_config  # noqa: E402
from clara_live.model import AWDLSTM  # noqa: E402
from training.hardware import Precision, choose_precision, cpu_bf16, cpu_model, onednn  # noqa: E402

AWD_GOAL, BF16_GOAL = 0.85, 2.5
FP32_ONEDNN = "fp32-onednn"  # not a training precision: fp32 with oneDNN on, which the trainer does not use
NAMES = {"awd": "AWD-LSTM", "plain": "plain nn.LSTM"}


class PlainLSTM(nn.Module):
    """The same layer sizes and tied decoder, no regularisation."""

    def __init__(self, vocab: int, like: AWDLSTM) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, like.config.emb_size)
        self.layers = nn.ModuleList(nn.LSTM(layer.lstm.input_size, layer.lstm.hidden_size, batch_first=True)
                                    for layer in like.layers)
        self.decoder = nn.Linear(like.layers[-1].lstm.hidden_size, vocab)
        self.decoder.weight = self.embed.weight

    def forward(self, tokens, hidden):
        x = self.embed(tokens)
        new = []
        for layer, state in zip(self.layers, hidden, strict=True):
            x, state = layer(x, state)
            new.append(state)
        return self.decoder(x), new


def _step_fn(model, optimiser, awd: bool, alpha: float, beta: float, bf16: bool):
    """One training step as training/trainer.py takes it."""
    def step(inputs, targets, hidden):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if awd:
                logits, hidden, acts = model(inputs, hidden, activations=True)
            else:
                logits, hidden = model(inputs, hidden)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
            if awd:
                loss = loss + alpha * acts.dropped.float().pow(2).mean() \
                    + beta * (acts.raw[:, 1:] - acts.raw[:, :-1]).float().pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimiser.step()
        return [(h.detach().float(), c.detach().float()) for h, c in hidden]
    return step


class Cell:
    """One (model, precision, batch): its step, its carried hidden state and its timed steps."""

    def __init__(self, model: nn.Module, awd: bool, precision, batch: int, bptt: int, steps: int, config,
                 vocab: int) -> None:
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
        self.step = _step_fn(model, optimiser, awd, config.training.alpha, config.training.beta, precision.bf16)
        self.precision, self.times = precision, []
        self.hidden = [(torch.zeros(1, batch, layer.hidden_size), torch.zeros(1, batch, layer.hidden_size))
                       for layer in (m.lstm if awd else m for m in model.layers)]
        data = torch.randint(0, vocab, (batch, bptt * steps + 1), generator=torch.Generator().manual_seed(batch))
        self.batches = [(data[:, i:i + bptt], data[:, i + 1:i + 1 + bptt]) for i in range(0, bptt * steps, bptt)]

    def run(self, steps: int, budget: float = 0.0, whole: float = 0.0, timed: bool = True) -> None:
        """A pass of up to `steps` steps: none once the cell has `whole` seconds of timed steps,
        and at least one but no more once this pass has `budget` seconds."""
        if timed and sum(self.times) >= whole > 0:
            return
        spent = 0.0
        with onednn(self.precision.onednn):
            for inputs, targets in self.batches[:steps]:
                start = time.perf_counter()
                self.hidden = self.step(inputs, targets, self.hidden)
                if not timed:
                    continue
                self.times.append(time.perf_counter() - start)
                spent += self.times[-1]
                if spent >= budget:
                    return


def measure(batches: list[int], precisions: list[str], models: list[str], bptt: int, steps: int, repeat: int,
            seconds: float, vocab: int) -> list[dict]:
    config = load_config()
    native = cpu_bf16()
    rows = []
    for batch in batches:
        cells = {}
        for name in precisions:
            precision = choose_precision(name, "cpu", native) if name != FP32_ONEDNN else \
                Precision("fp32", True, "fp32 with oneDNN on (the trainer measures which is faster: training.onednn)")
            torch.manual_seed(0)
            awd = AWDLSTM(vocab, config.model).train()
            built = {"awd": awd, "plain": PlainLSTM(vocab, awd).train()}
            for model in models:
                cells[model, name] = Cell(built[model], model == "awd", precision, batch, bptt, steps, config, vocab)
        for cell in cells.values():  # warm-up: oneDNN builds its primitives, the allocator its pools
            cell.run(1, timed=False)
        for _ in range(repeat):
            for cell in cells.values():
                cell.run(steps, seconds / repeat, seconds)
        for (model, name), cell in cells.items():
            rows.append({"model": model, "precision": name, "batch": batch, "bptt": bptt,
                         "onednn": cell.precision.onednn, "steps_timed": len(cell.times),
                         "tokens_per_s": round(batch * bptt / statistics.median(cell.times))})
    return rows


def _rate(rows: list[dict], model: str, precision: str, batch: int) -> float | None:
    found = [r["tokens_per_s"] for r in rows if (r["model"], r["precision"], r["batch"]) == (model, precision, batch)]
    return found[0] if found else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32,bf16",
                        help=f"comma-separated: fp32, bf16, {FP32_ONEDNN} (fp32 with oneDNN on)")
    parser.add_argument("--batch", default=None, help="comma-separated batch sizes (default: training.batch_size)")
    parser.add_argument("--models", default="awd,plain", help="comma-separated: awd, plain")
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed pass")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per cell (median step reported)")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per cell at most (after one step)")
    parser.add_argument("--bptt", type=int, default=None, help="default: training.bptt")
    parser.add_argument("--vocab", type=int, default=149, help="vocabulary size (notewise: 149)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = load_config()
    precisions = args.precision.split(",")
    models = args.models.split(",")
    if set(precisions) - {"fp32", "bf16", FP32_ONEDNN} or set(models) - set(NAMES):
        parser.error(f"--precision takes fp32, bf16, {FP32_ONEDNN}; --models awd, plain")
    batches = [int(b) for b in args.batch.split(",")] if args.batch else [config.training.batch_size]
    bptt = args.bptt or config.training.bptt
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = measure(batches, precisions, models, bptt, args.steps, args.repeat, args.seconds, args.vocab)
    native = cpu_bf16()
    result = {"cpu": cpu_model(), "native_bf16": native, "aten_capability": torch.backends.cpu.get_cpu_capability(),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "rows": rows,
              "awd_vs_plain_fp32": {b: _ratio(_rate(rows, "awd", "fp32", b), _rate(rows, "plain", "fp32", b))
                                    for b in batches},
              "bf16_vs_fp32": {b: _ratio(_rate(rows, "awd", "bf16", b), _rate(rows, "awd", "fp32", b))
                               for b in batches}}
    if args.json:
        print(json.dumps(result))
        return 0
    m = config.model
    print(f"CPU: {result['cpu']}; native bf16: {native or 'none'}; ATen {result['aten_capability']}; "
          f"{result['threads']} thread{'s' if result['threads'] != 1 else ''}; torch {torch.__version__}; "
          f"load average {result['load_average'][0]:.2f} before, {result['load_average'][1]:.2f} after")
    print(f"model {m.emb_size}/{m.hidden_size}x{m.num_layers}, vocab {args.vocab}, bptt {bptt}; up to "
          f"{args.repeat} passes of {args.steps} steps a cell, at most {args.seconds:g} s timed; median step")
    print(f"{'batch':>5}  {'model':<14} {'precision':<11} {'oneDNN':<6} {'steps':>5} {'tokens/s':>9}")
    for r in rows:
        print(f"{r['batch']:>5}  {NAMES[r['model']]:<14} {r['precision']:<11} {'on' if r['onednn'] else 'off':<6} "
              f"{r['steps_timed']:>5} {r['tokens_per_s']:>9,}")
    for b in batches:
        awd = result["awd_vs_plain_fp32"][b]
        if awd is not None:
            verdict = "PASS" if awd >= AWD_GOAL else "FAIL"
            print(f"batch {b}: AWD/plain in fp32 {awd:.2f}x; goal >= {AWD_GOAL}x: {verdict}")
        bf16 = result["bf16_vs_fp32"][b]
        if bf16 is not None:
            verdict = ("PASS" if bf16 >= BF16_GOAL else "FAIL") if native == "amx" else \
                f"not judged (the goal is for AMX; this CPU's native bf16: {native or 'none'})"
            print(f"batch {b}: AWD bf16/fp32 {bf16:.2f}x; goal >= {BF16_GOAL}x on AMX: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
