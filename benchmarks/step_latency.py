"""Per-token latency of generation on one CPU thread: PyTorch's default path against the engine.

What it measures, for a model folder, with torch.set_num_threads(1):
1. One model step at batch 1 (one token in, logits out, the hidden state carried, under
   inference_mode) for (a) default eager: the loaded AWDLSTM as it is, PyTorch's defaults,
   oneDNN on; (b) the fp32 engine (plain nn.LSTM copies, oneDNN off); (c) the int8 engine,
   the path generation takes on CPU (clara_live/engine.py). p50, p99, mean and max in ms, and
   the speed-ups of (b) and (c) over (a) at p50 and p99. The max shows a rare stall (a garbage
   collection, the scheduler); the goals use p50 and p99.
2. The full Sampler step (choose under the grammar mask, then advance) at batch 1 on the
   int8 engine, so the cost of sampling beside the model shows.
3. K candidate streams (--k, default 16) against one, on the int8 engine: one model step and
   one Sampler step.
4. Top-1 agreement of the int8 engine with the fp32 engine, teacher-forced on held-out music:
   the test split of a corpus (--corpus, its test.txt) or else the MAESTRO excerpts in
   ../shared/midi/maestro; the first --length tokens of each piece, each from a zero state.
   The argmax of both engines is compared at every step; next-token accuracy rides along.

Timing: every variant keeps its own hidden state and is fed real held-out tokens. The timed
steps are taken in ROUNDS rounds; each round runs every variant for a block of steps, in an
order that rotates from round to round, so background load (a training job, frequency
changes) falls on all variants alike. A block opens with BLOCK_WARMUP untimed steps: the
variant before it has pushed this one's weights out of the cache, which live generation,
running one model, never sees. oneDNN is a process-wide switch that build_engine turns off,
so it is set before every block: on for (a), off for the engines.

Goals: int8 step p99 <= 1 ms; int8 >= 10x faster than default eager (p50); K streams cost
<= 3x one (p50); int8/fp32 top-1 agreement >= 98 %.

    python benchmarks/step_latency.py [--model DIR] [--steps N] [--warmup W] [--k K]
                                      [--corpus DIR] [--length L] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clara_live.codec import make_codec, to_steps  # noqa: E402
from clara_live.codec.vocabulary import Vocabulary  # noqa: E402
from clara_live.config import InferenceConfig, load_config  # noqa: E402
from clara_live.engine import build_engine  # noqa: E402
from clara_live.errors import ClaraError  # noqa: E402
from clara_live.model import AWDLSTM, LoadedModel, load_model  # noqa: E402
from clara_live.music.read import read_music  # noqa: E402
from clara_live.sampling.sampler import Sampler  # noqa: E402

DEFAULT_MODEL = REPO / "trained_models" / "clara-notewise"
MAESTRO = REPO.parent / "shared" / "midi" / "maestro"
ROUNDS = 10  # interleaved rounds the timed steps are split into
BLOCK_WARMUP = 5  # untimed steps at the start of every block (cold caches after another variant)
PROMPT = 64  # held-out tokens fed to a sampler before its steps are timed
CHUNK = 256  # teacher-forced steps per model call in the agreement check
GOAL_P99_MS = 1.0
GOAL_SPEEDUP = 10.0
GOAL_BATCH_RATIO = 3.0
GOAL_AGREEMENT = 0.98


@dataclass
class Variant:
    """One thing timed: a step function with its own state, and the oneDNN switch it runs under."""

    key: str  # name in the JSON
    label: str  # name in the table
    step: Callable[[], object]
    onednn: bool
    times_ns: list[int] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        ms = np.array(self.times_ns, dtype=np.float64) / 1e6
        return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()),
                "max": float(ms.max())}


class ModelStep:
    """One token per stream in, logits out, hidden state carried: the model's share of a token."""

    def __init__(self, model: torch.nn.Module, tokens: np.ndarray, streams: int) -> None:
        self.model = model
        self.hidden = model.init_hidden(streams)
        # stream s reads the held-out tokens from offset 7 s, so the streams differ
        rows = np.stack([np.roll(tokens, -7 * s) for s in range(streams)], axis=1)  # (n, streams)
        self.inputs = [torch.as_tensor(row, dtype=torch.long).view(streams, 1) for row in rows]
        self.at = 0

    def __call__(self) -> torch.Tensor:
        x = self.inputs[self.at % len(self.inputs)]
        self.at += 1
        with torch.inference_mode():
            logits, self.hidden = self.model(x, self.hidden)
        return logits


def sampler_step(engine: torch.nn.Module, loaded: LoadedModel, prompt: np.ndarray,
                 streams: int, overrides: tuple[str, ...] = ()) -> Callable[[], list[str]]:
    """A Sampler primed with a held-out prompt (forked into `streams` candidates); calling it
    takes one full step: choose under the grammar mask, score, feed back. Sampling settings
    are config.yaml's (with `overrides`), with a fixed seed."""
    sampling = load_config(overrides=list(overrides)).sampling
    sampler = Sampler(engine, loaded.vocabulary, loaded.codec, sampling, seed=0)
    sampler.feed_ids([int(i) for i in prompt])
    if streams > 1:
        sampler.expand(streams)
    return sampler.step


def measure(variants: list[Variant], steps: int, warmup: int, rounds: int) -> None:
    """Fill each variant's times_ns with `steps` step times, in interleaved rounds."""
    for v in variants:
        torch.backends.mkldnn.enabled = v.onednn
        for _ in range(warmup):
            v.step()
    gc.collect()  # once: a full collection costs ~0.1 s with music21 loaded, too dear per block
    block = -(-steps // rounds)
    for r in range(rounds):
        turn = r % len(variants)
        for v in variants[turn:] + variants[:turn]:
            todo = min(block, steps - len(v.times_ns))
            if todo <= 0:
                continue
            torch.backends.mkldnn.enabled = v.onednn
            for _ in range(BLOCK_WARMUP):
                v.step()
            for _ in range(todo):
                start = time.perf_counter_ns()
                v.step()
                v.times_ns.append(time.perf_counter_ns() - start)


def held_out(corpus: Path | None, loaded: LoadedModel) -> tuple[list[np.ndarray], str]:
    """Token id sequences of held-out music, and where they came from."""
    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    if corpus is not None:
        manifest = corpus / "manifest.json"
        unknown = json.loads(manifest.read_text(encoding="utf-8")).get("unknown_token") if manifest.exists() \
            else None
        path = corpus / "test.txt"
        with open(path, encoding="utf-8") as f:
            lines = [(n, tokens) for n, line in enumerate(f, 1) if (tokens := line.split())]
        return [vocab.ids(tokens, f"{path}:{n}", unknown=unknown is not None) for n, tokens in lines], str(path)
    codec = make_codec(loaded.codec)
    files = sorted(MAESTRO.glob("*.mid"))
    if not files:
        raise FileNotFoundError(f"{MAESTRO}: no MIDI files (give --corpus DIR instead)")
    sequences = [vocab.ids(codec.encode(to_steps(read_music(p, loaded.codec.sustain_pedal), loaded.codec)), str(p))
                 for p in files]
    return sequences, f"{MAESTRO} ({len(files)} files)"


def agreement(reference: torch.nn.Module, other: torch.nn.Module, sequences: list[np.ndarray]) -> dict:
    """Teacher-forced top-1 agreement of `other` with `reference`, all sequences side by side,
    each from a zero state; and each engine's next-token accuracy."""
    sequences = [s for s in sequences if len(s)]
    length = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), length, dtype=torch.long)
    valid = torch.zeros(len(sequences), length, dtype=torch.bool)
    target = torch.full((len(sequences), length), -1, dtype=torch.long)  # the next token; -1: none
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq)
        valid[row, :len(seq)] = True
        target[row, :len(seq) - 1] = torch.as_tensor(seq[1:])
    torch.backends.mkldnn.enabled = False  # as the engines run
    h_ref, h_other = reference.init_hidden(len(sequences)), other.init_hidden(len(sequences))
    same = hits_ref = hits_other = 0
    for t in range(0, length, CHUNK):
        a, h_ref = reference(ids[:, t:t + CHUNK], h_ref)
        b, h_other = other(ids[:, t:t + CHUNK], h_other)
        top_a, top_b = a.argmax(-1), b.argmax(-1)  # (rows, chunk)
        same += int(((top_a == top_b) & valid[:, t:t + CHUNK]).sum())
        hits_ref += int((top_a == target[:, t:t + CHUNK]).sum())
        hits_other += int((top_b == target[:, t:t + CHUNK]).sum())
    steps, predicted = int(valid.sum()), int((target >= 0).sum())
    return {"fraction": same / steps, "steps": steps, "sequences": len(sequences),
            "accuracy_fp32": hits_ref / max(predicted, 1), "accuracy_int8": hits_other / max(predicted, 1)}


def machine() -> dict:
    processor = platform.processor()
    if not processor and Path("/proc/cpuinfo").exists():  # platform.processor() is empty on many Linux boxes
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        processor = names[0] if names else ""
    return {"processor": processor, "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def _shown(path: Path) -> str:
    """path relative to the working directory when it lies below it, as a person would type it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _ratio(a: dict, b: dict) -> dict[str, float]:
    return {q: a[q] / b[q] for q in ("p50", "p99")}


def run(args: argparse.Namespace, command: str) -> dict:
    loaded = load_model(args.model)
    if args.width:  # sizing: the model's shape, wider, its weights random (a step's cost does not depend on them)
        emb, hidden = args.width
        torch.manual_seed(0)
        config = dataclasses.replace(loaded.model.config, emb_size=emb, hidden_size=hidden)
        loaded = loaded._replace(model=AWDLSTM(len(loaded.vocabulary), config).eval())
    sequences, source = held_out(args.corpus, loaded)
    if args.length:
        sequences = [s[:args.length] for s in sequences]
    stream = np.concatenate(sequences)
    if len(stream) < 2:
        raise ValueError(f"{source}: too few held-out tokens")
    fp32 = build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32", threads=1))
    int8 = build_engine(loaded.model, InferenceConfig(device="cpu", precision="int8", threads=1))
    k = args.k
    variants = [
        Variant("eager", "(a) default eager, oneDNN on", ModelStep(loaded.model, stream, 1), onednn=True),
        Variant("fp32", "(b) fp32 engine, oneDNN off", ModelStep(fp32, stream, 1), onednn=False),
        Variant("int8", "(c) int8 engine (chosen path)", ModelStep(int8, stream, 1), onednn=False),
        Variant("sampler", "int8 Sampler step", sampler_step(int8, loaded, stream[:PROMPT], 1), onednn=False),
        Variant("sampler_no_motif", "  ... with motif_pull 0",
                sampler_step(int8, loaded, stream[:PROMPT], 1, ("sampling.motif_pull=0",)), onednn=False),
        Variant("int8_batched", f"int8 model step, K={k}", ModelStep(int8, stream, k), onednn=False),
        Variant("sampler_batched", f"int8 Sampler step, K={k}", sampler_step(int8, loaded, stream[:PROMPT], k),
                onednn=False),
    ]
    load_start = os.getloadavg()[0]
    measure(variants, args.steps, args.warmup, min(ROUNDS, args.steps))
    load_end = os.getloadavg()[0]
    latency = {v.key: v.stats() for v in variants}
    agree = {**agreement(fp32, int8, sequences), "source": source, "length": args.length}

    speedup = {name: _ratio(latency["eager"], latency[name]) for name in ("fp32", "int8")}
    batched = {"model": _ratio(latency["int8_batched"], latency["int8"]),
               "sampler": _ratio(latency["sampler_batched"], latency["sampler"])}
    m = loaded.model.config
    return {
        "command": command,
        "model": _shown(args.model),
        "model_sizes": {"emb_size": m.emb_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
                        "vocab": len(loaded.vocabulary),
                        "parameters": sum(p.numel() for p in loaded.model.parameters())},
        "machine": {**machine(), "load_average_start": load_start, "load_average_end": load_end},
        "steps": args.steps, "warmup": args.warmup, "rounds": min(ROUNDS, args.steps), "k": k,
        "labels": {v.key: v.label for v in variants},
        "latency_ms": latency,
        "speedup_vs_eager": speedup,
        "sampler_overhead_ms": {q: latency["sampler"][q] - latency["int8"][q] for q in ("p50", "p99", "mean")},
        "batched_ratio": batched,
        "agreement": agree,
        "goals": {
            "int8_p99_ms_le_1": latency["int8"]["p99"] <= GOAL_P99_MS,
            "int8_speedup_p50_ge_10": speedup["int8"]["p50"] >= GOAL_SPEEDUP,
            "batched_model_p50_ratio_le_3": batched["model"]["p50"] <= GOAL_BATCH_RATIO,
            "batched_sampler_p50_ratio_le_3": batched["sampler"]["p50"] <= GOAL_BATCH_RATIO,
            "agreement_ge_98pct": agree["fraction"] >= GOAL_AGREEMENT,
        },
    }


def report(r: dict) -> None:
    mc, ms, lat, k = r["machine"], r["model_sizes"], r["latency_ms"], r["k"]
    print(f"model: {r['model']} (emb {ms['emb_size']}, hidden {ms['hidden_size']} x {ms['num_layers']} layers, "
          f"vocab {ms['vocab']}, {ms['parameters']:,} parameters)")
    print(f"machine: {mc['processor'] or '?'} ({mc['machine']}), {mc['cpus']} CPUs, torch {mc['torch']}, "
          f"{mc['threads']} thread; load average {mc['load_average_start']:.2f} at start, "
          f"{mc['load_average_end']:.2f} at end")
    print(f"command: {r['command']}")
    print(f"{r['steps']} timed steps per variant after {r['warmup']} warm-up, in {r['rounds']} interleaved rounds")
    print()
    print(f"{'batch-1 step':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s} {'max ms':>8s}   "
          f"{'speed-up p50':>12s} {'p99':>6s}")
    for key in ("eager", "fp32", "int8", "sampler", "sampler_no_motif"):
        s = lat[key]
        line = f"{r['labels'][key]:34s} {s['p50']:8.3f} {s['p99']:8.3f} {s['mean']:8.3f} {s['max']:8.3f}"
        if key in r["speedup_vs_eager"] or key == "eager":
            up = r["speedup_vs_eager"].get(key, {"p50": 1.0, "p99": 1.0})
            line += f"   {up['p50']:11.1f}x {up['p99']:5.1f}x"
        print(line)
    over = r["sampler_overhead_ms"]
    print(f"{'  sampling over the int8 step':34s} {over['p50']:+8.3f} {over['p99']:+8.3f} {over['mean']:+8.3f}")
    print()
    print(f"{'K streams at once (int8)':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s} {'max ms':>8s}   "
          f"{'x one p50':>12s} {'p99':>6s}")
    for key, kind in (("int8_batched", "model"), ("sampler_batched", "sampler")):
        s, ratio = lat[key], r["batched_ratio"][kind]
        print(f"{r['labels'][key]:34s} {s['p50']:8.3f} {s['p99']:8.3f} {s['mean']:8.3f} {s['max']:8.3f}   "
              f"{ratio['p50']:11.2f}x {ratio['p99']:5.2f}x")
    a = r["agreement"]
    cut = f", first {a['length']} tokens each" if a["length"] else ""
    print()
    print(f"int8 vs fp32, teacher-forced on {a['source']}: {a['sequences']} sequences{cut}, {a['steps']:,} steps")
    print(f"  top-1 agreement {100 * a['fraction']:.2f} %; next-token accuracy fp32 {100 * a['accuracy_fp32']:.2f} %, "
          f"int8 {100 * a['accuracy_int8']:.2f} %")
    print()
    goals = r["goals"]
    rows = [
        (f"int8 step p99 <= {GOAL_P99_MS:g} ms on one thread", f"{lat['int8']['p99']:.3f} ms",
         goals["int8_p99_ms_le_1"]),
        (f"int8 >= {GOAL_SPEEDUP:g}x faster than default eager (p50)", f"{r['speedup_vs_eager']['int8']['p50']:.1f}x",
         goals["int8_speedup_p50_ge_10"]),
        (f"K={k} model step <= {GOAL_BATCH_RATIO:g}x one stream (p50)", f"{r['batched_ratio']['model']['p50']:.2f}x",
         goals["batched_model_p50_ratio_le_3"]),
        (f"K={k} Sampler step <= {GOAL_BATCH_RATIO:g}x one stream (p50)",
         f"{r['batched_ratio']['sampler']['p50']:.2f}x", goals["batched_sampler_p50_ratio_le_3"]),
        (f"int8/fp32 top-1 agreement >= {100 * GOAL_AGREEMENT:g} %", f"{100 * a['fraction']:.2f} %",
         goals["agreement_ge_98pct"]),
    ]
    print(f"{'goal':52s} {'measured':>10s}   verdict")
    for goal, measured, ok in rows:
        print(f"{goal:52s} {measured:>10s}   {'met' if ok else 'NOT MET'}")


def _width(text: str) -> tuple[int, int]:
    emb, _, hidden = text.partition("/")
    try:
        return int(emb), int(hidden)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give EMB/HIDDEN, e.g. 384/768") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a model folder (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per variant (default 2000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps per variant first (default 200)")
    parser.add_argument("--k", type=int, default=16, help="candidate streams of the batched steps (default 16)")
    parser.add_argument("--corpus", type=Path, help="a `clara corpus` folder: its test.txt is the held-out music "
                                                    "(default: the MAESTRO excerpts in ../shared/midi/maestro)")
    parser.add_argument("--length", type=int, default=2000,
                        help="teacher-forced tokens per held-out piece in the agreement check (0: all; default 2000)")
    parser.add_argument("--width", type=_width, metavar="EMB/HIDDEN",
                        help="time a model of --model's shape at this width, random weights (sizing; its "
                             "agreement figures mean nothing)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.k < 1 or args.length < 0:
        parser.error("--steps and --k must be at least 1, --warmup and --length at least 0")
    command = shlex.join(["python", _shown(Path(__file__)), *(sys.argv[1:] if argv is None else argv)])

    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    try:
        result = run(args, command)
    except (ClaraError, OSError, ValueError) as exc:  # a bad model folder, a missing file, an unknown token
        print(f"step_latency: {exc}", file=sys.stderr)
        return 2
    finally:  # leave the process as it was (tests run main() in-process)
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
