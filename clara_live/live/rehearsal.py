"""A live session played through on a fake clock: the session and worker `clara live` runs, fed
a performance's MIDI messages at their times, with no port, no thread and no sleep.

For measuring and testing Clara's live answers (benchmarks/answer_quality.py --path live,
tests/test_live_answers.py) and her accompaniment (`accompany`: benchmarks/accompaniment.py,
tests/test_live_accompany.py): the worker runs on the caller's thread, reading the same clock,
so what she plays is what she would play live given time enough to sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from clara_live.live.commands import Answer, Log, Send
from clara_live.live.midi import NOTE_OFF, is_note_on, kind
from clara_live.live.scheduler import Schedule
from clara_live.live.session import Session
from clara_live.live.worker import Worker
from clara_live.sampling.sampler import Sampler

TICK = 0.002  # seconds between the session's ticks, as the app's loop


def first_answer(session: Session, sampler: Sampler, events: Sequence[tuple[float, Sequence[int]]],
                 patience: float = 60.0, tick: float = TICK) -> tuple[Answer | None, list[tuple[float, tuple]]]:
    """Play `events` (seconds, MIDI message) into the session, ticking it every `tick` and
    handing its commands to a worker on `sampler`, until Clara's first answer is over (or
    `patience` seconds after the last event brought none). Returns the answer (None if there
    was none) and what she sent: (time, message), note-offs and note-ons as scheduled."""
    now = [0.0]
    sent: list[tuple[float, tuple]] = []
    worker = Worker(sampler, lambda t, message, *rest: sent.append((t, message)), lookahead=1e9,
                    clock=lambda: now[0], part=session.live.clara_part)
    events = sorted(events, key=lambda e: (e[0], kind(e[1]) != NOTE_OFF))  # at one time: offs first
    answered, i, t = None, 0, 0.0
    limit = (events[-1][0] if events else 0.0) + patience
    while t < limit:
        commands = []
        while i < len(events) and events[i][0] <= t:
            now[0] = events[i][0]
            commands += session.on_event(list(events[i][1]), events[i][0])
            i += 1
        now[0] = t
        commands += session.on_tick(t)
        for command in commands:
            if isinstance(command, Send | Log):
                continue
            if answered is None and isinstance(command, Answer):
                answered = command
            worker.handle(command)
        if answered is not None and t > answered.end_time + 0.05:
            break
        t += tick
    return answered, sent


class Rehearsal(NamedTuple):
    """What an accompaniment rehearsal sent on her track, (time sent, message) in sending order; the
    worker (its `latencies`: note in -> plan updated, on the clock as it ran); and how late each note-on
    scheduled for a time already past was (seconds, in the order scheduled; a note-off may be, as a
    replan closes her notes at the step where it reads the player)."""

    sent: list[tuple[float, tuple]]
    worker: Worker
    late: list[float]


def accompany(session: Session, sampler: Sampler, events: Sequence[tuple[float, Sequence[int]]],
              tail: float = 4.0, tick: float = TICK) -> Rehearsal:
    """Play `events` (seconds, MIDI message) as the melody into an accompanying session (`live.mode:
    accompany`) and go on `tail` seconds after the last. Her notes go through the output scheduler's
    pure queue (`Schedule`): a replan's cancel drops her unsounded plan and closes what it leaves
    sounding, as live. A message scheduled for a time already past goes out when it is scheduled, as
    the live scheduler sends it, and is stamped so (its lateness kept in `late`)."""
    now = [0.0]
    schedule = Schedule()
    sent: list[tuple[float, tuple]] = []
    late: list[float] = []

    def cancel(tag: int, after: float, close: bool = True) -> None:
        sent.extend((now[0], e.message) for e in schedule.cancel(tag, after, now[0], close))

    def add(t: float, message: Sequence[int], track: str, tag: int | None = None) -> None:
        if t < now[0] and is_note_on(message):
            late.append(now[0] - t)
        schedule.add(max(t, now[0]), message, track, tag)

    worker = Worker(sampler, add, lookahead=1e9, clock=lambda: now[0], accompany=True, cancel=cancel,
                    note_beats=session.live.accompany_max_note_beats, wait_on=session.live.accompany_wait_on)
    events = sorted(events, key=lambda e: (e[0], kind(e[1]) != NOTE_OFF))
    i, t = 0, 0.0
    limit = (events[-1][0] if events else 0.0) + tail
    while t < limit:
        commands = []
        while i < len(events) and events[i][0] <= t:
            now[0] = events[i][0]
            sent.extend((e.time, e.message) for e in schedule.due(now[0]))
            for command in session.on_event(list(events[i][1]), events[i][0]):
                if not isinstance(command, Send | Log):
                    worker.handle(command)
            i += 1
        now[0] = t
        sent.extend((e.time, e.message) for e in schedule.due(t))
        commands += session.on_tick(t)
        for command in commands:
            if not isinstance(command, Send | Log):
                worker.handle(command)
        t += tick
    return Rehearsal(sent, worker, late)
