"""Ableton Link (`clara live --link`, live/link.py): two real peers on this machine, one of them a
child process (benchmarks/link_peers.py's), over the loopback interface; the session following
Link through the wrapper as the live loop calls it; the keeper's rules with a Link timeline made by
hand; and the one line said when the optional extra is missing.

Link peers find each other by UDP multicast on every interface that is up (224.76.78.75:20808), so
every Link test here holds one lock (xdist workers would otherwise share a session), and the
loopback interface must be up: as root it is brought up, otherwise those tests skip saying so.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import load_benchmark

from clara_live.cli import _config, build_parser, main
from clara_live.codec.notewise import NotewiseCodec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import load_config
from clara_live.live.commands import Answer, Command, Log, Send
from clara_live.live.link import INSTALL, LinkClock, LinkUnavailable
from clara_live.live.midi import CLOCK, START
from clara_live.live.session import Session
from clara_live.live.tempo import Grid, LinkState, TempoKeeper

HAVE_AALINK = importlib.util.find_spec("aalink") is not None
needs_aalink = pytest.mark.skipif(not HAVE_AALINK, reason="aalink is not installed (the optional extra: "
                                  "pip install -e '.[link]'; make install-dev installs it)")
LINK_BPM = 133.3  # the tempo the other peer sets
PLAYED_BPM = 90.0  # the player's tempo in the session scenarios (the session starts at live.bpm 100)


def _loopback_up() -> bool:
    """Whether a datagram to 127.0.0.1 comes back (a network namespace's loopback starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(b"x", sock.getsockname())
            return sock.recv(1) == b"x"
        except OSError:
            return False


@pytest.fixture
def link_network():
    """The loopback interface up (brought up as root; else the test skips), and this machine's Link
    tests one at a time."""
    if not _loopback_up() and os.geteuid() == 0 and shutil.which("ip"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    if not _loopback_up():
        pytest.skip("the loopback interface is down and this is not root: Link's peers find each other over it "
                    "(ip link set lo up)")
    with open(Path(tempfile.gettempdir()) / "clara-link-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
        fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def peers():
    """benchmarks/link_peers.py: the child peer and the measurement."""
    return load_benchmark("link_peers")


# --- two peers ----------------------------------------------------------------------------------

@needs_aalink
def test_two_peers_agree_on_the_tempo_and_the_beat(link_network, peers):
    with LinkClock(100.0) as link, peers.Peer() as peer:
        result = peers.measure(link, peer, LINK_BPM, samples=50)
    assert result["bpm_off_max"] < 0.1 and abs(result["bpm_here"] - LINK_BPM) < 0.1
    assert result["phase_ms_max"] < 5.0, result


def _link_threads() -> list[str]:
    """The names of this process's threads that are Link's (its network threads) or the wrapper's loop."""
    tasks = Path("/proc/self/task")
    native = [(p / "comm").read_text().strip() for p in tasks.iterdir()] if tasks.exists() else []
    return [n for n in native if n.startswith("Link")] + [t.name for t in threading.enumerate()
                                                         if t.name == "clara-link"]


@needs_aalink
def test_alone_link_takes_claras_tempo_and_beat_and_close_leaves_no_thread(link_network, peers):
    with LinkClock(100.0) as link:
        assert _link_threads()
        grid = Grid(time.monotonic(), 5.0, 87.0, 12)  # 87 bpm, 5/12 of a beat in at once
        assert link.propose(grid, link.state())  # Link moves onto Clara's tempo and beat
        # and, as the live loop asks every tick, again until Link agrees (a peer passing by, or a Link
        # just enabled still settling, may move it once more). Clara proposes nothing while Link counts a
        # peer, so agreement is only read with none: another test's peer just gone (its Link heard for a
        # moment after it left) once ended this wait early, before Clara's beat was taken
        assert peers.until(lambda: (now := link.state()).peers == 0 and not link.propose(grid, now), 10.0)
        state = link.state()
        if state.peers:
            pytest.skip("another Link peer is on this network")
        assert state.bpm == pytest.approx(87.0, abs=0.001)
        assert abs(state.beat_at(state.at) - grid.step_at(state.at) / 12) * 60 / 87.0 < 0.001  # seconds
        assert not link.propose(grid, state._replace(peers=1))  # with peers, Clara proposes nothing
        link.close()
        assert _link_threads() == []  # Link's threads and the loop's joined
    # leaving the block closes it again: nothing happens


# --- the session with Link ------------------------------------------------------------------------

class LinkRig:
    """A session driven as the live loop drives it (LinkClock.steer, then on_tick, every 2 ms), on a
    clock that starts now and runs faster than the real one: Link's timeline is linear at a steady
    tempo, so a state read now places its beats at any later time."""

    def __init__(self, link: LinkClock | None, *overrides: str) -> None:
        config = load_config(overrides=["live.bpm=100", *overrides])
        vocab = Vocabulary(NotewiseCodec(config.codec).vocabulary(), config.codec)
        self.t = time.monotonic()
        self.session = Session(config.live, vocab, config.sampling, self.t, 4)
        self.link = link
        self.log: list[tuple[float, Command]] = []

    def tick_to(self, until: float) -> None:
        while self.t + 0.002 <= until:
            self.t += 0.002
            out = self.link.steer(self.session, self.t) if self.link is not None else []
            self.log += [(self.t, c) for c in out + self.session.on_tick(self.t)]

    def play(self, beats: int, bpm: float) -> None:
        """A steady phrase of quarter notes, half a beat long each, from 0.5 s on; then silence."""
        start = self.t + 0.5
        for i in range(beats):
            on = start + i * 60.0 / bpm
            for t, velocity in ((on, 80), (on + 30.0 / bpm, 0)):
                self.tick_to(t)
                self.log += [(t, c) for c in self.session.on_event([0x90, 60 + i % 5, velocity], t)]
        self.tick_to(self.t + 3.0)

    def answers(self) -> list[Answer]:
        return [c for _, c in self.log if isinstance(c, Answer)]


def _off_beat_ms(state: LinkState, t: float, per_beat: int = 1) -> float:
    """Milliseconds from t to the nearest Link beat (or 1/per_beat of one)."""
    x = state.beat_at(t) * per_beat
    return abs(x - round(x)) / per_beat * 60_000.0 / state.bpm


@needs_aalink
def test_the_session_answers_at_links_tempo_and_beat_not_the_heard_one(link_network, peers):
    heard = LinkRig(None)
    heard.play(8, PLAYED_BPM)
    assert heard.answers()[0].grid.bpm == pytest.approx(PLAYED_BPM, rel=0.04)  # without Link: the playing's

    with LinkClock(100.0) as link, peers.Peer() as peer:
        assert peers.until(lambda: link.state().peers >= 1 and peer.state().peers >= 1, 10.0)
        peer.set_tempo(LINK_BPM)
        assert peers.until(lambda: abs(link.state().bpm - LINK_BPM) < 0.1, 5.0)
        rig = LinkRig(link, "live.clock_out=true", "live.metronome=true")
        rig.play(8, PLAYED_BPM)
        state = link.state()
        answer = rig.answers()[0]
        assert rig.session.tempo_source == "link"
        assert answer.grid.bpm == pytest.approx(LINK_BPM, abs=0.1)
        assert _off_beat_ms(state, answer.start_time) < 5.0  # her answer starts on a Link beat
        assert any(isinstance(c, Log) and f"tempo {LINK_BPM:.1f} bpm (Link, " in c.text for _, c in rig.log)

        # clock out and the metronome go on Link's beats at Link's tempo
        sends = [c for _, c in rig.log if isinstance(c, Send)]
        assert [c.message for c in sends if c.track == "clock"][0] == (START,)
        ticks = [c.time for c in sends if c.message == (CLOCK,)][24:]  # from the second beat on
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        assert max(abs(g - 60.0 / LINK_BPM / 24) for g in gaps) < 1e-4
        assert max(_off_beat_ms(state, t, 24) for t in ticks) < 5.0
        clicks = [c.time for c in sends if c.track == "metronome" and c.message[0] & 0xF0 == 0x90][1:]
        assert clicks and max(_off_beat_ms(state, t) for t in clicks) < 5.0

        # the peer leaves: the tempo stays, and the playing may set it again
        peer.close()
        if not peers.until(lambda: link.state().peers == 0, 10.0):
            pytest.skip("another Link peer is on this network: the session keeps a peer")
        rig.tick_to(rig.t + 0.01)
    assert rig.session.tempo_source == "bpm" and rig.session.grid.bpm == pytest.approx(LINK_BPM, abs=0.1)
    assert any(isinstance(c, Log) and "Link: no other peers" in c.text for _, c in rig.log)


# --- the keeper's rules, on a Link timeline made by hand ---------------------------------------------

def test_link_with_peers_leads_over_taps_and_a_midi_clock_and_moves_the_grid_by_at_most_half_a_beat():
    keeper = TempoKeeper(Grid(0.0, 0.0, 100.0, 12))
    out = keeper.link(LinkState(120.0, 7.3, 10.0, 2), 10.0)
    assert out == ["tempo 120.0 bpm (Link, 2 peers)"] and keeper.source == "link"
    assert keeper.grid.bpm == 120.0 and keeper.grid.step_at(10.0) % 12 == pytest.approx(0.3 * 12)
    assert abs(keeper.grid.step_at(10.0) - 100 / 60 * 10 * 12) <= 6  # the nearest such beat: half a beat at most
    grid = keeper.grid
    for t in (10.1, 10.2, 10.3):
        keeper.tap(t, 0)
    for i in range(30):
        keeper.realtime(CLOCK, 10.5 + i * 60 / 90 / 24, 0)
    assert keeper.grid == grid and keeper.source == "link" and not keeper.hears_tempo(11.0)


def test_link_out_of_range_or_alone_does_not_lead():
    keeper = TempoKeeper(Grid(0.0, 0.0, 100.0, 12))
    assert keeper.link(LinkState(120.0, 0.0, 1.0, 0), 1.0) == [] and keeper.source == "bpm"  # alone
    assert keeper.link(LinkState(400.0, 0.0, 1.0, 1), 1.0) == ["Link at 400 bpm ignored: outside 20-300 bpm"]
    assert keeper.link(LinkState(400.0, 0.0, 1.1, 1), 1.1) == []  # said once
    assert keeper.grid.bpm == 100.0 and keeper.source == "bpm"


# --- without the extra, and the flag ---------------------------------------------------------------------

def test_link_without_the_extra_says_how_to_get_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "aalink", None)  # import aalink raises ImportError
    with pytest.raises(LinkUnavailable, match="pip install 'clara-live\\[link\\]'"):
        LinkClock(100.0)
    assert main(["live", "--link", "--no-ui", "--no-save", "--duration", "0.1"]) == 1
    assert capsys.readouterr().err == f"clara: error: {INSTALL}\n"
    assert "GPL-3.0-or-later" in INSTALL


def test_the_link_flag_sets_live_link():
    parser = build_parser()
    assert _config(parser.parse_args(["live", "--link"])).live.link is True
    assert _config(parser.parse_args(["live"])).live.link is False
