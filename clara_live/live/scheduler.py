"""The output scheduler: every message sent at its absolute time, no note ever left on.

`Schedule` is the pure part: a time-ordered queue of messages with the notes each sent
message left open, cancellation of one answer's future messages (closing what it opened),
and a panic. `Scheduler` is the thread that sends each message when its time comes: it
sleeps until just before and spins the last stretch, so sends land within a fraction of a
millisecond. Times are seconds on the monotonic clock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from clara_live.live.midi import ALL_NOTES_OFF, CONTROL, NOTE_OFF, OpenNotes

# the cancels remembered: a worker sends a cancelled tag's notes only until it reads the stop (the
# accompaniment's replans cancel their own tag first), so the last this many are plenty (a few tens of kB)
CANCELS_KEPT = 1024


class Output(Protocol):
    def send(self, message: Sequence[int]) -> None: ...


class Event(NamedTuple):
    time: float
    order: int  # ties keep the order they were scheduled in
    message: tuple[int, ...]
    track: str  # "clara", "player", "metronome", "clock"
    tag: int | None  # an answer's id, to cancel it


class Schedule:
    """Messages waiting for their time, and the notes sent messages left sounding."""

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._order = itertools.count()
        self.notes: OpenNotes[tuple[str, int | None]] = OpenNotes()  # sounding notes -> (track, tag)
        self.channels: set[int] = set()  # every channel a message went out on
        # answers cancelled, and from when: notes the worker sampled while a cancel was on its way are
        # dropped as they come, so no note-on follows its answer's cancel. The latest CANCELS_KEPT, oldest
        # first: the accompaniment cancels at every player note, which unbounded grew ~1 MB an hour
        self.cancelled: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, t: float, message: Sequence[int], track: str, tag: int | None = None) -> None:
        if tag is not None and t > self.cancelled.get(tag, float("inf")):
            return
        heapq.heappush(self._heap, Event(t, next(self._order), tuple(message), track, tag))

    def next_time(self) -> float | None:
        return self._heap[0].time if self._heap else None

    def due(self, now: float) -> list[Event]:
        """Pop every event whose time has come, in time order, booking the notes they open."""
        out = []
        while self._heap and self._heap[0].time <= now:
            event = heapq.heappop(self._heap)
            out.extend(self._book(event))
        return out

    @property
    def open(self) -> dict[tuple[int, int], tuple[str, int | None]]:
        """(channel, key) -> (track, tag) of every note sent and not closed."""
        return self.notes.open

    def _book(self, event: Event) -> list[Event]:
        status = event.message[0]
        if status >= 0xF0:
            return [event]
        channel = status & 0x0F
        self.channels.add(channel)
        what = self.notes.update(event.message, (event.track, event.tag))
        if what == "stray":
            return []  # nothing to close (cancelled, or closed already)
        if what == "restrike":  # the key sounds already: close it, so its next off is unambiguous
            return [event._replace(message=(NOTE_OFF | channel, event.message[1], 0)), event]
        return [event]

    def cancel(self, tag: int, after: float, now: float, close: bool = True) -> list[Event]:
        """Drop the tagged events due after `after`; returns the note-offs, to send now, for
        the tag's notes still sounding (none with `close` False: the caller closes them itself,
        as the accompaniment's next plan does)."""
        self.cancelled[tag] = min(after, self.cancelled.pop(tag, after))  # (re-inserted: the newest)
        if len(self.cancelled) > CANCELS_KEPT:
            del self.cancelled[next(iter(self.cancelled))]
        self._heap = [e for e in self._heap if e.tag != tag or e.time <= after]
        heapq.heapify(self._heap)
        if not close:
            return []
        return [self._close(key, now) for key, (_, t) in list(self.notes.open.items()) if t == tag]

    def panic(self, now: float) -> list[Event]:
        """Drop everything waiting; note-offs for every open note, then all-notes-off on
        every channel used."""
        self._heap.clear()
        offs = [self._close(key, now) for key in sorted(self.notes.open)]
        return offs + [Event(now, next(self._order), (CONTROL | ch, ALL_NOTES_OFF, 0), "panic", None)
                       for ch in sorted(self.channels)]

    def _close(self, key: tuple[int, int], now: float) -> Event:
        track, tag = self.notes.release(key)
        return Event(now, next(self._order), (NOTE_OFF | key[0], key[1], 0), track, tag)


class Scheduler:
    """A thread that sends scheduled messages to an output at their times.

    `on_sent(event, sent_at)` is called for every message sent (recording, the view, jitter
    measurement). `panic()` stops the thread first, so after it nothing but the panic goes out.
    """

    def __init__(self, output: Output, on_sent: Callable[[Event, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, spin: float = 0.002) -> None:
        self.output = output
        self.on_sent = on_sent
        self.clock = clock
        self.spin = spin  # seconds before an event when sleeping gives way to spinning
        self.schedule = Schedule()
        self._wake = threading.Condition()
        self._running = True
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="clara-scheduler", daemon=True)
        self._thread.start()

    def add(self, t: float, message: Sequence[int], track: str, tag: int | None = None) -> None:
        with self._wake:
            self.schedule.add(t, message, track, tag)
            self._wake.notify()

    def cancel(self, tag: int, after: float, close: bool = True) -> None:
        with self._wake:
            offs = self.schedule.cancel(tag, after, self.clock(), close)
            self._send(offs)
            self._wake.notify()

    def panic(self) -> None:
        """Stop sending; close every open note and send all-notes-off. Idempotent."""
        with self._wake:
            self._running = False
            self._wake.notify()
        self._thread.join(timeout=2.0)
        with self._wake:
            self._send(self.schedule.panic(self.clock()), tolerant=True)

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    if not self._running:
                        return
                    now = self.clock()
                    events = self.schedule.due(now)
                    if events:
                        self._send(events)
                        continue
                    nxt = self.schedule.next_time()
                    wait = None if nxt is None else nxt - now - self.spin
                    if wait is None or wait > 0:
                        self._wake.wait(wait)
                        continue
                time.sleep(0)  # the last stretch before an event: spin, letting other threads run
        except Exception as exc:  # a lost port: the session sees it and ends
            self.error = exc

    def _send(self, events: list[Event], tolerant: bool = False) -> None:
        for event in events:
            try:
                self.output.send(event.message)
            except Exception:
                if not tolerant:
                    raise
                continue  # a panic into a lost port: the other messages may still get through
            if self.on_sent is not None:
                self.on_sent(event, self.clock())
