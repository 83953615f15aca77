"""The output scheduler: the pure Schedule (time order, open-note bookkeeping, cancel, panic)
with times passed in, and the Scheduler thread against a recording output on the real clock
(events a few tens of milliseconds ahead, so these tests stay well under a second)."""

from __future__ import annotations

import threading
import time

import pytest

from clara_live.live.midi import ALL_NOTES_OFF, CONTROL, NOTE_OFF, NOTE_ON
from clara_live.live.scheduler import Event, Schedule, Scheduler

CLOCK = 0xF8


def messages(events: list[Event]) -> list[tuple[int, ...]]:
    return [e.message for e in events]


# --- Schedule -------------------------------------------------------------------------------


def test_due_returns_what_is_due_in_time_order_ties_in_insertion_order():
    s = Schedule()
    s.add(3.0, (NOTE_ON, 64, 80), "clara", 1)
    s.add(1.0, (NOTE_ON, 60, 80), "clara", 1)
    s.add(2.0, (CONTROL, 64, 127), "player")
    s.add(1.0, (NOTE_ON, 62, 80), "player")  # a tie with 60: after it, as added
    s.add(1.0, (CLOCK,), "clock")
    s.add(5.0, (NOTE_OFF, 60, 0), "clara", 1)
    assert len(s) == 6 and s.next_time() == 1.0
    assert s.due(0.999) == []
    first = s.due(2.0)
    assert messages(first) == [(NOTE_ON, 60, 80), (NOTE_ON, 62, 80), (CLOCK,), (CONTROL, 64, 127)]
    assert [e.time for e in first] == [1.0, 1.0, 1.0, 2.0]
    assert [e.track for e in first] == ["clara", "player", "clock", "player"]
    assert len(s) == 2 and s.next_time() == 3.0
    assert messages(s.due(10.0)) == [(NOTE_ON, 64, 80), (NOTE_OFF, 60, 0)]
    assert s.next_time() is None and s.due(100.0) == []


def test_due_books_the_notes_it_opens_and_closes():
    s = Schedule()
    s.add(1.0, (NOTE_ON | 2, 60, 80), "clara", 7)
    s.add(1.0, (NOTE_ON, 60, 80), "player")  # the same key on another channel is another note
    s.due(1.0)
    assert s.open == {(2, 60): ("clara", 7), (0, 60): ("player", None)}
    s.add(2.0, (NOTE_OFF | 2, 60, 0), "clara", 7)
    s.add(2.0, (NOTE_ON, 60, 0), "player")  # velocity 0: a note-off
    assert messages(s.due(2.0)) == [(NOTE_OFF | 2, 60, 0), (NOTE_ON, 60, 0)]
    assert s.open == {}
    assert s.channels == {0, 2}


def test_a_re_struck_open_note_gets_an_off_before_its_on():
    s = Schedule()
    s.add(1.0, (NOTE_ON, 60, 80), "clara", 1)
    s.add(1.5, (NOTE_ON, 60, 90), "clara", 1)
    s.add(2.0, (NOTE_OFF, 60, 0), "clara", 1)
    s.add(3.0, (NOTE_OFF, 60, 0), "clara", 1)  # the first note's own off, now with nothing to close
    events = s.due(3.0)
    assert messages(events) == [(NOTE_ON, 60, 80), (NOTE_OFF, 60, 0), (NOTE_ON, 60, 90), (NOTE_OFF, 60, 0)]
    assert [e.time for e in events] == [1.0, 1.5, 1.5, 2.0]
    assert events[1].track == "clara" and events[1].tag == 1
    assert s.open == {}


def test_an_off_for_a_note_not_open_is_dropped():
    s = Schedule()
    s.add(1.0, (NOTE_OFF, 60, 0), "clara", 1)
    s.add(1.0, (NOTE_ON | 1, 60, 0), "clara", 1)
    s.add(1.0, (NOTE_ON, 61, 80), "clara", 1)
    assert messages(s.due(1.0)) == [(NOTE_ON, 61, 80)]
    assert s.open == {(0, 61): ("clara", 1)}


def test_cancel_drops_only_that_tag_s_later_events_and_closes_its_open_notes():
    s = Schedule()
    s.add(1.0, (NOTE_ON, 60, 80), "clara", 1)
    s.add(1.0, (NOTE_ON, 48, 80), "player")
    s.add(1.0, (NOTE_ON | 1, 50, 80), "clara", 2)
    s.due(1.0)
    s.add(1.5, (NOTE_ON, 64, 80), "clara", 1)  # before `after`: kept
    s.add(2.5, (NOTE_OFF, 60, 0), "clara", 1)  # after: dropped
    s.add(2.5, (NOTE_ON, 67, 80), "clara", 1)  # after: dropped
    s.add(2.5, (NOTE_OFF | 1, 50, 0), "clara", 2)  # another answer: kept
    s.add(2.5, (NOTE_OFF, 48, 0), "player")  # untagged: kept
    s.add(3.0, (CLOCK,), "clock")
    offs = s.cancel(1, after=2.0, now=1.2)
    assert messages(offs) == [(NOTE_OFF, 60, 0)]
    assert offs[0].time == 1.2 and offs[0].tag == 1 and offs[0].track == "clara"
    assert (0, 60) not in s.open and (0, 48) in s.open and (1, 50) in s.open
    later = s.due(10.0)
    assert messages(later) == [(NOTE_ON, 64, 80), (NOTE_OFF | 1, 50, 0), (NOTE_OFF, 48, 0), (CLOCK,)]
    # what the kept 64 opened is the tag's again: a second cancel closes it
    assert messages(s.cancel(1, after=0.0, now=11.0)) == [(NOTE_OFF, 64, 0)]
    assert s.open == {}


def test_notes_of_a_cancelled_answer_that_arrive_after_its_cancel_are_dropped():
    """The worker may hand over notes it sampled while the cancel was on its way: none of them sounds."""
    s = Schedule()
    s.add(1.0, (NOTE_ON, 60, 80), "clara", 1)
    s.due(1.0)
    assert messages(s.cancel(1, after=1.5, now=1.2)) == [(NOTE_OFF, 60, 0)]
    s.add(1.4, (NOTE_ON, 62, 80), "clara", 1)  # before the cancel's time: still the answer's
    s.add(1.6, (NOTE_ON, 64, 80), "clara", 1)  # late, after it: dropped
    s.add(1.7, (NOTE_OFF, 64, 0), "clara", 1)
    s.add(1.6, (NOTE_ON, 65, 80), "clara", 2)  # the next answer plays
    assert messages(s.due(10.0)) == [(NOTE_ON, 62, 80), (NOTE_ON, 65, 80)]
    s.cancel(1, after=3.0, now=10.0)  # a second cancel never moves the line later
    s.add(2.0, (NOTE_ON, 67, 80), "clara", 1)
    assert s.due(20.0) == []


def test_cancel_with_nothing_of_the_tag_changes_nothing():
    s = Schedule()
    s.add(1.0, (NOTE_ON, 60, 80), "clara", 2)
    assert s.cancel(1, after=0.0, now=0.5) == []
    assert len(s) == 1


def test_panic_closes_every_open_note_then_all_notes_off_on_every_used_channel():
    s = Schedule()
    s.add(1.0, (NOTE_ON | 3, 64, 80), "clara", 1)
    s.add(1.0, (NOTE_ON, 60, 80), "player")
    s.add(1.0, (NOTE_ON | 9, 76, 110), "metronome")
    s.add(1.0, (NOTE_OFF | 9, 76, 0), "metronome")
    s.add(1.0, (CONTROL | 5, 64, 127), "player")  # a channel used with no note
    s.add(1.0, (CLOCK,), "clock")  # system messages use no channel
    s.due(1.0)
    s.add(2.0, (NOTE_OFF | 3, 64, 0), "clara", 1)
    s.add(2.0, (NOTE_ON, 72, 80), "clara", 1)
    events = s.panic(now=1.5)
    assert messages(events) == [(NOTE_OFF, 60, 0), (NOTE_OFF | 3, 64, 0),
                                (CONTROL, ALL_NOTES_OFF, 0), (CONTROL | 3, ALL_NOTES_OFF, 0),
                                (CONTROL | 5, ALL_NOTES_OFF, 0), (CONTROL | 9, ALL_NOTES_OFF, 0)]
    assert all(e.time == 1.5 for e in events)
    assert len(s) == 0 and s.next_time() is None and s.open == {}
    assert s.due(100.0) == []
    # a second panic has no notes left to close, but still silences the channels
    assert messages(s.panic(now=2.0)) == [(CONTROL | ch, ALL_NOTES_OFF, 0) for ch in (0, 3, 5, 9)]


def test_a_panic_with_nothing_sent_sends_nothing():
    assert Schedule().panic(now=0.0) == []


# --- Scheduler (a thread, the real clock) --------------------------------------------------


class Recorder:
    """An output that notes what it was sent, and when."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[tuple[int, ...], float]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def send(self, message) -> None:
        if self.fail:
            raise OSError("port lost")
        with self.lock:
            self.sent.append((tuple(message), time.monotonic()))

    def messages(self) -> list[tuple[int, ...]]:
        with self.lock:
            return [m for m, _ in self.sent]


def _wait_for(condition, timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_the_scheduler_sends_each_event_in_order_and_never_early():
    out = Recorder()
    sent_events: list[tuple[Event, float]] = []
    scheduler = Scheduler(out, on_sent=lambda event, at: sent_events.append((event, at)))
    try:
        now = time.monotonic()
        offsets = [0.05, 0.01, 0.03, 0.02, 0.04, 0.03, 0.015]
        for i, offset in enumerate(offsets):
            scheduler.add(now + offset, (NOTE_ON, 60 + i, 80), "clara", 1)
        _wait_for(lambda: len(out.messages()) == len(offsets))
        expected = sorted(range(len(offsets)), key=lambda i: (offsets[i], i))
        assert out.messages() == [(NOTE_ON, 60 + i, 80) for i in expected]
        for message, sent_at in out.sent:
            assert sent_at >= now + offsets[message[1] - 60]
        assert [e.message for e, _ in sent_events] == out.messages()
        assert all(at >= e.time for e, at in sent_events)
        assert scheduler.error is None
    finally:
        scheduler.panic()


def test_after_panic_nothing_else_is_sent():
    out = Recorder()
    scheduler = Scheduler(out)
    now = time.monotonic()
    scheduler.add(now, (NOTE_ON, 60, 80), "clara", 1)
    scheduler.add(now, (NOTE_ON | 9, 76, 110), "metronome")
    _wait_for(lambda: len(out.messages()) == 2)
    now = time.monotonic()
    for i in range(5):  # pending: due 60 to 100 ms from now (a margin for a loaded machine)
        scheduler.add(now + 0.06 + 0.01 * i, (NOTE_ON, 70 + i, 80), "clara", 1)
    scheduler.add(now + 0.08, (NOTE_OFF, 60, 0), "clara", 1)
    scheduler.panic()
    after_panic = out.messages()[2:]
    assert after_panic == [(NOTE_OFF, 60, 0), (NOTE_OFF | 9, 76, 0),
                           (CONTROL, ALL_NOTES_OFF, 0), (CONTROL | 9, ALL_NOTES_OFF, 0)]
    time.sleep(0.12)  # past every pending event's time
    assert out.messages()[2:] == after_panic
    scheduler.add(time.monotonic(), (NOTE_ON, 61, 80), "clara", 1)  # the thread is gone
    time.sleep(0.02)
    assert out.messages()[2:] == after_panic
    scheduler.panic()  # idempotent: nothing open, the channels silenced again
    assert out.messages()[2 + len(after_panic):] == [(CONTROL, ALL_NOTES_OFF, 0), (CONTROL | 9, ALL_NOTES_OFF, 0)]


def test_cancel_sends_the_answer_s_offs_at_once_and_drops_its_future():
    out = Recorder()
    scheduler = Scheduler(out)
    try:
        now = time.monotonic()
        scheduler.add(now, (NOTE_ON, 60, 80), "clara", 1)
        scheduler.add(now, (NOTE_ON, 48, 80), "player")
        _wait_for(lambda: len(out.messages()) == 2)
        now = time.monotonic()
        scheduler.add(now + 0.08, (NOTE_OFF, 60, 0), "clara", 1)
        scheduler.add(now + 0.08, (NOTE_ON, 64, 80), "clara", 1)
        scheduler.add(now + 0.08, (NOTE_OFF, 48, 0), "player")
        scheduler.cancel(1, after=now + 0.01)
        assert out.messages()[2:] == [(NOTE_OFF, 60, 0)]
        _wait_for(lambda: len(out.messages()) == 4)
        time.sleep(0.01)
        assert out.messages()[3:] == [(NOTE_OFF, 48, 0)]
    finally:
        scheduler.panic()


def test_a_lost_port_ends_the_thread_with_its_error_and_panic_still_returns():
    out = Recorder(fail=True)
    scheduler = Scheduler(out)
    scheduler.add(time.monotonic(), (NOTE_ON, 60, 80), "clara", 1)
    _wait_for(lambda: scheduler.error is not None)
    assert isinstance(scheduler.error, OSError)
    scheduler.panic()  # tolerant: the panic into a lost port raises nothing


@pytest.mark.parametrize("spin", [0.0, 0.002])
def test_an_event_added_earlier_than_the_one_waited_for_wakes_the_thread(spin):
    out = Recorder()
    scheduler = Scheduler(out, spin=spin)
    try:
        now = time.monotonic()
        scheduler.add(now + 0.5, (NOTE_ON, 72, 80), "clara", 1)
        time.sleep(0.005)  # the thread now sleeps toward the far event
        scheduler.add(now + 0.02, (NOTE_ON, 60, 80), "clara", 1)
        _wait_for(lambda: out.messages(), timeout=0.3)
        [(message, sent_at)] = out.sent
        assert message == (NOTE_ON, 60, 80) and now + 0.02 <= sent_at < now + 0.3
    finally:
        scheduler.panic()
