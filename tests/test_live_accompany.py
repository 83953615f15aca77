"""Accompaniment (`live.mode: accompany`, issue 26) on a fake clock: the session's commands alone,
then the session, the worker with the shipped model and the scheduler's queue played through
(live/rehearsal.py:accompany): she plays with the melody on her channel, under it, on the grid,
rests a bar after the player and begins again, and no input leaves a note of hers sounding."""

from __future__ import annotations

import os
import subprocess
import sys

import mido
import pytest
from conftest import REPO, tiny_engine

from clara_live.codec.notewise import NotewiseCodec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import ConfigError, load_config
from clara_live.engine import build_engine
from clara_live.live.commands import Accompany, Answer, Feed, Stop
from clara_live.live.midi import NOTE_OFF, NOTE_ON
from clara_live.live.rehearsal import accompany
from clara_live.live.scheduler import Schedule
from clara_live.live.session import Session
from clara_live.live.worker import Worker
from clara_live.model import load_model
from clara_live.sampling.sampler import Sampler

MODEL = REPO / "trained_models" / "clara-notewise"
BEAT = 0.6  # 100 bpm
STEP = BEAT / 12
BAR = 4 * BEAT
SCALE = [72, 74, 76, 77, 79, 77, 76, 74, 72, 71, 72, 74, 76, 74, 72, 72]


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL)


def _session(*overrides: str, vocab: Vocabulary | None = None):
    config = load_config(overrides=["live.mode=accompany", *overrides])
    if vocab is None:
        vocab = Vocabulary(NotewiseCodec(config.codec).vocabulary(), config.codec)
    return Session(config.live, vocab, config.sampling, 0.0), config


def _melody(pitches, start: float = 1.0, every: float = BEAT, hold: float = 0.9, velocity: int = 90):
    events = []
    for i, p in enumerate(pitches):
        t = start + i * every
        events += [(t, (NOTE_ON, p, velocity)), (t + every * hold, (NOTE_OFF, p, 0))]
    return events


def _rehearse(loaded, events, *overrides: str, seed: int = 1, tail: float = 4.0):
    """The rehearsal (sent, worker, late) of `events` accompanied, and the config it ran with."""
    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    session, config = _session(*overrides, vocab=vocab)
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                      config.sampling, seed=seed)
    return accompany(session, sampler, events, tail=tail), config


def _play(loaded, events, *overrides: str, seed: int = 1, tail: float = 4.0):
    (sent, worker, _), config = _rehearse(loaded, events, *overrides, seed=seed, tail=tail)
    return sent, worker, config


def _notes(sent):
    """Her notes as (on, off, pitch, channel, velocity), and those never closed."""
    open_: dict[tuple[int, int], tuple[float, int]] = {}
    notes = []
    for t, m in sent:
        key = (m[0] & 0x0F, m[1])
        if m[0] & 0xF0 == NOTE_ON and m[2] > 0:
            if key in open_:
                notes.append((open_[key][0], t, m[1], key[0], open_[key][1]))
            open_[key] = (t, m[2])
        elif key in open_:
            on, velocity = open_.pop(key)
            notes.append((on, t, m[1], key[0], velocity))
    return notes, open_


def _melody_notes(events):
    """The melody's keys as (on, off, pitch), pedal not counted."""
    held: dict[int, float] = {}
    out = []
    for t, m in sorted(events, key=lambda e: e[0]):
        if m[0] & 0xF0 == NOTE_ON and m[2] > 0:
            held[m[1]] = t
        elif m[0] & 0xF0 in (NOTE_ON, NOTE_OFF) and m[1] in held:
            out.append((held.pop(m[1]), t, m[1]))
    return out + [(on, float("inf"), p) for p, on in held.items()]


def _check_clean(sent, events):
    """No note of hers left sounding, none struck on a pitch the melody holds at that moment."""
    notes, left = _notes(sent)
    assert not left, f"notes left sounding: {left}"
    melody = _melody_notes(events)
    for on, _, pitch, _, _ in notes:
        assert not any(m_on <= on < m_off and p == pitch for m_on, m_off, p in melody), (on, pitch)
    return notes


# --- the session alone -------------------------------------------------------------------------

def _drive(session, events, until: float, t: float = 0.0):
    """Events at their times, the session ticked every 2 ms as the app does, until `until`: (time, command)."""
    out = []
    events = sorted(events, key=lambda e: e[0])
    while t < until:
        t += 0.002
        while events and events[0][0] <= t:
            at, m = events.pop(0)
            out += [(at, c) for c in session.on_event(list(m), at)]
        out += [(t, c) for c in session.on_tick(t)]
    return out


def test_the_session_plans_at_each_note_rests_after_a_bar_and_begins_again():
    session, _ = _session()
    out = _drive(session, [(t, m) for t, m in _melody([72, 74, 76, 77]) if m[0] == NOTE_ON], 1.0 + 3 * BEAT + 0.01)
    plans = [c for _, c in out if isinstance(c, Accompany) and c.time is not None]
    assert len(plans) == 4 and len({p.id for p in plans}) == 1
    assert plans[-1].register == (72, 77) and 77 in plans[-1].held
    assert not any(isinstance(c, Answer) for _, c in out)
    assert session.turn == "clara"
    last = 1.0 + 3 * BEAT
    offs = [(last + 0.1, (NOTE_OFF, p, 0)) for p in (72, 74, 76, 77)]
    out = _drive(session, offs, last + BAR + 0.1, t=last + 0.01)
    stops = [(t, c) for t, c in out if isinstance(c, Stop)]
    assert len(stops) == 1 and last + BAR <= stops[0][0] < last + BAR + 0.01
    assert session.turn == "listening"
    again = session.on_event([NOTE_ON, 70, 80], last + BAR + 1.0)
    assert [c for c in again if isinstance(c, Accompany)][0].id != plans[0].id


def test_a_beat_without_a_note_carries_the_plan_on():
    session, _ = _session()
    out = _drive(session, [(1.0, (NOTE_ON, 72, 80))], 1.0 + 2 * BEAT)
    carried = [c for _, c in out if isinstance(c, Accompany) and c.time is None]
    assert len(carried) == 2 and all(c.held == (72,) for c in carried)


def test_her_grid_moves_with_a_player_who_drifts_and_the_stream_keeps_one_numbering():
    """A player who speeds up from the session's 100 bpm to 110 over 32 quarters (the followed beat
    agrees with the grid at each step): each plan is timed on the grid the player's notes are written on,
    from a step whose time has not passed, and by the end that grid is the player's beat."""
    session, _ = _session("live.bpm=100")
    times, t = [], 1.0
    for i in range(32):
        times.append(t)
        t += 60.0 / (100 + 10 * i / 31)
    events = [(at, (NOTE_ON, 72, 80)) for at in times] + [(at + 0.2, (NOTE_OFF, 72, 0)) for at in times]
    out = _drive(session, events, times[-1] + 0.05)
    plans = [(at, c) for at, c in out if isinstance(c, Accompany) and c.time is not None]
    assert len(plans) == 32 and len({c.id for _, c in plans}) == 1
    for at, plan in plans:
        assert plan.grid.time_of(plan.step) >= at - plan.grid.step_seconds  # never planned in the past
    at, last = plans[-1]
    assert abs(last.grid.bpm / 110 - 1) < 0.02, last.grid.bpm
    beat = last.grid.step_at(at) / 12
    assert abs(beat - round(beat)) * 60 / last.grid.bpm < 0.02  # the player's note on her grid's beat
    assert session.now == last.step  # the stream's step is the plan's: one numbering


# --- with the model ----------------------------------------------------------------------------

def test_she_plays_with_the_melody_under_it_on_her_channel_and_on_the_grid(loaded):
    events = _melody(SCALE)
    sent, worker, config = _play(loaded, events)
    notes = _check_clean(sent, events)
    melody = _melody_notes(events)
    during = [n for n in notes if 1.0 <= n[0] < 1.0 + len(SCALE) * BEAT]
    assert len(during) >= len(SCALE)  # she plays while the melody does
    assert {n[3] for n in notes} == {config.live.channel - 1}
    for on, _, pitch, _, velocity in during:
        sounding = [p for m_on, m_off, p in melody if m_on <= on < m_off]
        assert all(pitch < p for p in sounding), (on, pitch, sounding)
        assert velocity < 90  # under the player's level
        grid = (on - 1.0) / STEP  # the first note pinned the grid: its steps every STEP from 1.0
        assert abs(grid - round(grid)) * STEP <= 0.02
    assert worker.accompanist.plans >= len(SCALE)


def test_above_keeps_her_over_the_melody(loaded):
    events = _melody([60, 62, 64, 65, 67, 65, 64, 62])
    sent, _, _ = _play(loaded, events, "live.accompany_above=true")
    notes = _check_clean(sent, events)
    melody = _melody_notes(events)
    assert notes
    for on, _, pitch, _, _ in notes:
        assert all(pitch > p for m_on, m_off, p in melody if m_on <= on < m_off)


@pytest.mark.parametrize("beats", [0.5, 1.0])
def test_her_notes_end_within_the_longest_asked_for(loaded, beats):
    """live.accompany_max_note_beats: under a melody of half notes (her notes free to ring), none of hers
    outlasts the bound by more than a step (the grammar closes an overdue note at the next step it writes)."""
    events = _melody(SCALE[:8], every=2 * BEAT, hold=0.95)
    sent, _, _ = _play(loaded, events, f"live.accompany_max_note_beats={beats}")
    notes = _check_clean(sent, events)
    assert len(notes) > 8
    longest = max(off - on for on, off, *_ in notes)
    assert longest <= beats * BEAT + STEP + 1e-6, longest / BEAT


def test_she_rests_within_a_bar_of_the_player_and_begins_again(loaded):
    first = _melody(SCALE[:8])
    second = _melody(SCALE[8:], start=1.0 + 8 * BEAT + 6.0)
    sent, _, _ = _play(loaded, first + second)
    notes = _check_clean(sent, first + second)
    stopped = 1.0 + 7 * BEAT  # the last key pressed
    gap = [n for n in notes if stopped + BAR + 0.01 < n[0] < second[0][0] - 0.01]
    assert not gap, gap  # silent through the rest
    assert all(off <= stopped + BAR + 0.01 for on, off, *_ in notes if on < stopped + BAR)  # all closed by then
    assert any(n[0] >= second[0][0] for n in notes)  # she begins again


def test_a_replan_drops_her_unsounded_plan_and_leaves_nothing_sounding(loaded):
    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    session, config = _session(vocab=vocab)
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                      config.sampling, seed=2)
    now = [0.0]
    schedule = Schedule()
    worker = Worker(sampler, schedule.add, clock=lambda: now[0], accompany=True,
                    cancel=lambda tag, after, close=True: schedule.cancel(tag, after, now[0], close))
    sent = []
    for t, key in ((1.0, 76), (1.0 + BEAT / 3, 74)):  # the second note comes inside her first plan
        now[0] = t
        sent += schedule.due(t)
        for command in session.on_event([NOTE_ON, key, 90], t):
            if isinstance(command, Feed | Accompany):
                worker.handle(command)
        tag = worker.accompanist.tag
        assert all(e.tag == tag or e.time <= t for e in schedule._heap)  # the old plan's unsounded notes dropped
    assert worker.accompanist.plans == 2
    t = 1.0 + BEAT / 3
    while t < 1.0 + 2 * BAR:
        t += 0.002
        now[0] = t
        sent += schedule.due(t)
        released = []
        if session.keys and t >= 1.0 + BEAT:  # the player lets go after a beat
            released = [c for k in (74, 76) for c in session.on_event([NOTE_OFF, k, 0], t)]
        for command in released + session.on_tick(t):
            if isinstance(command, Feed | Accompany | Stop):
                worker.handle(command)
    sent += schedule.due(t + 1.0)
    assert not schedule.open, schedule.open  # every note of hers closed once she rests


BAD_INPUTS = ["one held note", "30 notes a second", "chords", "pedal held", "stop mid-bar"]


def _bad_input(name: str):
    if name == "one held note":
        events = [(1.0, (NOTE_ON, 67, 80)), (9.0, (NOTE_OFF, 67, 0))]
    elif name == "30 notes a second":
        events = _melody([60 + (i * 7) % 24 for i in range(90)], every=1 / 30, hold=0.5)
    elif name == "chords":
        events = []
        for i, root in enumerate([60, 65, 67, 60, 62, 67]):
            for p in (root, root + 4, root + 7):
                events += [(1.0 + i * BEAT, (NOTE_ON, p, 70)), (1.0 + (i + 0.9) * BEAT, (NOTE_OFF, p, 0))]
    elif name == "pedal held":
        events = [(0.9, (0xB0, 64, 127)), *_melody(SCALE[:10])]
    else:
        events = _melody(SCALE[:6], every=BEAT / 2)
    return events


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_never_crashes_or_leaves_a_note_on(loaded, name):
    events = _bad_input(name)
    sent, _, _ = _play(loaded, events)
    _check_clean(sent, events)


@pytest.mark.parametrize("imagine", [False, True])
@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_with_a_chamber_model_leaves_nothing_on(monkeypatch, name, imagine):
    """The same inputs to a chamber model (a tiny one, steered to v and to notes under the melody), her plan
    forbidding or imagining the melody: nothing of hers is left sounding, none struck on the melody's pitch."""
    import clara_live.live.accompany as accompany_module

    monkeypatch.setattr(accompany_module, "IMAGINE", imagine)
    config = load_config(overrides=["live.mode=accompany", "codec.chamber=true"])
    tokens = NotewiseCodec(config.codec).vocabulary()

    def bias(token: str) -> float:
        return 3.0 if token.startswith(("v", "endp")) or token.startswith("p") and int(token[1:]) < 27 else 0.0

    sampler = Sampler(tiny_engine(tokens, bias=bias), tokens, config.codec, config.sampling, seed=5)
    events = _bad_input(name)
    sent, worker, _ = accompany(Session(config.live, Vocabulary(tokens, config.codec), config.sampling, 0.0), sampler,
                             events)
    assert worker.accompanist.imagine == imagine
    assert _check_clean(sent, events)  # she played, and cleanly


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_chords_releases_each_replanning_her_leave_nothing_sounding(loaded, seed):
    """A chord's three releases come one by one, a little before a step: each is read at once and she plans
    again from it, at that step, three times; her notes that step holds (sounding after the releases came)
    keep their offs through every replan."""
    events = []
    for i, root in enumerate([60, 65, 67, 60, 62, 67, 65, 60]):
        for p in (root, root + 4, root + 7):
            events += [(1.0 + i * BEAT, (NOTE_ON, p, 70)), (1.0 + (i + 0.9) * BEAT, (NOTE_OFF, p, 0))]
    sent, _, _ = _play(loaded, events, seed=seed)
    _check_clean(sent, events)


@pytest.mark.parametrize("imagine", [False, True])
def test_with_a_chamber_model_the_melody_is_read_as_v_and_she_plays_p_alone(monkeypatch, imagine):
    """A model with families (codec.chamber: a song's melody in v over its piano part in p) hears the player
    as v and plays only p notes, however much the tiny model here wants v. Her plan either forbids the melody's
    tokens or imagines the melody going on (v tokens sampled); what a replan reads again is the melody played,
    never one imagined."""
    import clara_live.live.accompany as accompany_module
    from clara_live.live.accompany import Accompanist

    monkeypatch.setattr(accompany_module, "IMAGINE", imagine)

    config = load_config(overrides=["live.mode=accompany", "codec.chamber=true", "sampling.style=pop"])
    tokens = [*NotewiseCodec(config.codec).vocabulary(), "style_pop"]
    vocab = Vocabulary(tokens, config.codec)
    def bias(token: str) -> float:  # steered to v, and to p notes under the melody
        return 3.0 if token.startswith(("v", "endp")) or token.startswith("p") and int(token[1:]) < 27 else 0.0

    engine = tiny_engine(tokens, bias=bias)
    sampler = Sampler(engine, tokens, config.codec, config.sampling, seed=3)
    fed, sampled, played = [], [], []
    feed_ids, advance, play = sampler.feed_ids, sampler.advance, Accompanist._play
    sampler.feed_ids = lambda ids, *a, **k: (fed.extend(ids), feed_ids(ids, *a, **k))
    sampler.advance = lambda ids, *a, **k: (sampled.extend(ids), advance(ids, *a, **k))
    monkeypatch.setattr(Accompanist, "_play", lambda self, i, *a: (played.append(i), play(self, i, *a)))
    session = Session(config.live, vocab, config.sampling, 0.0)
    events = _melody(SCALE)
    sent, _, _ = accompany(session, sampler, events)
    _check_clean(sent, events)
    assert fed[0] == vocab.index["style_pop"]  # the piece opens in the style asked for
    melody = {f"v{p - config.codec.low_pitch}" for p in SCALE}
    assert melody <= set(vocab.text(fed))  # the melody, as v
    assert {t for t in vocab.text(fed) if t.startswith("v")} <= melody  # and only as played
    assert any(t.startswith("v") for t in vocab.text(sampled)) == imagine  # imagined as it goes on, or never
    assert played and all(t.startswith(("wait", "p", "endp")) for t in vocab.text(played))  # she plays p alone
    assert any(t.startswith("p") for t in vocab.text(played))


def test_waiting_on_where_the_model_expected_the_melody_thins_her_part(loaded):
    """live.accompany_wait_on: at a step the model expected the melody at, she may wait on instead of acting
    there; always waiting on, she strikes fewer notes under the same melody and seed, and still leaves nothing
    sounding."""
    events = _melody(SCALE, every=BEAT / 2)
    counts = {}
    for chance in (0.0, 1.0):
        sent, _, _ = _play(loaded, events, f"live.accompany_wait_on={chance}")
        counts[chance] = len(_check_clean(sent, events))
    assert counts[1.0] < counts[0.0], counts


def test_the_view_shows_her_plan_ahead_of_now(loaded):
    """The live view's state (app._view_state) carries her plan from the worker's accompanist, ahead of now,
    and the frame draws it in the plan's colour right of now."""
    from collections import deque

    from clara_live.live.app import _view_state
    from clara_live.live.view import PLAN_COLOUR, Roll, render

    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    session, config = _session(vocab=vocab)
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                      config.sampling, seed=1)
    worker = Worker(sampler, lambda *a: None, clock=lambda: 1.0, accompany=True)
    for t, m in _melody([76, 74]):
        if m[0] == NOTE_ON:
            for command in session.on_event(list(m), t):
                if isinstance(command, Feed | Accompany):
                    worker.handle(command)
    now = 1.0 + BEAT + 0.01
    state = _view_state(session, worker, Roll(), now, deque(), "")
    assert state.ahead == pytest.approx(2 * BEAT) and state.planned
    assert all((n.end is None or n.end > now) and n.pitch < 74 for n in state.planned)
    lines = render(state, 84, 12, low=40, high=80)
    assert f"38;5;{PLAN_COLOUR}" in "".join(lines)


def _touch_run(touch: str, velocity: int):
    config = load_config(overrides=["live.mode=accompany", f"sampling.touch={touch}"])
    tokens = NotewiseCodec(config.codec).vocabulary()
    def bias(token: str) -> float:  # steered to notes under the melody, and to letting them go
        return 3.0 if token.startswith("endp") or token.startswith("p") and int(token[1:]) < 27 else 0.0

    engine = tiny_engine(tokens, touch=True, bias=bias)
    sampler = Sampler(engine, tokens, config.codec, config.sampling, seed=4)
    session = Session(config.live, Vocabulary(tokens, config.codec), config.sampling, 0.0)
    events = _melody(SCALE, velocity=velocity)
    sent, _, _ = accompany(session, sampler, events)
    return _check_clean(sent, events)


def test_with_learned_touch_her_dynamics_follow_the_players_under_them_and_her_timing_moves():
    """Touch (issue 24) in the accompaniment: each of her notes at its learned velocity and offset, her
    velocities' shape kept and their level a little under the player's, soft or loud; `touch: flat` plays one
    velocity on the grid's steps."""
    soft, loud = _touch_run("learned", 50), _touch_run("learned", 110)
    for notes, player in ((soft, 50), (loud, 110)):
        velocities = [n[4] for n in notes]
        assert len(velocities) >= 8 and len(set(velocities)) > 3  # her own shape
        assert 0.5 * player <= sum(velocities) / len(velocities) < player  # under the player, following them
    from clara_live.live.accompany import YIELD

    def off_step(on: float) -> float:  # seconds from the step (her note-ons yield YIELD to the melody's)
        return abs((on - YIELD - 1.0) / STEP - round((on - YIELD - 1.0) / STEP)) * STEP

    assert [n for n in soft if off_step(n[0]) > 0.001]  # learned offsets move her onsets off the steps
    flat = _touch_run("flat", 50)
    assert len({n[4] for n in flat}) == 1
    assert all(off_step(n[0]) < 1e-6 for n in flat)


# --- the setting and the program ------------------------------------------------------------------

def test_the_mode_and_its_settings_are_checked():
    assert load_config(overrides=["live.mode=accompany"]).live.accompany_lookahead_beats == 1.0
    with pytest.raises(ConfigError, match="accompany_lookahead_beats"):
        load_config(overrides=["live.accompany_lookahead_beats=0"])
    with pytest.raises(ConfigError, match="accompany"):
        load_config(overrides=["live.mode=duet"])


def test_clara_live_accompanies_a_played_file_and_closes_every_note(tmp_path):
    """As a user runs it (no MIDI system needed to play a file): her notes and the player's in the
    session's file, none left open, and her rest logged."""
    melody = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    melody.tracks.append(track)
    for pitch in SCALE[:8]:
        track += [mido.Message("note_on", note=pitch, velocity=90, time=0),
                  mido.Message("note_off", note=pitch, velocity=0, time=440), mido.MetaMessage("text", time=40)]
    melody.save(tmp_path / "melody.mid")
    env = {**os.environ, "JACK_DEFAULT_SERVER": "nobody-runs-this", "JACK_NO_START_SERVER": "1"}
    done = subprocess.run([sys.executable, "-m", "clara_live", "live", "--play", str(tmp_path / "melody.mid"),
                           "--no-ui", "--mode", "accompany", "--midi-api", "jack", "--set", "live.audio_driver=none",
                           "--set", "sampling.seed=1", "--save-dir", str(tmp_path / "sessions")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Clara rests" in done.stdout + done.stderr
    saved = mido.MidiFile(next((tmp_path / "sessions").glob("*.mid")))
    sounding, struck = set(), 0
    for message in mido.merge_tracks(saved.tracks):
        if message.type == "note_on" and message.velocity > 0:
            sounding.add((message.channel, message.note))
            struck += 1
        elif message.type in ("note_on", "note_off"):
            sounding.discard((message.channel, message.note))
    assert struck > 8 and not sounding


def test_a_melody_dropping_under_her_early_never_has_her_strike_over_it(loaded):
    """The player comes early (0.4 of a step before the grid's step) onto a pitch under what she planned:
    what she had still to play there is dropped, and nothing of hers is struck over a sounding melody note."""
    pitches = [84, 86, 84, 62, 64, 62, 84, 60]
    events = []
    for i, p in enumerate(pitches):
        t = 1.0 + i * BEAT - (0.4 * STEP if i else 0.0)
        events += [(t, (NOTE_ON, p, 90)), (t + 0.8 * BEAT, (NOTE_OFF, p, 0))]
    sent, _, _ = _play(loaded, events, "live.tempo_from_playing=false")
    notes = _check_clean(sent, events)
    melody = _melody_notes(events)
    for on, _, pitch, _, _ in notes:
        assert all(pitch < p for m_on, m_off, p in melody if m_on <= on < m_off), (on, pitch)


def test_every_rewind_leaves_the_stream_at_the_note_with_her_sounding_notes_in_it(loaded, monkeypatch):
    """Going back to a mark inside her plan (not to the committed point) reads only what came after it;
    either way the model's stream stands at the player's step and holds the notes she still sounds."""
    import numpy as np

    from clara_live.live.accompany import Accompanist

    rewind, checked, marks_used = Accompanist._rewind, [], []

    def checking(self, step, *args, **kwargs):
        marks_used.append(bool(self.marks))
        rewind(self, step, *args, **kwargs)
        assert self.state.now - self.base == step
        assert set(self.sounding) <= set(np.flatnonzero(self.state.sounding).tolist())
        checked.append(step)

    monkeypatch.setattr(Accompanist, "_rewind", checking)
    events = _melody(SCALE, every=BEAT / 2) + _melody(SCALE, start=1.0 + 8 * BEAT + 0.2)
    sent, _, _ = _play(loaded, events)
    _check_clean(sent, events)
    assert len(checked) > 2 * len(SCALE) and any(marks_used)


def test_her_plan_is_never_timed_in_the_past_when_the_player_drifts_from_the_first_tempo(loaded, shared):
    """POP909 song 094's melody (valid, 62 bpm, with rests), 30 s: each note-on she schedules is due at
    most two steps before the moment it is planned, none doubles the melody and none is left sounding.
    Her plan's steps are the stream's: when they were timed on the followed beat while the stream went on
    on the session's grid, numbered apart, her note-ons here were scheduled up to 2.19 s in the past (701
    of them, live a burst) and 3 doubled the melody; the grid now moves with the followed beat."""
    import symusic

    score = symusic.Score.from_midi((shared / "corpus" / "pop909" / "094.mid").read_bytes(), ttype="second")
    melody = next(t for t in score.tracks if t.name.strip().upper() == "MELODY").notes
    first = min(float(n.time) for n in melody)
    notes = [(float(n.time) - first + 1.0, float(n.time + n.duration) - first + 1.0, int(n.pitch))
             for n in melody if float(n.time) - first < 30.0]
    events = [(s, (NOTE_ON, p, 100)) for s, _, p in notes] + [(max(e, s + 0.01), (NOTE_OFF, p, 0)) for s, e, p in notes]
    (sent, _, late), _ = _rehearse(loaded, events, "live.bpm=62")
    step = 60.0 / 62 / 12
    assert sum(1 for _, m in sent if m[0] & 0xF0 == NOTE_ON and m[2] > 0) > 50
    assert max(late, default=0.0) <= 2 * step, sorted(late)[-5:]
    _check_clean(sent, events)
