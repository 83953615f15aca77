"""Two Ableton Link peers on one machine (live/link.py's LinkClock, one in this process and one in a
child process): how closely they agree on the tempo and the beat. Needs the link extra
(`pip install -e '.[link]'`: aalink, GPL-3.0-or-later).

Once the two see each other, the child sets the tempo. Then, SAMPLES times, this process asks the
child for its timeline (its tempo, its beat and the monotonic time of that read: one clock for every
process on the machine) and reads its own straight after; the phase difference is this process's
beat at the child's time less the child's beat, within Link's bar, in milliseconds at the tempo.
Goal (issue 23): within 0.1 bpm and 5 ms.

    python benchmarks/link_peers.py [--samples N] [--bpm BPM] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clara_live.live.link import LinkClock  # noqa: E402
from clara_live.live.tempo import LinkState  # noqa: E402

QUANTUM = 4.0
FIND_TIMEOUT = 10.0  # seconds for the two peers to find each other
TEMPO_TIMEOUT = 5.0  # ... and for the tempo the child set to reach this process


def peer_main() -> int:
    """The child: a LinkClock driven by lines on stdin (`state`, `tempo BPM`), answering on stdout
    (`ready` once joined; a state as JSON [bpm, beat, at, peers]); stdin's end closes it."""
    with LinkClock(120.0, QUANTUM) as link:
        print("ready", flush=True)
        for line in sys.stdin:
            word, _, arg = line.strip().partition(" ")
            if word == "state":
                print(json.dumps(list(link.state())), flush=True)
            elif word == "tempo":
                link.set_tempo(float(arg))
                print("ok", flush=True)
    return 0


class Peer:
    """The child peer (this script with --peer), as a context manager."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--peer"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO)
        if self._read() != "ready":
            self.close()
            raise RuntimeError("the Link peer did not start")

    def _read(self) -> str:
        return self.proc.stdout.readline().strip()

    def _ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def state(self) -> LinkState:
        return LinkState(*json.loads(self._ask("state")))

    def set_tempo(self, bpm: float) -> None:
        self._ask(f"tempo {bpm!r}")

    def close(self) -> int:
        """Close the child's stdin (it leaves the session) and wait for it; its exit status."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def until(check, timeout: float) -> bool:
    """Poll check every 10 ms until it is true or timeout seconds have passed; whether it came true."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def phase_ms(here: LinkState, there: LinkState, quantum: float = QUANTUM) -> float:
    """Milliseconds by which `here` is ahead of `there` at there's time (within a bar of quantum beats)."""
    off = (here.beat_at(there.at) - there.beat + quantum / 2) % quantum - quantum / 2
    return off * 60_000.0 / there.bpm


def measure(link: LinkClock, peer: Peer, bpm: float, samples: int) -> dict:
    """Find each other, the child sets bpm, then `samples` paired reads (see the module docstring)."""
    start = time.monotonic()
    if not until(lambda: link.state().peers >= 1 and peer.state().peers >= 1, FIND_TIMEOUT):
        raise TimeoutError(f"the two Link peers did not find each other in {FIND_TIMEOUT:g} s")
    found = time.monotonic() - start
    peer.set_tempo(bpm)
    if not until(lambda: abs(link.state().bpm - bpm) < 0.1, TEMPO_TIMEOUT):
        raise TimeoutError(f"the tempo the peer set did not arrive in {TEMPO_TIMEOUT:g} s")
    bpm_off, phases = [], []
    for _ in range(samples):
        there = peer.state()
        here = link.state()
        bpm_off.append(abs(here.bpm - there.bpm))
        phases.append(phase_ms(here, there))
    return {"samples": samples, "found_s": found, "bpm_set": bpm, "bpm_here": here.bpm, "bpm_there": there.bpm,
            "bpm_off_max": max(bpm_off), "phase_ms_median": statistics.median(abs(p) for p in phases),
            "phase_ms_max": max(abs(p) for p in phases), "phase_ms_mean": statistics.fmean(phases)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--bpm", type=float, default=133.3, help="the tempo the child sets")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.peer:
        return peer_main()
    with LinkClock(100.0, QUANTUM) as link, Peer() as peer:
        result = measure(link, peer, args.bpm, args.samples)
    result["machine"] = (f"{platform.system()} {platform.release()} {platform.machine()}, "
                         f"Python {platform.python_version()}")
    print(f"two Link peers ({result['machine']}): found each other in {result['found_s']:.2f} s; tempo "
          f"{result['bpm_there']:.4f} there, {result['bpm_here']:.4f} here "
          f"(off at most {result['bpm_off_max']:.4f} bpm); "
          f"beat phase over {args.samples} samples: median {result['phase_ms_median']:.4f} ms, "
          f"max {result['phase_ms_max']:.4f} ms (mean, signed: {result['phase_ms_mean']:+.4f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
