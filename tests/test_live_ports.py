"""The MIDI port layer against a real JACK server (dummy driver): no mocks of rtmidi.

Port names are resolved by the port layer itself; on JACK they read "client:port", and a second
client asking for a taken name gets a suffix ("clara-01"), so tests match on the ":port" ending.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from jack_fixture import jack_realtime, jack_server  # noqa: F401

from clara_live.errors import ClaraError, InputError
from clara_live.live.port_names import find_port, virtual_stem
from clara_live.live.ports import (
    API_NAMES,
    InputPort,
    MidiSystemError,
    OutputPort,
    api_label,
    describe_ports,
    list_ports,
    resolve_api,
)

pytestmark = pytest.mark.slow  # real components (JACK, FluidSynth, the shipped model, corpora): not in test-fast

ALSA_SEQ = "/dev/snd/seq"
# libjack names a client's socket after the client whatever the server, so the two xdist workers (each
# with its own server) must not open same-named clients at once
CLARA, TESTER = f"clara-{os.getpid()}", f"tester-{os.getpid()}"
NAMES = ["system:midi_capture_1", "clara:Clara Out", "clara-01:Clara Out 2", "tester:keys", "tester:keys 2"]


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@contextlib.contextmanager
def _burning_cpu() -> Iterator[list[int]]:
    """A thread spinning pure-Python arithmetic, so every other thread fights for the GIL; yields its round count."""
    stop, rounds = threading.Event(), [0]

    def burn() -> None:
        while not stop.is_set():
            total = 0
            for i in range(20_000):
                total += i * i % 7
            rounds[0] += 1

    thread = threading.Thread(target=burn, name="cpu-burner", daemon=True)
    thread.start()
    try:
        yield rounds
    finally:
        stop.set()
        thread.join()


MARKER = [0xBF, 0x7F, 0x00]  # control change 127 on channel 16: in no test's messages


def _await_route(out: OutputPort, arrived) -> None:
    """Send MARKER until arrived() says one came through, then let stragglers land.

    JACK makes a connection effective at a later cycle than the one jack_connect returns in, so messages
    sent just after opening a port by name may go nowhere (seen here once, under load, for all seven
    messages of a test).
    """
    deadline = time.monotonic() + 5.0
    while not arrived():
        assert time.monotonic() < deadline, f"nothing sent to {out.name} arrived"
        out.send(MARKER)
        time.sleep(0.01)
    time.sleep(0.05)


def _await_queue_route(out: OutputPort, inp: InputPort) -> None:
    _await_route(out, lambda: inp.get() is not None)
    while inp.get(timeout=0.05) is not None:
        pass


# --- find_port: pure -------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "index"), [
    ("clara:Clara Out", 1),        # exact
    ("TESTER:KEYS", 3),            # exact but for case, though also a substring of index 4
    ("3", 3),                      # decimal index
    ("MIDI_CAPTURE", 0),           # unique substring, any case
    ("out 2", 2),
    ("keys 2", 4),
])
def test_find_port_matches(spec, index):
    assert find_port(NAMES, spec, "input") == index


@pytest.mark.parametrize(("names", "stem"), [
    ([], "Clara"),
    (["system:midi_capture_1", "tester:Clara Inside", "tester:My Clara In"], "Clara"),  # others' look-alikes
    (["clara:Clara In", "clara:Clara Out"], "Clara 2"),                  # another session (JACK)
    (["clara:Clara In 128:0"], "Clara 2"),                               # ALSA's "client:port client:port"
    (["clara:Clara Out"], "Clara 2"),                                    # --virtual --synth gives one port
    (["clara:Clara In", "clara-01:Clara 2 Out", "x:Clara 4 In"], "Clara 3"),  # the lowest number free
    (["clara-01:Clara 2 In", "clara-01:Clara 2 Out"], "Clara"),          # the first session has left
])
def test_virtual_stem_numbers_a_second_session_s_ports(names, stem):
    assert virtual_stem(names) == stem


def test_find_port_refuses_an_ambiguous_substring():
    pattern = r"MIDI output port 'clara' is ambiguous: it matches 'clara:Clara Out', 'clara-01:Clara Out 2'"
    with pytest.raises(InputError, match=pattern):
        find_port(NAMES, "clara", "output")


def test_find_port_names_the_spec_and_lists_the_ports_when_nothing_matches():
    with pytest.raises(InputError) as caught:
        find_port(NAMES, "piano", "input")
    message = str(caught.value)
    assert "\n" not in message
    assert "'piano'" in message and "input" in message
    assert "0: system:midi_capture_1" in message and "3: tester:keys" in message


def test_find_port_says_when_there_are_no_ports():
    with pytest.raises(InputError, match="no MIDI output port matches 'piano'; available: there are none"):
        find_port([], "piano", "output")


def test_find_port_refuses_an_index_out_of_range():
    with pytest.raises(InputError, match="index 7 is out of range"):
        find_port(NAMES, "7", "input")


# --- resolve_api -----------------------------------------------------------------------------------

def test_resolve_api_refuses_an_unknown_name_and_lists_the_choices():
    with pytest.raises(ClaraError, match="unknown MIDI system 'bogus'") as caught:
        resolve_api("bogus")
    assert not isinstance(caught.value, MidiSystemError)
    assert all(name in str(caught.value) for name in API_NAMES)


def test_resolve_api_finds_the_running_jack_server(jack_server):  # noqa: F811
    api = resolve_api("jack")
    assert api_label(api) == "jack"


@pytest.mark.skipif(os.path.exists(ALSA_SEQ), reason=f"{ALSA_SEQ} exists, so auto may rightly pick ALSA")
def test_resolve_api_auto_picks_jack_without_an_alsa_sequencer(jack_server):  # noqa: F811
    assert api_label(resolve_api("auto")) == "jack"


@pytest.mark.parametrize("name", ["jack", "auto"])
def test_resolve_api_without_a_server_says_how_to_start_one(name):
    if name == "auto" and os.path.exists(ALSA_SEQ):
        pytest.skip(f"{ALSA_SEQ} exists, so auto may find ALSA")
    # a subprocess pointed at a server nobody runs, so the session's own server is left alone
    code = textwrap.dedent(f"""
        from clara_live.live.ports import MidiSystemError, resolve_api
        try:
            resolve_api({name!r})
        except MidiSystemError as err:
            print(err)
        else:
            print("no error")
    """)
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"clara-nobody-{os.getpid()}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert f"no JACK server 'clara-nobody-{os.getpid()}' answers" in done.stdout
    assert "jackd -d dummy" in done.stdout
    assert done.stderr == ""  # libjack's own complaints are kept off the terminal


# --- ports on a real JACK server -------------------------------------------------------------------

def test_virtual_ports_are_seen_by_other_clients(jack_server):  # noqa: F811
    api = resolve_api("jack")
    with (
        InputPort(api, virtual="Clara In", client=CLARA) as inp,
        OutputPort(api, virtual="Clara Out", client=CLARA) as out,
    ):
        inputs, outputs = list_ports(api)
        # ours to read from is theirs to write to, and the other way round
        assert out.name in inputs and out.name.endswith(":Clara Out")
        assert inp.name in outputs and inp.name.endswith(":Clara In")
    assert list_ports(api) == ([], [])


def test_messages_arrive_in_order_with_monotonic_arrival_times(jack_server):  # noqa: F811
    api = resolve_api("jack")
    sent = [[0xF8], [0xFA], [0xFE], [0xF0, 0x7D, 0x01, 0xF7], [0x90, 60, 100], [0xFC], [0x80, 60, 0]]
    wanted = [[0xF8], [0xFA], [0x90, 60, 100], [0xFC], [0x80, 60, 0]]  # no active sensing, no sysex
    with (
        InputPort(api, virtual="Clara In", client=CLARA) as inp,
        OutputPort(api, spec="Clara In", client=TESTER) as out,
    ):
        _await_queue_route(out, inp)
        before = time.monotonic()
        for message in sent:
            out.send(message)
        got = []
        while len(got) < len(wanted) and (item := inp.get(timeout=2.0)) is not None:
            got.append(item)
        assert inp.get(timeout=0.1) is None
        after = time.monotonic()
    assert [message for message, _ in got] == wanted
    times = [t for _, t in got]
    assert before <= times[0] and times == sorted(times) and times[-1] <= after


def test_input_port_opens_an_existing_port_by_substring(jack_server):  # noqa: F811
    api = resolve_api("jack")
    with (
        OutputPort(api, virtual="Clara Out", client=CLARA) as out,
        InputPort(api, spec="clara out", client=TESTER) as inp,
    ):
        assert inp.name == out.name
        _await_queue_route(out, inp)
        # a few tries: on a VM that starves JACK's realtime clients (XRuns) one message can be lost;
        # loss-free delivery is the burst test's to judge, the connection this one's
        for _ in range(3):
            out.send([0xB0, 64, 127])
            if (item := inp.get(timeout=2.0)) is not None:
                break
    assert item is not None and item[0] == [0xB0, 64, 127]


def test_opening_a_missing_port_names_it_and_lists_the_ports(jack_server):  # noqa: F811
    api = resolve_api("jack")
    with OutputPort(api, virtual="Clara Out", client=CLARA):
        with pytest.raises(InputError, match=r"no MIDI input port matches 'piano'; available: 0: .*:Clara Out"):
            InputPort(api, spec="piano", client=TESTER)


def test_a_port_needs_exactly_one_of_spec_and_virtual(jack_server):  # noqa: F811
    api = resolve_api("jack")
    with pytest.raises(ValueError):
        InputPort(api)
    with pytest.raises(ValueError):
        OutputPort(api, spec="x", virtual="y")


def _mismatch(messages: list[list[int]], wanted: list[list[int]]) -> str | None:
    """None when messages == wanted (all distinct), else which went missing, came twice or stepped back."""
    if messages == wanted:
        return None
    index = {tuple(m): k for k, m in enumerate(wanted)}
    got = [index.get(tuple(m), -1) for m in messages]
    counts = Counter(got)
    missing = [k for k in range(len(wanted)) if k not in counts]
    twice = sorted(k for k, n in counts.items() if n > 1 and k >= 0)
    back = next((i for i in range(1, len(got)) if got[i] < got[i - 1]), None)
    return (f"{len(messages)} of {len(wanted)} arrived: missing {missing[:12]}, repeated {twice[:12]}, "
            f"{counts[-1]} unexpected, first step back at position {back}")


def _send_burst(api: int, wanted: list[list[int]], rate: float | None):
    """Send wanted into a virtual InputPort at rate messages per second (None: at once) while another thread
    burns CPU; the (message, t) pairs that arrived, the send times (monotonic seconds) and the burner's rounds.
    """
    received: list[tuple[list[int], float]] = []
    sent_at = []
    with (
        InputPort(api, virtual="Clara In", client=CLARA, sink=lambda message, t: received.append((message, t))),
        OutputPort(api, spec="Clara In", client=TESTER) as out,
        _burning_cpu() as rounds,
    ):
        _await_route(out, lambda: bool(received))
        received.clear()
        start = time.monotonic()
        for k, message in enumerate(wanted):
            if rate is not None:
                while time.monotonic() < start + k / rate:
                    time.sleep(0.0002)
            sent_at.append(time.monotonic())
            out.send(message)
        _wait_for(lambda: len(received) >= len(wanted), timeout=3.0)
        time.sleep(0.05)  # room for anything extra to show up
    return received, sent_at, rounds[0]


@pytest.mark.parametrize("rate", [1000.0, None], ids=["1000-per-second", "as-fast-as-possible"])
def test_a_burst_arrives_complete_and_in_order_while_another_thread_burns_cpu(
        jack_server, jack_realtime, rate):  # noqa: F811
    api = resolve_api("jack")
    wanted = [[0x90 | k % 16, k % 128, 1 + k % 127] for k in range(1000)]  # all distinct
    for _ in range(2):
        received, sent_at, rounds = _send_burst(api, wanted, rate)
        problem = _mismatch([message for message, _ in received], wanted)
        if problem is None:
            break
        # JACK itself now and then loses a cycle's messages (a starved reader) or delivers them twice (a
        # starved writer) when this small VM is busy with two xdist workers, two servers and two burners:
        # one more try, since a reader that loses or reorders messages does so every time
    assert rounds > 0
    if problem and not jack_realtime:
        pytest.xfail(f"{problem}: JACK runs without realtime scheduling here, so its clients miss cycles under load")
    assert problem is None, problem
    times = [t for _, t in received]
    assert times == sorted(times)
    assert all(t >= s for t, s in zip(times, sent_at, strict=True))  # stamped on arrival, after the send
    if rate is not None:
        assert times[-1] - times[0] > 0.9


def test_close_joins_the_reader_and_can_be_repeated(jack_server):  # noqa: F811
    api = resolve_api("jack")
    inp = InputPort(api, virtual="Clara In", client=CLARA)
    readers = [t for t in threading.enumerate() if t.name == f"clara-midi-in {inp.name}"]
    assert len(readers) == 1 and readers[0].is_alive()
    inp.close()
    assert not readers[0].is_alive()
    inp.close()
    assert inp.get() is None

    out = OutputPort(api, virtual="Clara Out", client=CLARA)
    out.close()
    out.close()
    with pytest.raises(ClaraError, match="is closed"):
        out.send([0x90, 60, 100])
    assert list_ports(api) == ([], [])


def test_describe_ports_lists_the_virtual_ports(jack_server):  # noqa: F811
    api = resolve_api("jack")
    assert describe_ports(api) == "MIDI system: jack\ninputs:\n  (none)\noutputs:\n  (none)"
    with (
        InputPort(api, virtual="Clara In", client=CLARA) as inp,
        OutputPort(api, virtual="Clara Out", client=CLARA) as out,
    ):
        text = describe_ports(api)
    assert text == f"MIDI system: jack\ninputs:\n  0: {out.name}\noutputs:\n  0: {inp.name}"


def test_sending_after_the_receiver_closes_does_not_fail(jack_server):  # noqa: F811
    api = resolve_api("jack")
    with (
        InputPort(api, virtual="Clara In", client=CLARA) as inp,
        OutputPort(api, spec="Clara In", client=TESTER) as out,
    ):
        _await_queue_route(out, inp)
        inp.close()
        for _ in range(100):
            out.send([0x80, 60, 0])


def test_sending_after_the_receiving_process_dies_does_not_crash(jack_server):  # noqa: F811
    api = resolve_api("jack")
    code = textwrap.dedent("""
        import os, time, rtmidi
        midi = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"doomed-{os.getpid()}")
        midi.open_virtual_port("Doomed In")
        print("ready", flush=True)
        time.sleep(60)
    """)
    receiver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        with OutputPort(api, spec="Doomed In", client=CLARA) as out:
            out.send([0x90, 60, 100])
            receiver.kill()
            receiver.wait(timeout=10)
            for _ in range(200):
                out.send([0x80, 60, 0])
                time.sleep(0.0005)
            assert _wait_for(lambda: not any("Doomed In" in n for n in list_ports(api)[1]))
            out.send([0xB0, 123, 0])
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
        receiver.stdout.close()
