"""Training speed of our AWD-LSTM against a plain nn.LSTM stack of the same sizes.

Both models take the same training step (AdamW, gradient clipping, cross-entropy) on the
same random batches: ours with every AWD-LSTM regulariser on (embedding, locked and weight
drop, AR and TAR) as config.yaml sets them, the baseline with none. Passes alternate
between the two so load on the machine falls on both alike. Goal: ours >= 0.85x the
baseline's tokens/s.

    python benchmarks/train_speed.py [--steps N] [--repeat R] [--batch B] [--bptt T] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
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


def _step_fn(model, optimiser, awd: bool, alpha: float, beta: float):
    def step(inputs, targets, hidden):
        if awd:
            logits, hidden, acts = model(inputs, hidden, activations=True)
        else:
            logits, hidden = model(inputs, hidden)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        if awd:
            ar = acts.dropped.pow(2).mean()
            tar = (acts.raw[:, 1:] - acts.raw[:, :-1]).pow(2).mean()
            loss = loss + alpha * ar + beta * tar
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimiser.step()
        return [(h.detach(), c.detach()) for h, c in hidden]
    return step


def _timed_pass(step, hidden, batches) -> tuple[float, list]:
    start = time.perf_counter()
    for inputs, targets in batches:
        hidden = step(inputs, targets, hidden)
    return time.perf_counter() - start, hidden


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed pass")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per model (median reported)")
    parser.add_argument("--batch", type=int, default=None, help="default: training.batch_size")
    parser.add_argument("--bptt", type=int, default=None, help="default: training.bptt")
    parser.add_argument("--vocab", type=int, default=149, help="vocabulary size (notewise: 149)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = load_config()
    batch = args.batch or config.training.batch_size
    bptt = args.bptt or config.training.bptt
    torch.backends.mkldnn.enabled = False  # as the trainer runs on CPU: oneDNN's LSTM is slower here
    torch.manual_seed(0)
    awd = AWDLSTM(args.vocab, config.model).train()
    plain = PlainLSTM(args.vocab, awd).train()
    models = {
        "awd": (awd, _step_fn(awd, torch.optim.AdamW(awd.parameters(), lr=1e-3), True,
                              config.training.alpha, config.training.beta)),
        "plain": (plain, _step_fn(plain, torch.optim.AdamW(plain.parameters(), lr=1e-3), False, 0, 0)),
    }
    data = torch.randint(0, args.vocab, (batch, bptt * args.steps + 1))
    batches = [(data[:, i:i + bptt], data[:, i + 1:i + 1 + bptt]) for i in range(0, bptt * args.steps, bptt)]
    hidden = {name: awd.init_hidden(batch) for name in models}
    times: dict[str, list[float]] = {name: [] for name in models}
    for name, (_, step) in models.items():  # warm-up
        _, hidden[name] = _timed_pass(step, hidden[name], batches[:2])
    for _ in range(args.repeat):
        for name, (_, step) in models.items():
            seconds, hidden[name] = _timed_pass(step, hidden[name], batches)
            times[name].append(seconds)
    tokens = batch * bptt * args.steps
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    result = {"awd_tokens_per_s": round(rate["awd"]), "plain_tokens_per_s": round(rate["plain"]),
              "ratio": rate["awd"] / rate["plain"], "batch": batch, "bptt": bptt, "steps": args.steps,
              "repeat": args.repeat, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    if args.json:
        print(json.dumps(result))
    else:
        m = config.model
        print(f"model: {m.emb_size}/{m.hidden_size}x{m.num_layers}, vocab {args.vocab}, batch {batch} x bptt {bptt}, "
              f"{args.steps} steps a pass, median of {args.repeat}, {result['threads']} threads, "
              f"torch {torch.__version__}")
        print(f"AWD-LSTM (all regularisers): {rate['awd']:9,.0f} tokens/s")
        print(f"plain nn.LSTM stack:         {rate['plain']:9,.0f} tokens/s")
        verdict = "PASS" if result["ratio"] >= 0.85 else "FAIL"
        print(f"ratio AWD/plain: {result['ratio']:.2f}x; goal >= 0.85x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
