"""Duet roles (issue 26 item 2, issue 25): the player's part and Clara's, each a family of a chamber
model (`p` piano, `v` violin or voice). The player's notes reach the model's stream in their family;
Clara strikes only hers; a model without families refuses a `v` part in one line. The models are
tiny and random (tests of the way through, not of the music), built here, never the shipped ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clara_live.cli import main
from clara_live.codec.tokens import Kind
from clara_live.codec.vocabulary import KINDS
from clara_live.config import ConfigError, load_config
from clara_live.engine import build_engine
from clara_live.live.commands import Answer, Feed, Send
from clara_live.live.rehearsal import first_answer
from clara_live.live.session import Session
from clara_live.model import load_model
from clara_live.sampling.sampler import Sampler

T0 = 0.0


class Recording(Sampler):
    """A sampler that keeps every id it is fed (the player's, her lead waits) and every id it advances by (hers)."""

    def __init__(self, *args, **kwargs) -> None:
        self.fed: list[int] = []
        self.advanced: list[int] = []
        super().__init__(*args, **kwargs)

    def feed_ids(self, ids, velocity=0, offset=None):
        self.fed += [int(i) for i in ids]
        return super().feed_ids(ids, velocity, offset)

    def advance(self, ids, active=None, score=True):
        self.advanced.append(int(ids[0]))
        return super().advance(ids, active, score)


def sampler_for(model: Path, *overrides: str, seed: int = 3) -> tuple[Recording, object]:
    config = load_config(overrides=["sampling.motif_pull=0", "live.tempo_from_playing=false", *overrides])
    loaded = load_model(model)
    engine = build_engine(loaded.model, config.inference)
    return Recording(engine, loaded.vocabulary, loaded.codec, config.sampling, seed=seed), config


def phrase(keys: list[int], beat: float = 0.6, t0: float = 1.0) -> list[tuple[float, tuple[int, ...]]]:
    """A legato line, a key a beat."""
    events = []
    for k, key in enumerate(keys):
        events += [(t0 + k * beat, (0x90, key, 80)), (t0 + (k + 0.9) * beat, (0x80, key, 0))]
    return events


LINE = [40, 62, 64, 65, 67, 69, 71, 72]  # 40: below violin_low (55), a v part hears it an octave or two up


# --- config ---------------------------------------------------------------------------------------

def test_parts_default_to_piano_and_today_s_echo():
    live = load_config().live
    assert (live.part, live.clara_part) == ("p", "p")
    assert live.player_out is None  # the player's notes echoed on the channel they play them on, as before
    assert (live.program("p"), live.program("v")) == (0, 40)


def test_parts_and_programs_are_checked_by_name():
    with pytest.raises(ConfigError, match="live.part"):
        load_config(overrides=["live.part=violin"])
    with pytest.raises(ConfigError, match="live.program_v"):
        load_config(overrides=["live.program_v=128"])
    with pytest.raises(ConfigError, match="live.player_channel"):
        load_config(overrides=["live.part=v", "live.player_channel=1", "live.channel=1"])


def test_a_player_in_another_part_gets_a_channel_of_their_own():
    live = load_config(overrides=["live.part=v"]).live
    assert live.player_out == 1  # channel 2: not Clara's (1), not the metronome's or drums' (10)
    live = load_config(overrides=["live.part=v", "live.channel=2"]).live
    assert live.player_out == 0
    assert load_config(overrides=["live.player_channel=5"]).live.player_out == 4


# --- the player's part in the model's stream -------------------------------------------------------

def session_for(vocab, *overrides: str) -> Session:
    config = load_config(overrides=list(overrides))
    return Session(config.live, vocab, config.sampling, T0, config.sampling.beats_per_bar)


def fed_tokens(session: Session, events) -> list[str]:
    tokens = []
    t = T0
    for at, message in events:
        while t < at:
            for command in session.on_tick(t):
                if isinstance(command, Feed):
                    tokens += session.writer.stream.vocab.text(command.ids)
            t += 0.002
        for command in session.on_event(list(message), at):
            if isinstance(command, Feed):
                tokens += session.writer.stream.vocab.text(command.ids)
    return tokens


def test_a_violin_player_s_notes_reach_the_model_as_v_tokens(chamber_model):
    sampler, _ = sampler_for(chamber_model)
    tokens = fed_tokens(session_for(sampler.vocab, "live.part=v"), phrase(LINE))
    notes = [t for t in tokens if not t.startswith("wait")]
    assert notes and all(t.removeprefix("end").startswith("v") for t in notes)
    low = sampler.vocab.codec.low_pitch
    pitches = [int(t.removeprefix("end")[1:]) + low for t in notes if not t.startswith("end")]
    assert pitches[0] == 40 + 24 and pitches[1:] == LINE[1:]  # 40 folded to at least violin_low (55): 64
    piano = fed_tokens(session_for(sampler.vocab), phrase(LINE))
    assert [t.replace("p", "v") for t in piano if not t.startswith("wait")][2:] == notes[2:]  # the rest as a p part


def test_a_phrase_heard_again_at_its_own_tempo_stays_in_the_player_s_family(chamber_model):
    """The phrase re-read on the tempo heard in it (a Refeed) is written in the player's family too."""
    from clara_live.live.commands import Refeed

    sampler, _ = sampler_for(chamber_model)
    session = session_for(sampler.vocab, "live.part=v", "live.tempo_method=classic", "live.bpm=100")
    refeeds = []
    t = T0
    for at, message in phrase(LINE, beat=60 / 84):  # played at 84 bpm against the session's 100
        while t < at:
            session.on_tick(t)
            t += 0.002
        session.on_event(list(message), at)
    for _ in range(1000):
        refeeds += [c for c in session.on_tick(t) if isinstance(c, Refeed)]
        t += 0.002
    [refeed] = refeeds
    tokens = sampler.vocab.text([i for feed in refeed.feeds for i in feed.ids])
    notes = [x for x in tokens if not x.startswith("wait")]
    assert len(notes) == 2 * len(LINE) and all(x.removeprefix("end").startswith("v") for x in notes)


def test_a_violin_part_on_a_model_without_families_is_refused(piano_model):
    sampler, _ = sampler_for(piano_model)
    with pytest.raises(ValueError, match="live.part v"):
        session_for(sampler.vocab, "live.part=v")
    with pytest.raises(ValueError, match="live.clara_part v"):
        session_for(sampler.vocab, "live.clara_part=v")


@pytest.mark.parametrize("flags", [["--part", "v"], ["--clara-part", "v"]])
def test_clara_live_refuses_a_v_part_without_families_in_one_line(piano_model, tmp_path, capsys, flags):
    code = main(["live", "--model", str(piano_model), *flags, "--play", str(tmp_path / "never-read.mid"),
                 "--no-ui", "--no-save"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert str(piano_model) in err[0] and f"{flags[0]} v" in err[0] and "chamber" in err[0]


# --- Clara's part -----------------------------------------------------------------------------------

def her_answer(model: Path, *overrides: str, seed: int = 3):
    """A phrase played into a session and worker on a fake clock; (the sampler, the answer, what she sent)."""
    sampler, config = sampler_for(model, *overrides, seed=seed)
    session = Session(config.live, sampler.vocab, config.sampling, T0, config.sampling.beats_per_bar)
    answer, sent = first_answer(session, sampler, phrase(LINE), patience=10.0, tick=0.005)
    return sampler, answer, sent


def families_struck(sampler: Recording, ids: list[int]) -> set[str]:
    vocab = sampler.vocab
    return {vocab.families[vocab.family[i]] for i in ids if vocab.kind[i] == KINDS.index(Kind.ON)}


@pytest.mark.parametrize(("player", "clara", "mode"), [("v", "p", "call-response"), ("p", "v", "call-response"),
                                                      ("v", "v", "call-response"), ("v", "p", "suggest")])
def test_she_strikes_only_her_part_s_notes(chamber_model, player, clara, mode):
    sampler, answer, sent = her_answer(chamber_model, f"live.part={player}", f"live.clara_part={clara}",
                                       f"live.mode={mode}")
    assert isinstance(answer, Answer)
    ons = [m for _, m in sent if m[0] & 0xF0 == 0x90 and m[2] > 0]
    assert ons, "she played nothing"
    assert families_struck(sampler, sampler.advanced) == {clara}
    assert families_struck(sampler, [i for i in sampler.fed if sampler.vocab.kind[i] == 0]) == {player}


def test_without_a_part_the_random_model_strikes_both_families(chamber_model, monkeypatch):
    """The check above can fail: the same tiny model with a worker told no part strikes both families."""
    from clara_live.live import rehearsal

    class Unparted(rehearsal.Worker):
        def __init__(self, *args, part=None, **kwargs):
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(rehearsal, "Worker", Unparted)
    seen: set[str] = set()
    for seed in range(3):
        sampler, _, _ = her_answer(chamber_model, seed=seed)
        seen |= families_struck(sampler, sampler.advanced)
    assert seen == {"p", "v"}


def test_a_piano_model_plays_as_before(piano_model):
    sampler, answer, sent = her_answer(piano_model)
    assert sampler.forbid is None and answer is not None
    assert families_struck(sampler, sampler.advanced) <= {"p"}


def test_the_echo_of_a_violin_player_goes_out_on_their_channel(chamber_model):
    sampler, _ = sampler_for(chamber_model)
    session = session_for(sampler.vocab, "live.part=v", "live.passthrough=true")
    sends = [c for c in session.on_event([0x90, 67, 70], 1.0) + session.on_event([0x80, 67, 0], 1.2)
             if isinstance(c, Send)]
    assert [s.message for s in sends] == [(0x91, 67, 70), (0x81, 67, 0)]
    np.testing.assert_array_equal(sampler.vocab.strikes_outside("p") & sampler.vocab.strikes_outside("v"), False)


def test_each_part_has_its_program_on_its_channel():
    from clara_live.live.app import part_programs

    def programs(*overrides: str):
        return part_programs(load_config(overrides=list(overrides)).live)

    assert programs() == []  # piano and piano at program 0: nothing sent, an external synth keeps its sound
    assert programs("live.part=v") == [(0, 0), (1, 40)]  # hers piano on channel 1, the player's violin on 2
    assert programs("live.clara_part=v", "live.program_v=52") == [(0, 52), (1, 0)]  # a voice: choir aahs
    assert programs("live.part=v", "live.clara_part=v") == [(0, 40)]  # the player's echo on their own channel
    assert programs("live.part=v", "live.clara_part=v", "live.player_channel=3") == [(0, 40), (2, 40)]
    assert programs("live.program_p=4") == [(0, 4)]
