"""`clara live` in its own process, as a user runs it, for the end-to-end tests:
`from live_process import LiveProcess`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import pytest
from conftest import REPO


class LiveProcess:
    """`clara live --save-dir DIR ARGS` in its own process, its output lines (stderr too) collected as
    they come. Every client it opens carries this test process's pid in its name: libjack names a
    client's socket by client name alone, and xdist workers each run their own server."""

    def __init__(self, tmp_path: Path, *args: str, env: dict | None = None, stdin=subprocess.DEVNULL,
                 sigint_ignored: bool = False) -> None:
        self.save_dir = tmp_path / "sessions"
        command = [sys.executable, "-m", "clara_live", "live", "--save-dir", str(self.save_dir),
                   "--set", f"live.client_name=clara-{os.getpid()}", *args]
        if sigint_ignored:  # started as a script's background job is: SIGINT ignored from the start
            command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=REPO, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> float:
        """When `text` was first seen (monotonic); fails if the process ends or timeout passes first."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None and not self._reader.is_alive():
                pytest.fail(f"clara live exited {self.proc.returncode} before {text!r}:\n{self.text}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} from clara live in {timeout} s:\n{self.text}")
            time.sleep(0.005)
        return time.monotonic()

    def heard(self, text: str, timeout: float) -> bool:
        """Whether clara live logs `text` within timeout (False, not a failure, if not)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return True

    def wait(self, timeout: float = 60.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # say where it stood: what it printed, and each thread's stack
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack, then it ends
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self._reader.join(timeout=5)
            said = self.text[-4000:]
            raise AssertionError(f"clara live did not exit within {timeout} s; its output:\n{said}") from None
        self._reader.join(timeout=5)
        return code

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def session(self) -> mido.MidiFile:
        """The one session file it saved."""
        [path] = sorted(self.save_dir.glob("clara-session-*.mid"))
        return mido.MidiFile(path)


class Studio:
    """The player (an output into 'Clara In') and the listener (an input from 'Clara Out') of a
    `clara live --virtual` over JACK; `name` prefixes their clients' names."""

    def __init__(self, name: str = "", beat: float = 0.5) -> None:
        from clara_live.live import ports

        api = ports.resolve_api("jack")
        self.beat = beat
        self.heard: list[tuple[float, list[int]]] = []
        self.listener = ports.InputPort(api, spec="Clara Out", client=f"{name}listener-{os.getpid()}",
                                        sink=lambda m, t: self.heard.append((t, m)))
        self.player = ports.OutputPort(api, spec="Clara In", client=f"{name}player-{os.getpid()}")

    def play(self, pitches: list[int], start: float, length: float = 0.45, velocity: int = 90) -> float:
        """One note a beat from `start` (monotonic); returns the last release time."""
        released = start
        for k, pitch in enumerate(pitches):
            sleep_until(start + k * self.beat)
            self.player.send([0x90, pitch, velocity])
            sleep_until(start + k * self.beat + length)
            self.player.send([0x80, pitch, 0])
            released = time.monotonic()
        return released

    def clara(self, after: float = 0.0, channel: int = 0) -> list[tuple[float, list[int]]]:
        """What Clara sent on `channel` from `after` on (channel messages only)."""
        return [(t, m) for t, m in list(self.heard) if t >= after and m[0] & 0x0F == channel and m[0] < 0xF0]

    def close(self) -> None:
        self.listener.close()
        self.player.close()


def sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.002))
