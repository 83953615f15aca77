"""How fast `clara live` notices a lost JACK server, and how much of a session a SIGKILL loses.

1. Lost server: a JACK server of its own (dummy driver), `clara live --virtual` on it; the server is
   stopped (SIGTERM) or killed (SIGKILL); measured from the moment jackd has exited to `clara live`
   printing "session saved" and to its exit. Goal: within 1 s, the session saved.
2. SIGKILL: `clara live --play` a MAESTRO performance (no audio: live.audio_driver none), killed with
   SIGKILL at a random moment 4-12 s in; lost = the time from the last note saved to the last note
   the file had played by the kill. Goal: at most 5 s (the session is written every 2 s).
3. Exit: how long a process that imported torch takes to exit after its last line, as it is and with
   what it loaded frozen out of the collector's reach (gc.freeze, as run_live does): the interpreter's
   closing collections walk torch's objects otherwise.

    python benchmarks/live_failures.py [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mido

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from live_latency import _start_jack  # noqa: E402 - the same JACK server as the latency benchmark

from clara_live.live.midi import is_note_on  # noqa: E402
from clara_live.live.playback import performance  # noqa: E402

MAESTRO = REPO.parent / "shared" / "midi" / "maestro" / "maestro_1.mid"


class Live:
    def __init__(self, args: list[str], env: dict, save_dir: Path) -> None:
        command = [sys.executable, "-m", "clara_live", "live", "--no-ui", "--save-dir", str(save_dir), *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        self.seen: dict[str, float] = {}
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            for key in ("clara live ready", "session saved"):
                if key in line and key not in self.seen:
                    self.seen[key] = time.monotonic()

    def wait_for(self, key: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while key not in self.seen:
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._reader.is_alive()):
                raise RuntimeError(f"no {key!r}: " + "\n".join(self.lines[-10:]))
            time.sleep(0.002)
        return self.seen[key]


def lost_server(how: str, tmp: Path) -> dict:
    name = f"clara-bench-{os.getpid()}"
    server = _start_jack(name, 64)
    try:
        live = Live(["--midi-api", "jack", "--virtual"], {"JACK_DEFAULT_SERVER": name}, tmp)
        live.wait_for("clara live ready")
        time.sleep(2.0)
        server.send_signal(signal.SIGTERM if how == "stop" else signal.SIGKILL)
        server.wait()
        gone = time.monotonic()
        saved = live.wait_for("session saved", 30) - gone
        live.proc.wait(30)
        return {"how": how, "saved_s": saved, "exit_s": time.monotonic() - gone, "status": live.proc.returncode,
                "said": next((line for line in live.lines if line.startswith("clara: error:")), None)}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if how == "kill":  # give back the server's row in JACK's table: start and stop one of that name
            again = _start_jack(name, 64)
            again.terminate()
            again.wait()


def sigkill_loss(rng: random.Random, tmp: Path) -> dict:
    live = Live(["--play", str(MAESTRO), "--midi-api", "jack", "--set", "live.audio_driver=none"],
                {"JACK_DEFAULT_SERVER": "nobody-runs-this", "JACK_NO_START_SERVER": "1"}, tmp)
    ready = live.wait_for("clara live ready")
    after = rng.uniform(4.0, 12.0)
    time.sleep(after)
    killed = time.monotonic()
    live.proc.send_signal(signal.SIGKILL)
    live.proc.wait()
    [path] = sorted(tmp.glob("clara-session-*.mid"))
    midi = mido.MidiFile(str(path))
    saved = sum(1 for m in midi.tracks[1] if m.type == "note_on" and m.velocity > 0)
    onsets = [t for t, m in performance(MAESTRO) if is_note_on(m)]
    played = [t for t in onsets if t <= killed - ready]
    last_saved = onsets[saved - 1] if saved else 0.0
    return {"killed_after_s": killed - ready, "notes_played": len(played), "notes_saved": saved,
            "lost_s": (played[-1] - last_saved) if played else 0.0}


def torch_exit(freeze: bool) -> float:
    """Seconds from a process's last line to its exit, having imported torch (and frozen it, if freeze)."""
    code = "import gc, torch\n" + ("gc.collect()\ngc.freeze()\n" if freeze else "") + "print('ready', flush=True)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    proc.stdout.readline()
    ready = time.monotonic()
    proc.wait()
    return time.monotonic() - ready


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(0)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                     "lost_server": [], "sigkill": [], "torch_exit": {"plain": [], "frozen": []}}
    for k in range(args.rounds):
        for how in ("stop", "kill"):
            with tempfile.TemporaryDirectory() as tmp:
                results["lost_server"].append(lost_server(how, Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            results["sigkill"].append(sigkill_loss(rng, Path(tmp)))
        for how, exits in results["torch_exit"].items():
            exits.append(torch_exit(freeze=how == "frozen"))
        print(f"round {k + 1}: {results['lost_server'][-2:]} {results['sigkill'][-1]}", flush=True)
    saved = [r["saved_s"] for r in results["lost_server"]]
    exits = [r["exit_s"] for r in results["lost_server"]]
    lost = [r["lost_s"] for r in results["sigkill"]]
    print(f"lost JACK server -> session saved: max {max(saved):.2f} s, mean {sum(saved) / len(saved):.2f} s; "
          f"-> exited: max {max(exits):.2f} s, mean {sum(exits) / len(exits):.2f} s; over {len(saved)} (stop and "
          f"kill); status {sorted({r['status'] for r in results['lost_server']})}")
    print(f"SIGKILL: at most {max(lost):.2f} s of playing lost (mean {sum(lost) / len(lost):.2f} s) over {len(lost)}")
    plain, frozen = results["torch_exit"]["plain"], results["torch_exit"]["frozen"]
    print(f"a process that imported torch exits {sum(plain) / len(plain):.2f} s after its last line (max "
          f"{max(plain):.2f} s), {sum(frozen) / len(frozen):.2f} s (max {max(frozen):.2f} s) with it frozen "
          f"(gc.freeze) over {len(plain)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
