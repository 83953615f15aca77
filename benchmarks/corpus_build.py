"""How long `clara corpus` takes: a build from an empty cache against the same build from the cache.

Runs the build of the given sources (what `clara corpus SOURCE... -o OUT` runs) in this process
with the project's config, up to twice in the same run: first into a fresh, empty cache folder
(every file read and encoded; skipped with --warm-only), then again from the cache the user's
builds keep (`corpus.cache`, default ~/.cache/clara-live/corpus): after one full build every file
comes from it. Reports each build's wall time, files, files read from the cache, and the ratio.

The goal of issue 13: a build of every corpus in ../shared under 20 minutes on 2 cores once the
first (cached) build has run. The first build of the MusicXML corpora takes hours (music21), so
measure it once with `--warm-only` after a `clara corpus` of the same sources has filled the
cache; files not yet in the cache are encoded (and cached) by the warm build, and counted.

    python benchmarks/corpus_build.py ../shared/corpus/piano-midi-de ../shared/corpus/asap \\
        ../shared/corpus/pianolatron ../shared/corpus/pop909 [--warm-only] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clara_live.config import load_config  # noqa: E402
from clara_live.corpus import build_corpus, cache_folder  # noqa: E402
from clara_live.errors import ClaraError  # noqa: E402


def timed_build(sources: list[str], cache: str, overrides: list[str]) -> dict:
    config = load_config(overrides=[*overrides, f"corpus.cache={cache}"])
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        manifest = build_corpus(sources, out, config, progress=False)
        seconds = time.perf_counter() - began
    skipped = manifest.get("skipped", [])
    files = len(manifest["pieces"]) + len(skipped)
    tokens = sum(s["tokens"] for s in manifest["splits"].values())
    return {"seconds": seconds, "files": files, "from_cache": manifest.get("cached", 0),
            "skipped": len(skipped), "tokens": tokens,
            "skipped_by_reason": dict(Counter(item["reason"].removeprefix(f"{item['source']}: ").split(" (")[0]
                                              for item in skipped)),
            "splits": {name: {"pieces": s["pieces"], "works": s["works"]} for name, s in manifest["splits"].items()},
            "joins": len(manifest.get("matches", []))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="what `clara corpus` reads: corpus folders, files")
    parser.add_argument("--warm-only", action="store_true", help="time only the build from the user's cache")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    warm_cache = cache_folder(load_config(overrides=args.overrides))
    if not warm_cache:
        parser.error("corpus.cache is off: there is no cached build to time")
    result = {"command": " ".join(["python", "benchmarks/corpus_build.py", *(argv or sys.argv[1:])]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "sources": args.sources}
    try:
        if not args.warm_only:
            with tempfile.TemporaryDirectory() as empty:
                result["cold"] = timed_build(args.sources, empty, args.overrides)
        result["cached"] = timed_build(args.sources, warm_cache, args.overrides)
    except ClaraError as exc:
        print(f"corpus_build: {exc}", file=sys.stderr)
        return 2
    for name in ("cold", "cached"):
        if name in result:
            r = result[name]
            print(f"{name:7s} {r['seconds']:8.1f} s  {r['files']:6d} files, {r['from_cache']:6d} from the cache, "
                  f"{r['skipped']} skipped, {r['tokens']:,} tokens")
            reasons = ", ".join(f"{n} {why}" for why, n in r["skipped_by_reason"].items())
            print(f"        skipped: {reasons or 'none'}")
            print("        split: " + ", ".join(f"{name} {s['pieces']} pieces in {s['works']} works"
                                             for name, s in r["splits"].items()) + f"; {r['joins']} joins")
    if "cold" in result:
        ratio = result["cold"]["seconds"] / max(result["cached"]["seconds"], 1e-9)
        result["cold_over_cached"] = ratio
        print(f"from the cache: {ratio:.1f}x faster than from nothing")
    minutes = result["cached"]["seconds"] / 60
    print(f"goal: a cached build under 20 minutes: {minutes:.1f} min, {'met' if minutes < 20 else 'NOT MET'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
