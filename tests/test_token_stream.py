"""codec/stream.py: the notewise token stream the live session writes, checked against the codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clara_live.codec.notewise import NotewiseCodec
from clara_live.codec.stream import NotewiseStream
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig

CONFIG = CodecConfig()
CODEC = NotewiseCodec(CONFIG)
VOCAB = Vocabulary(CODEC.vocabulary(), CONFIG)


def test_a_note_released_in_its_own_step_lasts_one_step():
    stream = NotewiseStream(VOCAB)
    ids = stream.strike(60, 12) + stream.release([60], 12)
    assert VOCAB.text(ids) == ["wait12", "p27"]
    assert VOCAB.text(stream.due(12)) == [] and VOCAB.text(stream.due(13)) == ["wait1", "endp27"]
    assert stream.now == 13 and not stream.sounding


def test_a_note_struck_again_while_it_sounds_is_closed_first_and_twice_in_a_step_is_one_note():
    stream = NotewiseStream(VOCAB)
    ids = stream.strike(60, 0) + stream.strike(60, 0) + stream.strike(60, 30)
    assert VOCAB.text(ids) == ["p27", "wait25", "wait5", "endp27", "p27"]


def test_close_all_closes_every_note_and_its_deferred_off():
    stream = NotewiseStream(VOCAB)
    stream.strike(64, 0)
    stream.strike(60, 4)
    stream.release([60], 4)  # deferred to step 5
    assert VOCAB.text(stream.close_all()) == ["endp27", "endp31"]
    assert stream.due(100) == [] and stream.now == 4  # nothing left to close: no wait written for it


def test_save_and_load_return_exactly():
    stream = NotewiseStream(VOCAB)
    stream.strike(60, 3)
    saved = stream.save()
    first = stream.release([60], 3) + stream.advance_to(20)
    stream.load(saved)
    assert stream.release([60], 3) + stream.advance_to(20) == first


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40), st.integers(CONFIG.low_pitch, CONFIG.high_pitch)),
                max_size=30))
def test_the_stream_decodes_to_the_notes_written(notes):
    """Notes (onset, length, pitch) written in time order, as a player's keys would, decode to themselves."""
    kept, free_from = [], {}
    for on, length, pitch in sorted(notes):
        if on > free_from.get(pitch, -1):  # one key cannot hold two notes of a pitch at once
            kept.append((on, on + length, pitch))
            free_from[pitch] = on + length
    events = sorted([(on, 1, pitch) for on, _, pitch in kept] + [(end, 0, pitch) for _, end, pitch in kept])
    stream, ids = NotewiseStream(VOCAB), []
    for step, kind, pitch in events:
        ids += stream.strike(pitch, step) if kind else stream.release([pitch], step)
    assert not stream.sounding and not stream.pending_offs
    decoded = sorted((n.start, n.end, n.pitch) for n in CODEC.decode(VOCAB.text(ids)))
    assert decoded == sorted(kept)
