"""`clara live` end to end over real MIDI plumbing: a JACK server with the dummy driver,
`clara live --virtual` as its own process, and this test as the player and the listener.

Timing tolerances allow for a loaded 2-core CI machine; the latency figures themselves are
measured by benchmarks/live_latency.py.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import mido
import pytest
from jack_fixture import jack_realtime, jack_server, xruns  # noqa: F401
from live_process import LiveProcess, Studio, sleep_until

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

BPM = 120.0
BEAT = 60.0 / BPM
GRID_TOLERANCE = 0.015  # seconds: a JACK period is 1.3 ms; the rest is scheduling on a busy machine
JITTER = 0.03  # seconds: one note's delivery on a loaded machine (the grid's own error is GRID_TOLERANCE's)
NOTE_ON, NOTE_OFF, CONTROL = 0x90, 0x80, 0xB0


class Live(LiveProcess):
    """`clara live --virtual` at BPM in call-response, ready to play."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        super().__init__(tmp_path, "--midi-api", "jack", "--virtual", "--no-ui", "--mode", "call-response",
                         "--bpm", str(BPM), "--seed", "7", *extra)
        self.wait_for("clara live ready", 60)


def excuse_loss(realtime: bool, what: str) -> None:
    """Called once a message is seen lost: an xfail only where JACK runs without realtime scheduling
    (jackd -R refused), whose starved clients miss whole cycles on a busy machine (a 1,000 message/s
    burst lost ~10 messages in one run in six); with it, none was lost in 31 runs (BENCHMARKS), so
    there a loss is a failure, however many cycles the server logged as missed."""
    if not realtime:
        pytest.xfail(f"JACK runs without realtime scheduling here, so its clients miss whole cycles: {what}")


def _wait_quiet(studio: Studio, quiet: float, timeout: float) -> None:
    """Until Clara has played something and then nothing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if studio.heard and time.monotonic() - studio.heard[-1][0] > quiet:
            return
        time.sleep(0.05)
    pytest.fail("Clara never played, or never fell silent")


def _unpaired(messages: list[tuple[float, list[int]]]) -> list[tuple[int, int]]:
    """Notes left on: note-ons without a later note-off (an all-notes-off closes a channel), and notes
    struck again while they sounded. Clara closes a note before striking its key again, so a second
    note-on with no off between means the off was lost on its way (seen in CI without -R: five offs
    due together lost, the strikes right after them heard)."""
    sounding: set[tuple[int, int]] = set()
    struck_twice: set[tuple[int, int]] = set()
    for _, m in messages:
        kind, channel = m[0] & 0xF0, m[0] & 0x0F
        if kind == NOTE_ON and m[2] > 0:
            if (channel, m[1]) in sounding:
                struck_twice.add((channel, m[1]))
            sounding.add((channel, m[1]))
        elif kind in (NOTE_ON, NOTE_OFF):
            sounding.discard((channel, m[1]))
        elif kind == CONTROL and m[1] == 123:
            sounding = {s for s in sounding if s[0] != channel}
    return sorted(sounding | struck_twice)


@pytest.fixture
def studio(jack_server, tmp_path):  # noqa: F811 - the fixture's name
    live = Live(tmp_path)
    studio = Studio()
    time.sleep(0.3)  # let JACK connect the ports
    yield live, studio
    studio.close()
    live.kill()


def test_clara_answers_after_the_phrase_on_the_beat_and_closes_every_note(studio, jack_server,  # noqa: F811
                                                                          jack_realtime):  # noqa: F811
    live, studio = studio
    missed = xruns(jack_server)
    for attempt in range(2):  # the phrase again if none of it reached Clara (a route still settling, or XRuns)
        start = time.monotonic() + 0.2
        released = studio.play([60, 64, 67, 72, 67, 64, 60, 55], start)  # 8 beats
        phrase_end = released + BEAT  # live.silence_beats = 1
        if live.heard("phrase end", 10) or attempt:
            break
        assert not studio.heard, "Clara played without hearing a phrase end"
    live.wait_for("phrase end", 1)
    _wait_quiet(studio, quiet=1.5, timeout=20)
    answer = studio.clara()
    onsets = [t for t, m in answer if m[0] & 0xF0 == NOTE_ON and m[2] > 0]
    assert onsets, "Clara did not answer:\n" + "\n".join(live.lines)
    first = onsets[0]
    assert first > phrase_end - JITTER, "Clara began before the phrase ended"
    assert first < phrase_end + BEAT + 0.1, "Clara's answer is not on the next beat after the phrase end"
    # every onset on the step grid of the player's tempo: the grid itself (the median offset) within
    # GRID_TOLERANCE, each note within JITTER of it (on a loaded 2-core machine the answer's first
    # notes, sent while the worker reads the phrase, come up to ~20 ms apart; jitter is measured by
    # benchmarks/live_latency.py), and the first note on a beat
    offsets = [((t - start) / BEAT * 12 - round((t - start) / BEAT * 12)) * BEAT / 12 for t in onsets]
    assert abs(statistics.median(offsets)) < GRID_TOLERANCE, offsets
    assert all(abs(o) < JITTER for o in offsets), offsets
    beats = (first - start) / BEAT
    assert abs(beats - round(beats)) * BEAT < JITTER, f"answer began {beats:.3f} beats in"
    # about as long as the call: 8 beats
    offs = [t for t, m in answer if m[0] & 0xF0 in (NOTE_OFF, NOTE_ON)]
    assert 4 * BEAT <= max(offs) - first <= 8 * BEAT + JITTER
    if _unpaired(answer):  # seen on a 2-core VM under load without -R: a lost note-off, in any client
        excuse_loss(jack_realtime, f"a message lost on its way to the listener ({xruns(jack_server) - missed} "
                                   f"missed cycles logged): {_unpaired(answer)}")
    assert _unpaired(answer) == []
    # the default model's learned touch: a player at one velocity shows no dynamics, so hers are its own, at a
    # musical level (never under the sampler's softest, 12; 90 each with --touch flat, the player's level)
    velocities = [m[2] for _, m in answer if m[0] & 0xF0 == NOTE_ON and m[2] > 0]
    assert all(12 <= v <= 127 for v in velocities) and 40 <= statistics.median(velocities) <= 110, velocities
    # SIGTERM while silent: only the panic follows
    before = len(studio.heard)
    assert live.terminate() == 0, live.text[-3000:]
    time.sleep(0.2)
    after = [m for _, m in studio.heard[before:]]
    assert after and all(m[0] & 0xF0 == CONTROL and m[1] == 123 for m in after), after
    saved = list(live.save_dir.glob("*.mid"))
    assert len(saved) == 1
    midi = mido.MidiFile(saved[0])
    names = [t.name for t in midi.tracks]
    assert "Player" in names and "Clara" in names
    player = midi.tracks[names.index("Player")]
    struck = sum(1 for m in player if m.type == "note_on" and m.velocity > 0)
    if struck != 8:
        excuse_loss(jack_realtime, f"the session saved {struck} of the player's 8 notes (a message lost on its way "
                                   f"in; {xruns(jack_server) - missed} missed cycles logged)")
    assert struck == 8


def test_the_player_interrupts_clara_and_sigterm_mid_answer_sends_only_the_panic(studio):
    live, studio = studio
    for attempt in range(2):  # the phrase again if none of it reached Clara (a route still settling, or XRuns)
        start = time.monotonic() + 0.2
        studio.play([60, 62, 64, 65, 67, 69, 71, 72], start)
        if live.heard("phrase end", 10) or attempt:
            break
    live.wait_for("phrase end", 1)
    deadline = time.monotonic() + 5
    while not studio.clara() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(1.1)  # Clara is two beats into her answer
    interrupt = time.monotonic()
    studio.player.send([NOTE_ON, 48, 80])
    time.sleep(0.5)
    late = [(t, m) for t, m in studio.clara(after=interrupt + 0.03) if m[0] & 0xF0 == NOTE_ON and m[2] > 0]
    assert not late, f"Clara went on playing after the player came in: {late}"
    assert _unpaired(studio.clara()) == []
    # a new phrase, and SIGTERM in the middle of the answer
    studio.player.send([NOTE_OFF, 48, 0])
    start = time.monotonic() + 0.1
    studio.play([67, 65, 64, 62], start)
    live.wait_for("Clara answers", 10)
    deadline = time.monotonic() + 5
    while not studio.clara(after=start + 4 * BEAT) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.3)
    sounding = _unpaired(studio.clara())
    before = len(studio.heard)
    assert live.terminate() == 0, live.text[-3000:]
    time.sleep(0.2)
    after = [m for _, m in studio.heard[before:]]
    kinds = {(m[0] & 0xF0, m[1]) if m[0] & 0xF0 == CONTROL else (m[0] & 0xF0,) for m in after}
    assert kinds <= {(NOTE_OFF,), (CONTROL, 123)}, f"after SIGTERM: {after}"
    closed = {(m[0] & 0x0F, m[1]) for m in after if m[0] & 0xF0 == NOTE_OFF}
    assert set(sounding) <= closed
    assert _unpaired(studio.clara()) == []


def test_a_burst_into_the_input_arrives_complete_and_in_order_while_clara_plays(jack_server, jack_realtime,  # noqa: F811
                                                                                 tmp_path):
    live = Live(tmp_path, "--passthrough")
    studio = Studio()
    try:
        time.sleep(0.3)
        start = time.monotonic() + 0.2
        studio.play([60, 64, 67, 72], start)
        live.wait_for("Clara answers", 10)
        deadline = time.monotonic() + 5
        while not studio.clara() and time.monotonic() < deadline:
            time.sleep(0.005)
        # 1,000 messages at 1,000 per second on channel 2: note pairs, each one distinct
        sent = []
        for i in range(500):
            pitch, velocity = 36 + i % 48, 1 + (i // 48) % 120
            sent += [[NOTE_ON | 1, pitch, velocity], [NOTE_OFF | 1, pitch, 0]]
        missed = xruns(jack_server)
        t0 = time.monotonic()
        for k, message in enumerate(sent):
            sleep_until(t0 + k * 0.001)
            studio.player.send(message)
        time.sleep(1.0)
        missed = xruns(jack_server) - missed
        assert live.proc.poll() is None
        assert live.terminate() == 0, live.text[-3000:]
        received = [line for line in live.lines if line.startswith("session:")]
        echoed = [m for _, m in studio.clara(channel=1) if m[0] & 0xF0 in (NOTE_ON, NOTE_OFF)]  # not the panic
        complete = bool(received) and f"session: {8 + len(sent)} messages in" in received[0]
        if not (complete and echoed == sent):
            excuse_loss(jack_realtime, f"{len(echoed)} of {len(sent)} came back, {received} ({missed} missed cycles "
                                       "logged during the burst)")
        assert complete, received  # clara live read every message
        assert len(echoed) == len(sent), f"{len(echoed)} of {len(sent)} came back"
        assert echoed == sent  # complete and in order
        assert _unpaired([(t, m) for t, m in studio.heard if m[0] < 0xF0]) == []
    finally:
        studio.close()
        live.kill()


def test_a_lost_message_is_excused_only_where_jack_runs_without_realtime_scheduling():
    try:  # returns: the caller's assertion then fails, missed cycles or not
        excuse_loss(True, "a lost note-off")
    except pytest.xfail.Exception:  # uncaught, an excuse here would read as this test's xfail, not a failure
        pytest.fail("a loss excused where JACK runs with realtime scheduling")
    with pytest.raises(pytest.xfail.Exception, match="without realtime scheduling"):
        excuse_loss(False, "a lost note-off")
