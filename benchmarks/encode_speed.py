"""Encoding speed: our notewise encoder against miditok's MIDILike on the same MIDI files.

What it measures: the whole way from a MIDI file on disk to a list of tokens, file read
included on both sides, one file after another in one process and one thread.
- ours: read_music(path) -> to_steps(piece, CodecConfig()) -> NotewiseCodec.encode
  (the default codec: notewise, sample_freq 12, sustain pedal on);
- theirs: miditok.MIDILike(TokenizerConfig(use_sustain_pedals=True)).encode(path),
  the way a miditok user tokenizes a file.
Both are warmed up with one pass over the files, then timed whole pass by whole pass,
interleaved within each repeat (the order alternates) so drift on the machine hits both
alike. The best pass of each side gives files/s and the ratio ours/theirs. A file that any
side cannot read is left out of every measurement and listed: miditok 3.1.0's MIDILike
raises KeyError 'Pedal_1' for a pedalled track whose program is not 0 unless use_programs
is set (6 of the 302 default files).

After the warm-up the objects alive so far (modules, miditok's vocabulary: ~190k objects,
~155k of them miditok's) are moved out of the garbage collector's reach with gc.freeze().
Otherwise each full collection, triggered by either side's per-note garbage, walks them all:
that slows both sides by about a third, leaves the ratio about the same, and is not what a
process running one encoder pays (--no-gc-freeze measures it anyway). Per-file garbage is
still collected on both sides.

A second measurement justifies the symusic dependency: parsing each file with mido only
(mido.MidiFile) against symusic (symusic.Score), reported as mido time / symusic time.

Goal (issue 2): ours at least 2x the files/s of MIDILike.

Run it from the repository root (needs the bench extra: pip install -e '.[bench]'):
    python benchmarks/encode_speed.py              # all files, 3 repeats
    python benchmarks/encode_speed.py --files 50 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_SOURCES = ((SHARED / "corpus" / "piano-midi-de", "*/*.mid"), (SHARED / "midi" / "maestro", "*.mid"))
GOAL = 2.0  # ours / theirs, in files per second

Encoder = Callable[[Path], int]  # a file -> how many tokens (or messages) it gave


def default_files() -> list[Path]:
    return [path for folder, pattern in DEFAULT_SOURCES for path in sorted(folder.glob(pattern))]


def ours() -> Encoder:
    from clara_live.codec import make_codec, to_steps
    from clara_live.config import CodecConfig
    from clara_live.music.read import read_music

    config = CodecConfig()
    codec = make_codec(config)

    def encode(path: Path) -> int:
        return len(codec.encode(to_steps(read_music(path, config.sustain_pedal), config)))

    return encode


def theirs() -> Encoder:
    from miditok import MIDILike, TokenizerConfig

    tokenizer = MIDILike(TokenizerConfig(use_sustain_pedals=True))

    def encode(path: Path) -> int:
        sequences = tokenizer.encode(path)  # one TokSequence per track without use_programs
        if not isinstance(sequences, list):
            sequences = [sequences]
        return sum(len(seq) for seq in sequences)

    return encode


def mido_parse() -> Encoder:
    import mido

    return lambda path: sum(len(track) for track in mido.MidiFile(path).tracks)


def symusic_parse() -> Encoder:
    import symusic

    def parse(path: Path) -> int:
        score = symusic.Score(str(path))
        return sum(len(t.notes) + len(t.controls) + len(t.pedals) for t in score.tracks)

    return parse


def usable(files: list[Path], encoders: dict[str, Encoder]) -> tuple[list[Path], list[str]]:
    """Files every encoder can read (this pass is also the warm-up), and why the others fail."""
    kept, dropped = [], []
    for path in files:
        failures = []
        for name, encode in encoders.items():
            try:
                encode(path)
            except Exception as exc:  # a benchmark compares like with like: skip, and say why
                failures.append(f"{name}: {type(exc).__name__} {exc}")
        if failures:
            dropped.append(f"{path.relative_to(SHARED) if path.is_relative_to(SHARED) else path}: "
                           + "; ".join(failures))
        else:
            kept.append(path)
    return kept, dropped


def one_pass(encode: Encoder, files: list[Path]) -> tuple[float, int]:
    """Seconds for a whole pass over files, and the count the encoder reported."""
    count = 0
    start = time.perf_counter()
    for path in files:
        count += encode(path)
    return time.perf_counter() - start, count


def race(encoders: dict[str, Encoder], files: list[Path], repeat: int) -> dict[str, dict]:
    """Time whole passes of each encoder, interleaved per repeat, the order alternating."""
    times: dict[str, list[float]] = {name: [] for name in encoders}
    counts: dict[str, int] = {}
    names = list(encoders)
    for r in range(repeat):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds, count = one_pass(encoders[name], files)
            if counts.setdefault(name, count) != count:
                raise RuntimeError(f"{name} counted {counts[name]}, then {count}: not deterministic")
            times[name].append(seconds)
    return {name: {"best_s": min(times[name]), "median_s": statistics.median(times[name]),
                   "passes_s": times[name], "files_per_s": len(files) / min(times[name]),
                   "ms_per_file": 1000 * min(times[name]) / len(files), "count": counts[name]}
            for name in names}


def machine() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu, "nproc": cores,
            "python": platform.python_version()}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("clara-live", "miditok", "symusic", "mido"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def revision() -> str:
    """The commit measured, with "+ uncommitted changes" when the package differs from it."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "clara_live"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} + uncommitted changes to clara_live" if dirty else commit


def report(result: dict) -> str:
    m, enc, parse = result["machine"], result["encode"], result["parse"]
    rows = [("encode: ours (notewise)", enc["ours"], "tokens"),
            ("encode: theirs (MIDILike)", enc["theirs"], "tokens"),
            ("parse: mido.MidiFile", parse["mido"], "messages"),
            ("parse: symusic.Score", parse["symusic"], "events")]
    lines = [f"command: {result['command']}",
             f"machine: {m['platform']}; {m['cpu']}; nproc {m['nproc']}; python {m['python']}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
             f"revision: {result['revision']}",
             f"files: {result['files']} ({len(result['dropped'])} dropped), best of {result['repeat']} passes, "
             f"gc.freeze after warm-up: {'yes' if result['gc_freeze'] else 'no'}",
             "",
             f"{'':27} {'files/s':>9} {'ms/file':>9} {'best s':>8} {'median s':>9}  count",
             f"{'-' * 27} {'-' * 9} {'-' * 9} {'-' * 8} {'-' * 9}  {'-' * 18}"]
    for label, row, unit in rows:
        lines.append(f"{label:27} {row['files_per_s']:9.1f} {row['ms_per_file']:9.2f} {row['best_s']:8.3f} "
                     f"{row['median_s']:9.3f}  {row['count']:,} {unit}")
    verdict = "PASS" if result["passed"] else "FAIL"
    lines += ["",
              f"encode speed ours/theirs: {result['ratio']:.2f}x (median passes {result['ratio_median']:.2f}x); "
              f"goal >= {GOAL:g}x: {verdict}",
              f"parse time mido/symusic: {result['parse_ratio']:.1f}x"]
    lines += [f"dropped {d}" for d in result["dropped"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Notewise encoding speed against miditok MIDILike.")
    parser.add_argument("--files", type=int, default=0, metavar="N", help="use the first N files (default all)")
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="timed passes per side (default 3)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="leave the warm-up's objects to the garbage collector (see the docstring)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.files < 0:
        parser.error("--repeat must be at least 1 and --files 0 or more")
    try:
        import miditok  # noqa: F401
    except ImportError:
        print("encode_speed: miditok is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    files = default_files()
    if args.files:
        files = files[:args.files]
    if not files:
        print(f"encode_speed: no MIDI files under {SHARED}", file=sys.stderr)
        return 2

    encoders = {"ours": ours(), "theirs": theirs()}
    parsers = {"mido": mido_parse(), "symusic": symusic_parse()}
    kept, dropped = usable(files, {**encoders, **parsers})  # the warm-up pass
    if not kept:
        print("encode_speed: no file could be read by every side", file=sys.stderr)
        return 2
    if not args.no_gc_freeze:
        gc.collect()
        gc.freeze()
    encode = race(encoders, kept, args.repeat)
    parse = race(parsers, kept, args.repeat)
    ratio = encode["ours"]["files_per_s"] / encode["theirs"]["files_per_s"]
    result = {
        "command": " ".join(["python benchmarks/encode_speed.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(), "versions": versions(), "revision": revision(),
        "files": len(kept), "dropped": dropped, "repeat": args.repeat, "gc_freeze": not args.no_gc_freeze,
        "encode": encode, "parse": parse,
        "ratio": ratio, "ratio_median": encode["theirs"]["median_s"] / encode["ours"]["median_s"],
        "goal": GOAL, "passed": ratio >= GOAL,
        "parse_ratio": parse["mido"]["best_s"] / parse["symusic"]["best_s"],
    }
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
