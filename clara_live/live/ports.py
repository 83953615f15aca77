"""MIDI ports over python-rtmidi: the only module that imports rtmidi.

Input is read by a dedicated thread that polls `get_message()` and timestamps each message on arrival
(seconds, `time.monotonic()`). rtmidi's callbacks are never used: under GIL pressure from other Python
threads they lost and reordered messages, where a polling reader kept 1000 of 1000 in order.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import rtmidi

from clara_live.errors import ClaraError
from clara_live.live.port_names import called, find_port

API_NAMES = ("auto", "alsa", "jack", "coremidi", "winmm")
_APIS = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK,
         "coremidi": rtmidi.API_MACOSX_CORE, "winmm": rtmidi.API_WINDOWS_MM}
_LABELS = {api: name for name, api in _APIS.items()}
_AUTO = {"darwin": ("coremidi", "jack"), "win32": ("winmm",)}  # elsewhere ("alsa", "jack")
_ALSA_SEQ = "/dev/snd/seq"
_JACK_SETTLE = 0.05  # seconds to wait before unregistering a JACK port, see _release
Sink = Callable[[list[int], float], None]
_abandoned: list = []  # rtmidi clients of a MIDI system that went away, never closed: see OutputPort.abandon


class MidiSystemError(ClaraError):
    """No usable MIDI system (not compiled into python-rtmidi, or not running); the message says how to get one."""


def api_label(api: int) -> str:
    """The short name of an rtmidi API constant ("jack", "alsa", ...), for messages."""
    return _LABELS.get(api) or rtmidi.get_api_name(api)


def _helper_name(role: str) -> str:
    """A short-lived client's name. It carries the pid because libjack binds each client's socket at
    /dev/shm/jack_<client>_<uid>_0 whatever the server: same-named clients of two servers collide."""
    return f"clara-{role}-{os.getpid()}"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: libjack and alsa-lib print to it when a probe fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _why_unusable(api: int) -> str | None:
    """None when a client of api can be created now, else the one-line reason it cannot."""
    if api not in rtmidi.get_compiled_api():
        compiled = ", ".join(api_label(a) for a in rtmidi.get_compiled_api())
        return f"it is not compiled into python-rtmidi (compiled: {compiled})"
    if api == rtmidi.API_LINUX_ALSA and not os.path.exists(_ALSA_SEQ):
        return f"{_ALSA_SEQ} is missing (load the ALSA sequencer: modprobe snd-seq)"
    try:
        # creating a client connects to the server; rtmidi never starts a JACK server itself
        _client(rtmidi.MidiIn, api, _helper_name("probe")).delete()
    except MidiSystemError as err:
        if api == rtmidi.API_UNIX_JACK:
            server = os.environ.get("JACK_DEFAULT_SERVER", "default")
            return f"no JACK server {server!r} answers; start a JACK server: jackd -d dummy &"
        return str(err.__cause__ or err)
    return None


def resolve_api(name: str) -> int:
    """The rtmidi API constant for a name in API_NAMES, checked to be usable right now.

    "auto" picks ALSA on Linux when its sequencer works, else a running JACK server; CoreMIDI on
    macOS; WinMM on Windows. Raises MidiSystemError when the chosen system is not usable."""
    if name not in API_NAMES:
        raise ClaraError(f"unknown MIDI system {name!r}: choose one of {', '.join(API_NAMES)}")
    if name != "auto":
        why = _why_unusable(_APIS[name])
        if why:
            raise MidiSystemError(f"MIDI system {name} is not usable: {why}")
        return _APIS[name]
    reasons = []
    for candidate in _AUTO.get(sys.platform, ("alsa", "jack")):
        why = _why_unusable(_APIS[candidate])
        if why is None:
            return _APIS[candidate]
        reasons.append(f"{candidate}: {why}")
    raise MidiSystemError(f"no MIDI system found ({'; '.join(reasons)})")


def _client(cls: type, api: int, client: str) -> rtmidi.MidiIn | rtmidi.MidiOut:
    try:
        with _quiet_stderr():
            return cls(api, client)
    except rtmidi.RtMidiError as err:
        raise MidiSystemError(f"MIDI system {api_label(api)} is not usable: {err}") from err


def _port_names(cls: type, api: int) -> list[str]:
    """The ports a client of cls sees: sources for MidiIn, destinations for MidiOut (~35 ms each on JACK)."""
    midi = _client(cls, api, _helper_name("list"))
    try:
        return midi.get_ports()
    finally:
        midi.delete()


def list_ports(api: int) -> tuple[list[str], list[str]]:
    """The names of the ports one can read from (inputs) and write to (outputs), in index order."""
    return _port_names(rtmidi.MidiIn, api), _port_names(rtmidi.MidiOut, api)


def _virtual_names(api: int, kind: str, virtual: str) -> list[str]:
    """The full names others see of every port called `virtual` ("clara:Clara In" on JACK,
    "clara:Clara In 128:0" on ALSA), ours or another program's."""
    return called(_port_names(rtmidi.MidiOut if kind == "input" else rtmidi.MidiIn, api), virtual)


def _virtual_name(api: int, kind: str, virtual: str, client: str, before: list[str]) -> str:
    """The full name of the virtual port we just opened: the one that was not there before (JACK renames
    a second client "clara" to "clara-01", so a second session's port is not the first one's)."""
    new = [n for n in _virtual_names(api, kind, virtual) if n not in before]
    return new[0] if len(new) == 1 else f"{client}:{virtual}"


def _open(cls: type, api: int, spec: str | None, virtual: str | None, client: str, kind: str) -> tuple:
    """A client of cls with one port opened (spec via find_port, or a virtual one), and that port's name."""
    if (spec is None) == (virtual is None):
        raise ValueError("give exactly one of spec (an existing port) or virtual (a port to create)")
    midi = _client(cls, api, client)
    try:
        if virtual is not None:
            before = _virtual_names(api, kind, virtual)
            midi.open_virtual_port(virtual)
            return midi, _virtual_name(api, kind, virtual, client, before)
        names = midi.get_ports()
        index = find_port(names, spec, kind)
        midi.open_port(index, kind)
        return midi, names[index]
    except rtmidi.RtMidiError as err:
        midi.delete()
        raise ClaraError(f"cannot open MIDI {kind} port {spec or virtual!r}: {err}") from None
    except BaseException:
        midi.delete()
        raise


def _release(midi: rtmidi.MidiIn | rtmidi.MidiOut) -> None:
    """Close the port and delete the client (a virtual port only disappears with its client).

    libjack walks a client's port list on its notification thread without a lock (jackaudio/jack2#216):
    unregistering a port while it handles a graph change made just before (closing the other port, say)
    crashed the process here in about one of 100 back-to-back closes; waiting first, in none of 600."""
    if midi.get_current_api() == rtmidi.API_UNIX_JACK:
        time.sleep(_JACK_SETTLE)
    midi.close_port()
    midi.delete()


class InputPort:
    """An open MIDI input whose reader thread hands each message to sink(message, t) as it arrives.

    message is the raw bytes as a list of ints; t is when the reader took it (seconds, time.monotonic()).
    MIDI clock (0xF8) and start/continue/stop (0xFA/0xFB/0xFC) are delivered; active sensing and sysex
    are dropped. sink runs on the reader thread and must return quickly and not raise. Without a sink,
    messages wait in a queue read with get()."""

    def __init__(self, api: int, spec: str | None = None, virtual: str | None = None, client: str = "clara",
                 sink: Sink | None = None, poll_interval: float = 0.0002):
        self._midi, self.name = _open(rtmidi.MidiIn, api, spec, virtual, client, "input")
        self._ours = virtual is not None  # a virtual port goes only with the MIDI system
        self._midi.ignore_types(sysex=True, timing=False, active_sense=True)
        self._queue: queue.SimpleQueue[tuple[list[int], float]] = queue.SimpleQueue()
        self._sink = sink or (lambda message, t: self._queue.put((message, t)))
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name=f"clara-midi-in {self.name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        get, sink, now, stop = self._midi.get_message, self._sink, time.monotonic, self._stop
        while not stop.is_set():
            event = get()
            if event is None:
                time.sleep(self._poll_interval)
                continue
            sink(event[0], now())

    def gone(self) -> str | None:
        """None while the port read from is there, else the one-line reason (an unplugged keyboard)."""
        if self._ours or self._closed or self.name in self._midi.get_ports():
            return None
        return f"MIDI input {self.name} is gone"

    def get(self, timeout: float = 0.0) -> tuple[list[int], float] | None:
        """The next (message, t) from the queue, waiting up to timeout seconds; None if none came."""
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop and join the reader thread, then close the port; safe to call again."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        _release(self._midi)

    def __enter__(self) -> InputPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OutputPort:
    """An open MIDI output; send() may be called from any thread.

    On JACK, rtmidi queues each message in a 16 KiB ring buffer that the server drains every cycle; if
    the server stops, nothing in rtmidi says so, and once the buffer fills (~2,300 three-byte messages)
    send() never returns. close() then gives up on the port after CLOSE_TIMEOUT rather than hang too."""

    CLOSE_TIMEOUT = 1.0  # seconds close() waits for a send in progress

    def __init__(self, api: int, spec: str | None = None, virtual: str | None = None, client: str = "clara"):
        self._midi, self.name = _open(rtmidi.MidiOut, api, spec, virtual, client, "output")
        self._ours = virtual is not None
        self._lock = threading.Lock()
        self._closed = False

    def send(self, message: Sequence[int]) -> None:
        """Send one MIDI message (its raw bytes) now; raises ClaraError if the port is closed or lost."""
        with self._lock:
            if self._closed:
                raise ClaraError(f"output port {self.name} is closed")
            try:
                self._midi.send_message(message)
            except rtmidi.RtMidiError as err:
                raise ClaraError(f"output port {self.name}: {err}; the port was lost") from None

    def gone(self) -> str | None:
        """None while the port written to is there, else the one-line reason."""
        if self._ours or self._closed:
            return None
        with self._lock:
            present = self._closed or self.name in self._midi.get_ports()
        return None if present else f"MIDI output {self.name} is gone"

    def abandon(self) -> None:
        """Leave the port without closing it, once its MIDI system is gone (a stopped JACK server): RtMidi's
        JACK output waits up to a second in closePort, holding the GIL, for a server cycle that will never
        come. The client is kept for the life of the process, so nothing closes it later; close() is then
        a no-op. Safe to call again, and while a send is stuck."""
        if not self._closed:
            self._closed = True
            _abandoned.append(self._midi)

    def close(self) -> None:
        """Close the port; safe to call again."""
        if self._closed:
            return
        if not self._lock.acquire(timeout=self.CLOSE_TIMEOUT):
            self._closed = True  # a send is stuck in rtmidi; deleting the client under it would crash
            return
        try:
            if not self._closed:
                self._closed = True
                _release(self._midi)
        finally:
            self._lock.release()

    def __enter__(self) -> OutputPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_ports(api: int) -> str:
    """The text `clara ports` prints: the MIDI system, then the numbered inputs and outputs."""
    inputs, outputs = list_ports(api)
    lines = [f"MIDI system: {api_label(api)}"]
    for title, names in (("inputs", inputs), ("outputs", outputs)):
        lines.append(f"{title}:")
        lines.extend(f"  {i}: {n}" for i, n in enumerate(names))
        if not names:
            lines.append("  (none)")
    return "\n".join(lines)
