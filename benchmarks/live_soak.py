"""Soak: an hour of human performances played into `clara live`, cut into phrases with pauses for
Clara to answer and the next phrase interrupting her, with MIDI clock (in range, stopped, and a
1 kHz burst out of range) and garbage messages mixed in, through exactly the code `clara live`
runs (`run_live` with a played input and an output that checks every message).

What it reports: exceptions (the run must end by itself with status 0), notes left sounding after
the session ended (the output's own bookkeeping: an on without its off, all-notes-off aside),
malformed messages Clara sent, resident memory (RSS) a minute in and at the end (goal: growth under
10 %), the peak, and whether the saved session holds every note the player played (and its size: what
the session writer copies every 2 s). The session runs sped up (--speed, default 2: a performance at
150 bpm is heard at 300, the session's ceiling).

    python benchmarks/live_soak.py [--minutes 60] [--speed 2] [--seed 0] [--model DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import mido

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clara_live.config import load_config  # noqa: E402
from clara_live.live.app import LiveOptions, run_live  # noqa: E402
from clara_live.live.midi import CLOCK, CONTROL, DRUMS, NOTE_ON, START, STOP, OpenNotes, is_note_on  # noqa: E402
from clara_live.live.playback import TimedInput, performance  # noqa: E402

SHARED = REPO.parent / "shared"


def performances(minutes: float, rng: random.Random) -> list[Path]:
    """The MAESTRO excerpts, then ASAP performances in a seeded order, until `minutes` of music."""
    files = sorted((SHARED / "midi" / "maestro").glob("*.mid"))
    asap = SHARED / "corpus" / "asap"
    if (asap / "metadata.csv").exists():
        with open(asap / "metadata.csv", newline="") as handle:
            rows = sorted({row["midi_performance"] for row in csv.DictReader(handle) if row["midi_performance"]})
        rng.shuffle(rows)
        files += [asap / row for row in rows]
    chosen, total = [], 0.0
    for path in files:
        if total >= minutes * 60:
            break
        try:
            length = mido.MidiFile(str(path)).length
        except (OSError, ValueError, EOFError):
            continue
        chosen.append(path)
        total += length
    return chosen


def _chunks(events: list[tuple[float, list[int]]], rng: random.Random) -> list[list[tuple[float, list[int]]]]:
    """The performance cut into phrases of 4-20 s, each closing what it left held (keys and pedal)."""
    out, start = [], 0.0
    end_of_piece = events[-1][0] if events else 0.0
    while start < end_of_piece:
        stop = start + rng.uniform(4.0, 20.0)
        chunk = [(t - start, m) for t, m in events if start <= t < stop]
        held: OpenNotes = OpenNotes()
        for _, m in chunk:
            held.update(m)
        span = stop - start
        chunk += [(span, off) for off in held.close_all()]
        chunk.append((span, [CONTROL, 64, 0]))
        out.append(chunk)
        start = stop
    return out


def _garbage(rng: random.Random) -> list[int]:
    """A message no keyboard should send: a lone data byte, a sysex fragment, an undefined or truncated
    status, a note with data bytes out of range."""
    kind = rng.randrange(5)
    if kind == 0:
        return [rng.randrange(0x80)]
    if kind == 1:
        return [0xF0, *(rng.randrange(0x80) for _ in range(rng.randrange(4)))]
    if kind == 2:
        return [rng.choice([0xF4, 0xF5, 0xF7, 0xF9, 0xFD, 0xF1, 0xF2, 0xF3])]
    if kind == 3:
        return [rng.choice([0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0]) | rng.randrange(16)]
    return [NOTE_ON | rng.randrange(16), rng.randrange(128, 256), rng.randrange(256)]  # a key beyond 127


def program(paths: list[Path], rng: random.Random, speed: float,
            minutes: float) -> tuple[list[tuple[float, list[int]]], dict]:
    """The soak's input, `minutes` of music: phrases with pauses (0.3-5 s), clock runs, garbage; seconds
    from the start."""
    events, t, counts = [], 1.0, {"phrases": 0, "clock_runs": 0, "garbage": 0, "bursts": 0, "music_s": 0.0}
    chunks = (chunk for path in paths for chunk in _chunks(performance(path), rng))
    for chunk in chunks:
        if counts["music_s"] >= minutes * 60:
            break
        span = chunk[-1][0]
        events += [(t + dt, m) for dt, m in chunk]
        if rng.random() < 0.1:  # a MIDI clock runs under this phrase, then stops
            bpm = rng.uniform(60, 180)
            tick = 60.0 / bpm / 24
            events.append((t, [START]))
            events += [(t + k * tick, [CLOCK]) for k in range(int(span / tick))]
            events.append((t + span, [STOP]))
            counts["clock_runs"] += 1
        if rng.random() < 0.02:  # a broken clock: 1 kHz for a second
            events += [(t + k * 0.001, [CLOCK]) for k in range(1000)]
            counts["bursts"] += 1
        for _ in range(rng.randrange(3)):
            events.append((t + rng.uniform(0, span), _garbage(rng)))
            counts["garbage"] += 1
        t += span + rng.uniform(0.3, 5.0)
        counts["phrases"] += 1
        counts["music_s"] += span
    return sorted(((at / speed, m) for at, m in events), key=lambda e: e[0]), counts


class CheckingOutput:
    """An output that checks what Clara sends: well-formed messages, and every note closed."""

    name = "checking output"

    def __init__(self) -> None:
        self.sounding: OpenNotes = OpenNotes()
        self.sent = 0
        self.malformed: list[list[int]] = []
        self.lock = threading.Lock()

    def send(self, message) -> None:
        message = list(message)
        with self.lock:
            self.sent += 1
            if message[0] >= 0xF0:
                return
            if len(message) != 3 or not all(0 <= b < 128 for b in message[1:]):
                self.malformed.append(message)
                return
            self.sounding.update(message)  # an all-notes-off closes its channel

    def close(self) -> None:
        pass


def _rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def soak(minutes: float = 60.0, speed: float = 2.0, seed: int = 0, model: Path | None = None,
         warm: float = 60.0) -> dict:
    rng = random.Random(seed)
    paths = performances(minutes, rng)
    events, counts = program(paths, rng, speed, minutes)
    played_notes = sum(1 for _, m in events if len(m) == 3 and is_note_on(m) and m[1] < 128 and m[2] < 128
                       and m[0] & 0x0F != DRUMS)
    output = CheckingOutput()
    rss: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        begin = time.monotonic()
        while not stop.wait(1.0):
            rss.append((time.monotonic() - begin, _rss_kib()))

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory() as tmp:
        options = LiveOptions(model=model or REPO / "trained_models" / "clara-notewise", ui=False, save=True)
        config = load_config(overrides=["sampling.seed=7", f"live.sessions_dir={tmp}"])
        log = io.StringIO()
        start = time.monotonic()
        sampler.start()
        error = None
        try:
            status = run_live(options, config, out=log,
                              player=lambda sink: TimedInput(events, sink, name="soak"), output=output)
        except Exception as exc:  # the soak's verdict: an exception is a failure, reported, not raised
            status, error = 1, f"{exc.__class__.__name__}: {exc}"
        stop.set()
        wall = time.monotonic() - start
        [saved] = sorted(Path(tmp).glob("clara-session-*.mid"))
        session = mido.MidiFile(str(saved))
        saved_player = sum(1 for m in session.tracks[1] if m.type == "note_on" and m.velocity > 0)
        saved_clara = sum(1 for m in session.tracks[2] if m.type == "note_on" and m.velocity > 0)
        session_seconds = session.length
        session_bytes = saved.stat().st_size
    first = next((kib for t, kib in rss if t >= warm), rss[0][1] if rss else 0)
    last = rss[-1][1] if rss else 0
    return {
        "minutes_of_music": counts["music_s"] / 60, "files": len(paths),
        "speed": speed, "wall_s": wall, "status": status, "error": error, **counts,
        "events": len(events), "player_notes": played_notes, "saved_player_notes": saved_player,
        "saved_clara_notes": saved_clara, "session_seconds": session_seconds,
        "session_bytes": session_bytes,
        "clara_messages": output.sent, "malformed_sent": len(output.malformed),
        "left_sounding": len(output.sounding.open),
        "rss_kib_after_warmup": first, "rss_kib_end": last, "rss_growth": (last / first - 1) if first else None,
        "peak_rss_kib": _rss_kib("VmHWM"), "log_tail": log.getvalue().splitlines()[-3:],
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of music played in (default 60)")
    parser.add_argument("--speed", type=float, default=2.0, help="played this many times as fast (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    result = soak(args.minutes, args.speed, args.seed, args.model)
    for key, value in result.items():
        print(f"{key:24} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    ok = (result["status"] == 0 and result["error"] is None and result["left_sounding"] == 0
          and result["malformed_sent"] == 0 and result["saved_player_notes"] == result["player_notes"]
          and result["rss_growth"] is not None and result["rss_growth"] < 0.10)
    print("soak: passed" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
