"""A real JACK server for the live-port tests: `from jack_fixture import jack_server  # noqa: F401`.

Each test process (each pytest-xdist worker) starts its own named server with the dummy driver, so
workers never share ports, and points JACK_DEFAULT_SERVER at it, so in-process rtmidi clients and
subprocesses connect to it.

The server asks for realtime scheduling (-R) and runs without it where that is refused. Without it,
JACK's own threads can be starved by busy test threads, and a starved client misses whole cycles:
measured here, a 1000-message burst then lost contiguous blocks of ~10 messages in about one run in
six, with realtime scheduling never. `jack_realtime` says which case a test is in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 10.0  # seconds
STOP_TIMEOUT = 10.0  # seconds
PR_SET_PDEATHSIG = 1
# JACK keeps a machine-wide table of 8 servers in /dev/shm/jack-shm-registry; a server that dies without
# its clean shutdown keeps its row until a server of the same name starts again
REGISTRY_FULL = ("JACK's server table is full: servers killed uncleanly keep their row until a server of "
                 "the same name starts again; with no jackd running, removing /dev/shm/jack-shm-registry clears it")
_pids: dict[str, int] = {}  # server name -> jackd's process id
_logs: dict[str, Path] = {}  # server name -> jackd's log


def xruns(name: str) -> int:
    """How many cycles the server has logged as missed (XRuns) so far: a client, the tests' own
    included, that did not finish its period in time (a busy or starved machine)."""
    path = _logs.get(name)
    return path.read_text(errors="replace").count("XRun") if path is not None and path.exists() else 0


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, jackd gets SIGTERM should this test process die untidily."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(command: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _stop(proc: subprocess.Popen) -> bool:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; True if jackd shut down cleanly."""
    proc.terminate()
    try:
        return proc.wait(timeout=STOP_TIMEOUT) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def _wait_until_up(name: str, proc: subprocess.Popen) -> bool:
    """True once the server answers, False if jackd exits or START_TIMEOUT passes first."""
    jack_wait = shutil.which("jack_wait")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if jack_wait:
            # short waits, so a jackd that dies at once is noticed without waiting the whole timeout;
            # the client name carries the pid since libjack names client sockets by client, not server
            waiter = [jack_wait, "-s", name, "-n", f"wait-{os.getpid()}", "-w", "-t", "1"]
            done = subprocess.run(waiter, capture_output=True, text=True)
            if done.returncode == 0 and "available" in done.stdout:
                return True
        else:
            from clara_live.live.ports import MidiSystemError, resolve_api

            try:
                resolve_api("jack")
                return True
            except MidiSystemError:
                time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a running JACK server (dummy driver, 48 kHz, 64-frame periods) that
    JACK_DEFAULT_SERVER points to for the whole session.
    """
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.skip("jackd not installed: apt-get install jackd2")
    name = f"clara-test-{os.getpid()}"
    log_path = tmp_path_factory.mktemp("jack") / "jackd.log"
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    command = [jackd, "-R", "-n", name, "-d", "dummy", "-r", "48000", "-p", "64"]
    proc = _start(command, log_path)
    try:
        if not _wait_until_up(name, proc):
            status = "still running" if proc.poll() is None else f"exit status {proc.returncode}"
            log_text = log_path.read_text(errors="replace")[-4000:]
            hint = f"\n{REGISTRY_FULL}" if "Too many servers" in log_text else ""
            pytest.fail(f"{' '.join(command)} did not start within {START_TIMEOUT} s ({status}); "
                        f"its log {log_path}:\n{log_text}{hint}", pytrace=False)
        _pids[name] = proc.pid
        _logs[name] = log_path
        yield name
    finally:
        _pids.pop(name, None)
        _logs.pop(name, None)
        if not _stop(proc):
            # give back the server's row in JACK's table by starting and cleanly stopping one of that name
            again = _start(command, log_path)
            if _wait_until_up(name, again):
                _stop(again)
            else:
                again.kill()
                again.wait()
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous


@pytest.fixture(scope="session")
def jack_realtime(jack_server: str) -> bool:
    """Whether the session's JACK server got realtime scheduling for any of its threads (Linux only)."""
    tasks = f"/proc/{_pids[jack_server]}/task"
    if not hasattr(os, "sched_getscheduler") or not os.path.isdir(tasks):
        return False
    policies = set()
    for tid in os.listdir(tasks):
        with contextlib.suppress(OSError):
            policies.add(os.sched_getscheduler(int(tid)))
    return bool(policies & {os.SCHED_FIFO, os.SCHED_RR})
