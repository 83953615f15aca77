"""Ableton Link: the tempo and beat shared with a DAW, phones or another Clara on the network.

`LinkClock` joins a Link session through aalink (an optional extra, GPL-3.0-or-later:
`pip install 'clara-live[link]'`; the one module that imports it) and reads Link's timeline as a
`LinkState` (live/tempo.py): the tempo, the beat at a time on this process's monotonic clock and
how many other peers there are. `steer` is what the live loop calls every tick: while Link has
other peers its tempo and beat lead the session (`Session.on_link`); alone, Link takes Clara's
(`propose`), so that whoever joins finds her tempo and beat.

aalink is built on asyncio: its Link must be made inside a running event loop, which runs here in
a daemon thread of its own, and Link's own threads do the network. Reading the timeline or setting
the tempo is a thread-safe call into Link (it captures and commits its session state under Link's
lock), made from the session's thread. Link keeps its own clock (CLOCK_MONOTONIC_RAW on Linux): a
beat read is placed on time.monotonic by reading that clock on either side of it (a few µs apart).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from typing import TYPE_CHECKING

from clara_live.errors import ClaraError
from clara_live.live.tempo import Grid, LinkState

if TYPE_CHECKING:
    from clara_live.live.commands import Command
    from clara_live.live.session import Session

INSTALL = "--link needs the optional extra: pip install 'clara-live[link]' (aalink, GPL-3.0-or-later)"
START_TIMEOUT = 5.0  # seconds for the loop thread to start and make its Link
STOP_TIMEOUT = 2.0  # seconds to wait for the loop thread at the end
PROPOSE_PHASE = 0.001  # seconds: alone, Link is moved onto Clara's beat when it is further off than this
PROPOSE_BPM = 0.001  # ... or onto her tempo when it is further from it than this


class LinkUnavailable(ClaraError):
    """--link without aalink installed."""


def require():
    """The aalink module, or LinkUnavailable with the one line that says how to get it."""
    try:
        import aalink
    except ImportError:
        raise LinkUnavailable(INSTALL) from None
    return aalink


class LinkClock:
    """A peer in a Link session, enabled from construction until `close` (a context manager).

    bpm: Link's tempo until a peer or `propose` sets another; quantum: beats in Link's bar (peers
    that join line their bars up on it)."""

    def __init__(self, bpm: float, quantum: float = 4.0) -> None:
        aalink = require()
        self._lock = threading.Lock()
        self._link = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clara-link", daemon=True)
        self._thread.start()

        async def make() -> None:  # kept on self, not returned: the futures hold no reference to it
            link = aalink.Link(bpm)
            link.quantum = quantum
            link.enabled = True
            self._link = link

        try:
            asyncio.run_coroutine_threadsafe(make(), self._loop).result(START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        self.quantum = quantum
        atexit.register(self.close)  # left open, it still leaves the session at exit (peers drop it at once)

    def state(self) -> LinkState:
        """Link's timeline now: its tempo, its beat at `at` (seconds, monotonic clock), its other peers."""
        with self._lock:
            link = self._link
            if link is None:
                raise ClaraError("Link is closed")
            before = time.monotonic()
            beat = link.beat
            after = time.monotonic()
            return LinkState(link.tempo, beat, (before + after) / 2, link.num_peers)

    def set_tempo(self, bpm: float) -> None:
        """Set the session's tempo for every peer (Link keeps the beat where it is now)."""
        with self._lock:
            if self._link is not None:
                self._link.tempo = bpm

    def propose(self, grid: Grid, state: LinkState) -> bool:
        """Alone in the session (state says no other peers), Link takes the grid's tempo and beat;
        with peers, or when Link already agrees (PROPOSE_BPM, PROPOSE_PHASE), nothing. Whether it moved."""
        if state.peers:
            return False
        now = time.monotonic()
        beat = grid.step_at(now) / grid.sample_freq
        q = self.quantum
        off = (state.beat_at(now) - beat + q / 2) % q - q / 2  # beats within Link's bar
        if abs(grid.bpm - state.bpm) <= PROPOSE_BPM and abs(off) * 60.0 / grid.bpm <= PROPOSE_PHASE:
            return False
        with self._lock:
            if self._link is None:
                return False
            self._link.tempo = grid.bpm
            # no peers: Link maps this beat to its clock's now exactly (with peers it would only shift the phase)
            self._link.request_beat(grid.step_at(time.monotonic()) / grid.sample_freq)
        return True

    def steer(self, session: Session, t: float) -> list[Command]:
        """One tick of the live loop at t (monotonic seconds): Link's timeline to the session, and,
        while Link has no other peers, the session's tempo and beat to Link (the player's beat as
        they play it, while it is followed: Session.beat_grid)."""
        state = self.state()
        out = session.on_link(state, t)
        self.propose(session.beat_grid(t), state)
        return out

    def close(self) -> None:
        """Leave the session: Link disabled and freed (its threads joined), the loop thread stopped and
        joined (at most STOP_TIMEOUT seconds). Safe to call twice."""
        atexit.unregister(self.close)
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.enabled = False
            del link  # the last reference: Link's destructor joins its network and scheduler threads
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> LinkClock:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
