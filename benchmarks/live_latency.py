"""Live latency through real MIDI plumbing: a JACK server (dummy driver), `clara live` in its
own process, and this script as the player and the listener.

What it measures, over --rounds call-and-response rounds at --bpm:
1. Absorb: from a note's arrival at `clara live` (its reader thread's timestamp) to (a) the
   session holding it (quantised, its tokens made and handed to the worker) and (b) the model
   having read its tokens (the worker's hidden state updated): p50 and p99, in ms. Goal: p99
   <= 2 ms.
2. Send jitter: how late each of Clara's messages left the scheduler against its scheduled time
   (a monotonic clock): p50 and p99. Goal: p99 <= 1 ms.
3. Answer onset against the beat, heard at the listener: each answer's first note against the
   beat grid of the player's phrase (its first note is beat 0), in ms; this includes the JACK
   transport both ways.
4. Feeding a note in-process (no JACK), back to back and after 50 ms idle: what the model's
   absorb is made of; and re-reading a phrase at its end (the worker's Refeed when the tempo
   heard in it re-quantises it: 300 tokens, about 10 s of playing) in one model call, against
   one call per note as it was first fed. With --candidates K, the costs `clara live`
   calibrates at start. `--in-process` measures only these, with no JACK.
5. The baseline in the same run: a bare loopback through the same JACK server (a player port
   wired straight to a listener port, no Clara in between) — the transport's own latency, the
   floor every figure above stands on.

JACK runs with -R (realtime scheduling, granted to root here; without it jackd still runs).
Both measurements 1-2 come from `clara live --stats FILE`; the timestamps are taken inside
`clara live` on one monotonic clock. Run it on a quiet machine: JACK's dummy driver runs
without real-time priority here, so other load shows up as xruns and late wake-ups.

    python benchmarks/live_latency.py [--model DIR] [--rounds N] [--bpm BPM] [--period FRAMES]
                                      [--candidates K] [--json FILE] [--in-process]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clara_live.live import ports  # noqa: E402

NOTE_ON, NOTE_OFF = 0x90, 0x80


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.001))


def _start_jack(name: str, period: int) -> subprocess.Popen:
    # -R: realtime scheduling where the system allows it (jackd runs without it otherwise); without it a
    # starved client misses whole cycles on a busy machine
    proc = subprocess.Popen(["jackd", "-R", "-n", name, "-d", "dummy", "-r", "48000", "-p", str(period)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], check=True, capture_output=True)
    return proc


def _percentiles(values: list[float]) -> dict:
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def loopback(api: int, messages: int = 500) -> dict:
    """Transport only: a note's trip from one client to another through the server, in ms."""
    arrived: dict[int, float] = {}
    listener = ports.InputPort(api, virtual="Loop In", client="loop-listener",
                               sink=lambda m, t: arrived.setdefault(m[1] + 128 * (m[0] & 0x0F), t))
    player = ports.OutputPort(api, spec="Loop In", client="loop-player")
    time.sleep(0.3)
    sent_at = {}
    for i in range(messages):
        key = i % 2048
        sent_at[key] = time.monotonic()
        player.send([NOTE_ON | (key // 128), key % 128, 64])
        time.sleep(0.004)
    time.sleep(0.2)
    player.close()
    listener.close()
    trips = [(arrived[k] - sent_at[k]) * 1000 for k in sent_at if k in arrived]
    return {**_percentiles(trips), "lost": messages - len(trips)}


def session(api: int, model: str, rounds: int, bpm: float, workdir: Path, candidates: int = 1) -> dict:
    beat = 60.0 / bpm
    stats = workdir / "stats.json"
    command = [sys.executable, "-m", "clara_live", "live", "--model", model, "--midi-api", "jack", "--virtual",
               "--no-ui", "--mode", "call-response", "--bpm", str(bpm), "--seed", "1", "--no-save",
               "--stats", str(stats), "--candidates", str(candidates)]
    live = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.rstrip() for line in live.stdout), daemon=True).start()
    deadline = time.monotonic() + 60
    while not any("ready" in line for line in lines):
        if time.monotonic() > deadline or live.poll() is not None:
            live.kill()
            raise SystemExit("clara live did not start:\n" + "\n".join(lines))
        time.sleep(0.05)
    heard: list[tuple[float, list[int]]] = []
    listener = ports.InputPort(api, spec="Clara Out", client="bench-listener", sink=lambda m, t: heard.append((t, m)))
    player = ports.OutputPort(api, spec="Clara In", client="bench-player")
    time.sleep(0.3)
    phrase = [60, 64, 67, 72, 71, 67, 62, 59]
    onset_errors = []
    try:
        for r in range(rounds):
            start = time.monotonic() + 0.3
            for k, pitch in enumerate(phrase):
                _sleep_until(start + k * beat)
                player.send([NOTE_ON, pitch + r % 3, 80])
                _sleep_until(start + k * beat + 0.8 * beat)
                player.send([NOTE_OFF, pitch + r % 3, 0])
            # the answer: about as long as the call, after a beat of silence and the next beat
            listen_from = time.monotonic()
            _sleep_until(listen_from + (len(phrase) + 3) * beat)
            onsets = [t for t, m in heard if t >= listen_from and m[0] & 0xF0 == NOTE_ON and m[2] > 0]
            if onsets:
                beats = (onsets[0] - start) / beat
                onset_errors.append((beats - round(beats)) * beat * 1000)
    finally:
        live.send_signal(signal.SIGTERM)
        live.wait(timeout=30)
        player.close()
        listener.close()
    if os.environ.get("CLARA_BENCH_VERBOSE"):
        print("\n".join(lines))
    measured = json.loads(stats.read_text())
    return {"absorb_session_ms": _percentiles(measured["session_ms"]),
            "absorb_model_ms": _percentiles(measured["model_ms"]),
            "send_late_ms": _percentiles(measured["send_late_ms"]),
            "answer_onset_error_ms": {**_percentiles([abs(e) for e in onset_errors]),
                                      "mean_signed": float(np.mean(onset_errors)) if onset_errors else None},
            "answers": measured["answers"], "rounds": rounds, "candidates": measured["candidates"],
            "choice_ms": measured["choice_ms"], "calibration": measured["calibration"]}


def feed_cost(model: str, feeds: int = 100) -> dict:
    """In-process, no JACK: feeding a note (a wait and the note) back to back, and after 50 ms
    idle (the case of a player's notes), in ms: what the model's absorb is made of."""
    from clara_live.codec.tokens import release, strike, wait
    from clara_live.config import load_config
    from clara_live.engine import build_engine
    from clara_live.model import load_model
    from clara_live.sampling.sampler import Sampler

    loaded, config = load_model(model), load_config()
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                      config.sampling, seed=0)
    sampler.feed([wait(3)])
    out = {}
    for name, gap in (("back_to_back", 0.0), ("after_50ms_idle", 0.05)):
        times = []
        for _ in range(feeds):
            if gap:
                time.sleep(gap)
            started = time.perf_counter()
            sampler.feed([wait(3), strike(30)])
            times.append((time.perf_counter() - started) * 1000)
        out[name] = _percentiles(times)
    phrase = [wait(6), strike(30), wait(6), release(30), strike(34), wait(6), release(34)] * 43  # 301 tokens, 86 notes
    mark = sampler.snapshot()
    for name, chunks in (("refeed_one_call", [phrase]), ("refeed_per_note", [phrase[i:i + 3] for i in
                                                                             range(0, len(phrase), 3)])):
        times = []
        for _ in range(20):
            started = time.perf_counter()
            sampler.restore(mark)
            for chunk in chunks:
                sampler.feed(chunk)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = _percentiles(times)
    return out


def _print_feeds(feeds: dict) -> None:
    for name, r in feeds.items():
        print(f"{'feed ' + name:24s} n {r['n']:5d}  p50 {r['p50']:7.3f}  p99 {r['p99']:7.3f}  (in-process)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "trained_models" / "clara-notewise"))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--period", type=int, default=64, help="JACK frames per period (64 = 1.3 ms at 48 kHz)")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--candidates", type=int, default=1, help="best-of-K answers chosen by the critic")
    parser.add_argument("--in-process", action="store_true", help="only the in-process feed costs (no JACK)")
    args = parser.parse_args()
    if args.in_process:
        _print_feeds(feed_cost(args.model))
        return 0
    if shutil.which("jackd") is None:
        raise SystemExit("jackd not found: apt-get install jackd2")
    name = f"clara-bench-{os.getpid()}"
    os.environ["JACK_DEFAULT_SERVER"] = name
    jack = _start_jack(name, args.period)
    try:
        api = ports.resolve_api("jack")
        with tempfile.TemporaryDirectory() as workdir:
            result = {"loopback_ms": loopback(api),
                      **session(api, args.model, args.rounds, args.bpm, Path(workdir), args.candidates),
                      "feed_ms": feed_cost(args.model)}
    finally:
        jack.terminate()
        jack.wait()
    result["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python " \
                        f"{platform.python_version()}; JACK dummy driver 48 kHz, {args.period} frames"
    for key in ("loopback_ms", "absorb_session_ms", "absorb_model_ms", "send_late_ms", "answer_onset_error_ms"):
        r = result[key]
        print(f"{key:24s} n {r['n']:5d}  p50 {r['p50']:7.3f}  p99 {r['p99']:7.3f}  max {r['max']:7.3f}")
    _print_feeds(result["feed_ms"])
    if result["calibration"]:
        costs = ", ".join(f"K={k} {v:.2f}" for k, v in result["calibration"]["step_cost_ms"].items())
        print(f"calibrated at start: batched step ms {costs}; critic "
              f"{result['calibration']['judge_ms_per_token']:.3f} ms per candidate token")
    if result["choice_ms"]:
        taken = np.array([a for a, _ in result["choice_ms"]])
        spare = np.array([b - a for a, b in result["choice_ms"]])
        print(f"best-of-K choices: candidates {result['candidates']}; took p50 {np.median(taken):.1f} ms, max "
              f"{taken.max():.1f} ms; time to spare before the answer min {spare.min():.1f} ms")
    print(f"answers {result['answers']} of {result['rounds']} rounds; lost in loopback "
          f"{result['loopback_ms']['lost']}")
    print(f"goals: absorb p99 <= 2 ms: session {'met' if result['absorb_session_ms']['p99'] <= 2 else 'NOT met'}, "
          f"model {'met' if result['absorb_model_ms']['p99'] <= 2 else 'NOT met'}; "
          f"send jitter p99 <= 1 ms: {'met' if result['send_late_ms']['p99'] <= 1 else 'NOT met'}")
    print(result["machine"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
