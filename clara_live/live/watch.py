"""Noticing that the MIDI system or a port went away, so a session ends instead of playing into nothing.

rtmidi says nothing when a JACK server stops: its clients keep their stale port lists and `send`
goes on filling a ring buffer nobody drains. `JackServerWatch` is a small JACK client of our own,
through libjack (ctypes), whose shutdown callback JACK calls when the server goes, however it goes.
`Watchdog` is a thread that every PERIOD seconds asks each check whether what it watches is still
there (the server watch, a keyboard's port, FluidSynth's process) and keeps the first reason it
hears in `lost`; the session's loop reads that attribute each tick and ends within a second. The
server watch wakes it at once (`wake`), so a stopped server is heard within milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections import deque
from collections.abc import Callable

PERIOD = 0.2  # seconds between checks
JACK_NO_START_SERVER = 0x01
Check = Callable[[], "str | None"]  # None while all is well, else the one-line reason

_INFO_SHUTDOWN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_callbacks: list = []  # every shutdown callback given to libjack, for the life of the process
_said: deque[str] = deque(maxlen=20)  # libjack's last messages, kept instead of printed over the view


@_MESSAGE
def _keep(text: bytes | None) -> None:  # module-level: libjack may call it as long as the process lives
    _said.append((text or b"").decode("utf-8", "replace"))


def _libjack() -> ctypes.CDLL | None:
    """The libjack this process already uses (python-rtmidi's wheel carries its own copy, whose error
    printer is the one to quiet), else the system's."""
    names = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        names = sorted({path for path in (line.split()[-1] for line in maps)
                        if os.path.basename(path).startswith("libjack") and ".so" in path})
    for name in [*names, ctypes.util.find_library("jack") or "libjack.so.0"]:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class JackServerWatch:
    """A JACK client that only listens for the server's shutdown; `lost` is the reason once it went.
    Raises OSError when libjack is missing or no server answers."""

    def __init__(self) -> None:
        lib = _libjack()
        if lib is None:
            raise OSError("libjack not found")
        lib.jack_client_open.restype = ctypes.c_void_p
        lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.jack_on_info_shutdown.argtypes = [ctypes.c_void_p, _INFO_SHUTDOWN, ctypes.c_void_p]
        lib.jack_activate.argtypes = [ctypes.c_void_p]
        lib.jack_client_close.argtypes = [ctypes.c_void_p]
        # libjack prints its errors ("Cannot read socket", "Server is not running") to the terminal, over
        # the view; the session says in one line of its own what happened
        lib.jack_set_error_function.argtypes = lib.jack_set_info_function.argtypes = [_MESSAGE]
        lib.jack_set_error_function(_keep)
        lib.jack_set_info_function(_keep)
        self._lib = lib
        self.lost: str | None = None
        self.on_lost: Callable[[], None] | None = None  # called on libjack's thread once the server went
        status = ctypes.c_int(0)
        # the pid in the name: libjack names each client's socket by client name, whatever the server
        client = lib.jack_client_open(f"clara-watch-{os.getpid()}".encode(), JACK_NO_START_SERVER,
                                      ctypes.byref(status))
        if not client:
            raise OSError(f"no JACK server answers (status {status.value:#x})")
        self._client = client
        # kept alive as long as JACK may call it: with the process, not the watch (a client left open by
        # an exception would call freed memory when its server stops)
        self._callback = _INFO_SHUTDOWN(self._shutdown)
        _callbacks.append(self._callback)
        lib.jack_on_info_shutdown(client, self._callback, None)
        lib.jack_activate(client)

    def _shutdown(self, code: int, reason: bytes | None, arg: int | None) -> None:  # noqa: ARG002 - JACK's signature
        text = (reason or b"").decode("utf-8", "replace").strip()
        self.lost = "the JACK server stopped" + (f" ({text})" if text else "")
        if self.on_lost is not None:
            self.on_lost()

    def check(self) -> str | None:
        return self.lost

    def close(self) -> None:
        """Leave the server (nothing to do once it is gone); safe to call again."""
        client, self._client = self._client, None
        if client and self.lost is None:
            with contextlib.suppress(Exception):
                self._lib.jack_client_close(client)


class Watchdog:
    """Runs every check each PERIOD seconds, or at once when woken, on a thread; `lost` holds the first
    reason one gave."""

    def __init__(self, checks: list[Check], period: float = PERIOD) -> None:
        self.checks = checks
        self.period = period
        self.lost: str | None = None
        self._closing = False
        self._due = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clara-watchdog", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the checks now, not at the end of the period (from any thread)."""
        self._due.set()

    def _run(self) -> None:
        while self.lost is None:
            self._due.wait(self.period)
            self._due.clear()
            if self._closing:
                return
            for check in self.checks:
                try:
                    reason = check()
                except Exception as exc:  # a check that fails is itself a sign the system went
                    reason = f"{exc.__class__.__name__}: {exc}"
                if reason:
                    self.lost = reason
                    return

    def close(self) -> None:
        self._closing = True
        self._due.set()
        self._thread.join(1.0)
