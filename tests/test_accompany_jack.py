"""`clara live --mode accompany` played in over real MIDI plumbing, as a person would (issue 26): a JACK
server with the dummy driver, `clara live --virtual` as its own process, and this test as the player
(into 'Clara In') and the listener (from 'Clara Out').

A tune in C major is played at 100 bpm, a note a beat. She must play with it, under it, in its key, and
leave nothing sounding once she rests and once she is stopped. The shares are the issue's goals; the
timing tolerances allow for a loaded 2-core machine (the latency itself is measured by
benchmarks/accompaniment.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from jack_fixture import jack_realtime, jack_server  # noqa: F401
from live_process import LiveProcess

from clara_live.live import ports

pytestmark = pytest.mark.slow  # a minute of the suite: `make test` runs it, `make test-fast` does not

BPM = 100.0
BEAT = 60.0 / BPM
NOTE_ON, NOTE_OFF, CONTROL = 0x90, 0x80, 0xB0
PLAYER = 2  # the player's channel (0-based), apart from hers
# Ode to Joy, twice (C major, E5 to G5 and down to C5): 30 notes
TUNE = [76, 76, 77, 79, 79, 77, 76, 74, 72, 72, 74, 76, 76, 74, 74] * 2
C_MAJOR = {0, 2, 4, 5, 7, 9, 11}


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(min(left, 0.002))


def _notes(messages, channel: int) -> tuple[list[tuple[float, float, int]], list[int]]:
    """(on, off, pitch) of the channel's notes, and the pitches left sounding (an all-notes-off closes all)."""
    sounding: dict[int, float] = {}
    notes = []
    for t, m in messages:
        if m[0] & 0x0F != channel:
            continue
        kind = m[0] & 0xF0
        if kind == NOTE_ON and m[2] > 0:
            if m[1] in sounding:
                notes.append((sounding[m[1]], t, m[1]))
            sounding[m[1]] = t
        elif kind in (NOTE_ON, NOTE_OFF) and m[1] in sounding:
            notes.append((sounding.pop(m[1]), t, m[1]))
        elif kind == CONTROL and m[1] == 123:
            notes += [(on, t, p) for p, on in sounding.items()]
            sounding.clear()
    return notes, sorted(sounding)


def _pc_cosine(a, b) -> float:
    def histogram(notes):
        h = np.zeros(12)
        for on, off, pitch in notes:
            h[pitch % 12] += max(off - on, 0.01)
        return h
    ha, hb = histogram(a), histogram(b)
    return float(ha @ hb / (np.linalg.norm(ha) * np.linalg.norm(hb) + 1e-12))


@pytest.fixture
def accompanist(jack_server, tmp_path: Path):  # noqa: F811 - the fixture's name
    live = LiveProcess(tmp_path, "--midi-api", "jack", "--virtual", "--no-ui", "--mode", "accompany",
                       "--bpm", str(BPM), "--seed", "7")
    live.wait_for("clara live ready", 60)
    api = ports.resolve_api("jack")
    heard: list[tuple[float, list[int]]] = []
    listener = ports.InputPort(api, spec="Clara Out", client=f"listener-{os.getpid()}",
                               sink=lambda m, t: heard.append((t, m)))
    player = ports.OutputPort(api, spec="Clara In", client=f"player-{os.getpid()}")
    time.sleep(0.3)  # let JACK connect the ports
    yield live, player, heard
    listener.close()
    player.close()
    live.kill()


def test_played_in_she_plays_with_the_melody_under_it_in_its_key_and_closes_every_note(accompanist,
                                                                                     jack_realtime):  # noqa: F811
    live, player, heard = accompanist
    start = time.monotonic() + 0.3
    melody = []
    for k, pitch in enumerate(TUNE):
        _sleep_until(start + k * BEAT)
        on = time.monotonic()
        player.send([NOTE_ON | PLAYER, pitch, 80])
        _sleep_until(start + (k + 0.9) * BEAT)
        player.send([NOTE_OFF | PLAYER, pitch, 0])
        melody.append((on, time.monotonic(), pitch))
    live.wait_for("Clara rests", 10)  # a bar after the last key
    time.sleep(0.3)
    hers, left = _notes(list(heard), 0)
    assert not left, f"notes of hers left sounding after she rested: {left}"
    assert len(hers) >= len(TUNE) // 2, f"she played {len(hers)} notes to {len(TUNE)} of the melody"
    first, last = melody[0][0], melody[-1][1]
    during = [n for n in hers if first <= n[0] < last]
    assert len(during) >= 0.7 * len(hers), f"{len(during)} of her {len(hers)} notes while the melody played"
    for on, _, pitch in during:
        sounding = [p for m_on, m_off, p in melody if m_on <= on < m_off]
        assert all(pitch < p for p in sounding), f"at {on - start:.3f} s she struck {pitch}, not under {sounding}"
    cosine = _pc_cosine(during, melody)
    assert cosine >= 0.7, f"pitch-class cosine with the melody {cosine:.2f}"
    assert sum(n[2] % 12 in C_MAJOR for n in during) >= 0.7 * len(during)  # in its key
    # begin again, and SIGTERM in mid-bar: only offs and the panic follow, nothing is left sounding
    again = time.monotonic() + 0.2
    for k, pitch in enumerate(TUNE[:6]):
        _sleep_until(again + k * BEAT)
        player.send([NOTE_ON | PLAYER, pitch, 80])
        _sleep_until(again + (k + 0.9) * BEAT)
        player.send([NOTE_OFF | PLAYER, pitch, 0])
    player.send([NOTE_ON | PLAYER, 79, 80])  # held as she is stopped
    time.sleep(0.4)
    stopped = time.monotonic()
    assert live.terminate() == 0
    time.sleep(0.3)
    after = [m for t, m in heard if t > stopped]
    assert all(m[0] & 0xF0 in (NOTE_OFF, CONTROL) or m[2] == 0 for m in after), after
    hers, left = _notes(list(heard), 0)
    assert not left, f"notes of hers left sounding after SIGTERM: {left}"
    assert any(n[0] >= again for n in hers)  # she began again
