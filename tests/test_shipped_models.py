"""The models in trained_models/ load from a clean checkout and know their music."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clara_live.codec import make_codec, to_steps
from clara_live.codec.vocabulary import Vocabulary
from clara_live.model import load_model
from clara_live.model.evaluate import score
from clara_live.music.read import read_music

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "trained_models"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module")
def notewise():
    return load_model(MODELS / "clara-notewise")


def test_notewise_model_matches_its_codec(notewise):
    assert notewise.codec.encoding == "notewise" and notewise.codec.sample_freq == 12
    assert sorted(notewise.vocabulary) == sorted(make_codec(notewise.codec).vocabulary())
    assert sum(p.numel() for p in notewise.model.parameters()) * 4 < 50e6  # under ~50 MB


def test_the_joint_model_is_chamber_with_styles_and_exact_touch():
    """trained_models/clara-joint: families p and v, the piano style it opens with by default, touch format 3,
    and a Lied's voice and piano read far better than chance."""
    joint = load_model(MODELS / "clara-joint")
    assert joint.codec.chamber and joint.model.config.touch and joint.model.config.touch_format == 3
    vocab = Vocabulary(joint.vocabulary, joint.codec)
    assert vocab.style_id("piano") is not None and vocab.style_id("lied") is not None
    assert set(make_codec(joint.codec).vocabulary()) <= set(joint.vocabulary)
    piece = read_music(SHARED / "midi" / "maestro" / "maestro_2.mid")
    tokens = make_codec(joint.codec).encode(to_steps(piece, joint.codec))[:1500]
    result = score(joint.model, [vocab.ids(tokens, "maestro_2")])
    assert result["nll"] < 0.7 * math.log(len(joint.vocabulary))


def test_notewise_model_predicts_real_music_far_better_than_chance(notewise):
    torch.backends.mkldnn.enabled = False
    piece = read_music(SHARED / "midi" / "maestro" / "maestro_2.mid")
    tokens = make_codec(notewise.codec).encode(to_steps(piece, notewise.codec))[:1500]
    result = score(notewise.model, [Vocabulary(notewise.vocabulary, notewise.codec).ids(tokens, "maestro_2")])
    assert result["nll"] < 0.7 * math.log(len(notewise.vocabulary))
    assert result["accuracy"] > 0.15  # unquantised performance, never seen in training; chance is 0.7 %


@pytest.fixture(scope="module")
def chordwise():
    return load_model(MODELS / "clara-chordwise")


def test_chordwise_model_matches_its_codec(chordwise):
    assert chordwise.codec.encoding == "chordwise" and chordwise.codec.sample_freq == 4
    fixed = make_codec(chordwise.codec).vocabulary()  # <unk> and the rest tokens; chords come from the corpus
    assert chordwise.vocabulary[:len(fixed)] == fixed
    chords = chordwise.vocabulary[len(fixed):]
    assert chords and all(t.startswith("p") and len(t) == 1 + chordwise.codec.num_pitches for t in chords)


def test_chordwise_model_predicts_real_music_far_better_than_chance(chordwise):
    torch.backends.mkldnn.enabled = False
    piece = read_music(SHARED / "midi" / "maestro" / "maestro_2.mid")
    tokens = make_codec(chordwise.codec).encode(to_steps(piece, chordwise.codec))[:1000]
    vocab = Vocabulary(chordwise.vocabulary, chordwise.codec)
    result = score(chordwise.model, [vocab.ids(tokens, "maestro_2", unknown=True)])
    assert result["nll"] < 0.6 * math.log(len(chordwise.vocabulary))
    assert result["accuracy"] > 0.1  # chance is 1 in 20,752


def _critic_on_fresh_generations(setting: str):
    """Excerpts of human pieces from the critic's own test split, one of each corpus (a sequenced
    piece, a performance, a roll, a pop song, a Lied, a quartet), and answers the generator gives with `setting` (a name
    in training.critic.SETTINGS) to a prompt it never trained on, with seeds the critic never saw:
    the critic's P(human) of the human excerpts and of the answers."""
    from clara_live.judge.pieces import encode_file
    from clara_live.judge.predict import predict_pieces
    from clara_live.judge.store import load_judge
    from training.critic import Prompts, excerpts, generations

    critic = load_judge(MODELS / "critic", kind="critic")
    split, sources = critic.info["split"], critic.info["sources"]
    tests = sorted(k for k, v in split.items() if v == "test" and not k.startswith("generated/"))
    firsts = {k.split(":")[0] if ":" in k else "piano-midi-de": k for k in reversed(tests)}
    assert sorted(firsts) == ["asap", "openscore-lieder", "openscore-quartets", "piano-midi-de", "pianolatron",
                              "pop909"]
    vocab = Vocabulary(critic.vocabulary, critic.codec)
    pieces = [encode_file(str(REPO / sources[k]), vocab) for k in sorted(firsts.values())]
    human = [e for ids in pieces for e in excerpts(ids, critic.window, 2)]
    made = [ids for _, ids in generations(MODELS / "clara-joint", 8, critic.window, seed=10_000, batch=8,
                                          prompts=Prompts([pieces[0]]), schedule=[setting])]
    p = predict_pieces(critic.model, human + made, critic.window, critic.window)[:, 1].numpy()
    return p[:len(human)], p[len(human):]


def test_the_shipped_critic_tells_held_out_music_from_fresh_generations(shared):
    """... generated with one temperature, a setting it learned from (measured: mean P(human) 0.94 of the human
    excerpts, 0.25 of the answers)."""
    import numpy as np

    human, made = _critic_on_fresh_generations("one-temperature")
    assert np.mean(human) > 0.5 > np.mean(made), (human, made)


@pytest.mark.xfail(strict=True, reason=(
    "the shipped critic (rebuilt on clara-joint, issue 25) takes many of the default sampling's answers for human: "
    "mean P(human) 0.59 over these 8 answers (4 of them over 0.7), the held-out excerpts 0.94; over its test split "
    "its ROC AUC against the default setting is 0.735, the lowest of its 28 settings but one"))
def test_the_shipped_critic_tells_held_out_music_from_the_default_sampling(shared):
    import numpy as np

    human, made = _critic_on_fresh_generations("default")
    assert np.mean(human) > 0.5 > np.mean(made), (human, made)


def test_the_shipped_composer_judge_names_held_out_composers():
    """Test-split pieces (the generator's held-out works) of the composers with at least 10
    works: the right composer is usually the first guess and nearly always in the top three."""
    from clara_live.judge.pieces import encode_file
    from clara_live.judge.predict import predict_pieces, top_k_accuracy
    from clara_live.judge.store import load_judge

    judge = load_judge(MODELS / "composer", kind="composer")
    split, labels, sources = judge.info["split"], judge.info["labels"], judge.info["sources"]
    major = judge.info["metrics"]["major_composers"]
    # a sixth of the MIDI files (a score's MusicXML takes music21 seconds to read): time
    tests = sorted(k for k, v in split.items()
                   if v == "test" and labels[k] in major and sources[k].endswith(".mid"))[::6]
    vocab = Vocabulary(judge.vocabulary, judge.codec)
    ids = [encode_file(str(REPO / sources[k]), vocab) for k in tests]
    truth = [judge.classes.index(labels[k]) for k in tests]
    probs = predict_pieces(judge.model, ids, judge.window, judge.stride)
    assert torch.allclose(probs.sum(-1), torch.ones(len(tests)), atol=1e-4)
    assert len(tests) >= 20
    assert top_k_accuracy(probs, truth, 1) >= 0.6  # measured 23 of 30 (11 composers); chance is about 1 in 57
    assert top_k_accuracy(probs, truth, 3) >= 0.75  # measured 27 of 30


def test_clara_judge_score_runs_on_the_shipped_judges(tmp_path, capsys):
    """`clara judge score` with its defaults: the shipped composer judge and critic."""
    import json

    from clara_live.cli import main
    from clara_live.judge.store import load_judge
    from clara_live.music.midi_io import steps_to_midi, write_midi
    from training.critic import generations

    classes = len(load_judge(MODELS / "composer").classes)
    loaded = load_model(MODELS / "clara-notewise")
    codec = make_codec(loaded.codec)
    for key, ids in generations(MODELS / "clara-notewise", 4, 200, seed=20_000, batch=4):
        notes = codec.decode([loaded.vocabulary[i] for i in ids])
        write_midi(steps_to_midi(notes, loaded.codec.sample_freq), tmp_path / f"{key.split('/')[1]}.mid")
    capsys.readouterr()
    assert main(["judge", "score", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["files"] == 4 and result["composers"] == classes
    assert 1.0 <= result["inception_score"] <= classes and 0.0 <= result["human_mean"] <= 1.0


# --- the judges pinned on known inputs ---------------------------------------------------------------

PIANO_MIDI_DE = SHARED / "corpus" / "piano-midi-de"
# one piece each by ten composers, all in the composer judge's test split (never trained on)
DISTINCT = ["Albeniz/alb_se8.mid", "Chopin/chpn-p18.mid", "Clementi/clementi_opus36_1_3.mid", "Haydn/haydn_7_1.mid",
            "Liszt/liz_et3.mid", "Mendelssohn/mendel_op30_3.mid", "Mozart/mz_570_3.mid", "Rachmaninoff/rac_op23_2.mid",
            "Schumann/scn15_12.mid", "Tchaikovsky/ty_juni.mid"]


def _write_notes(path: Path, notes: list[tuple[float, float, int]]) -> Path:
    """A MIDI file of (start, length, pitch) notes, in beats at 120 bpm, velocity 80."""
    import mido
    from conftest import build_midi

    offs = [(round((start + length) * 480), mido.Message("note_off", note=pitch)) for start, length, pitch in notes]
    ons = [(round(start * 480), mido.Message("note_on", note=pitch, velocity=80)) for start, _, pitch in notes]
    return build_midi(path, [offs + ons])  # a stable sort by tick: a note ends before one starts on its tick


def _judge_json(capsys, *args: str):
    import json

    from clara_live.cli import main

    capsys.readouterr()
    assert main(["judge", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_shipped_critic_hears_real_music_as_human_and_a_repeated_note_or_chord_not(tmp_path, capsys):
    """P(human) measured with the critic rebuilt on clara-joint (issue 25): three MAESTRO performances, in no
    corpus any model saw, 0.9996, 0.9827, 0.9565; a piano-midi.de piece of the critic's own test split 0.9026;
    C4 struck 400 times 0.0000, a C major chord 200 times 0.0009 (the critic before it, issue 27: 0.9999,
    0.9885, 0.9811; 0.8247; 0.0001, 0.0005)."""
    real = [SHARED / "midi" / "maestro" / f"maestro_{k}.mid" for k in (1, 2, 3)]
    held_out = PIANO_MIDI_DE / "Clementi" / "clementi_opus36_1_3.mid"
    repeated = _write_notes(tmp_path / "repeated.mid", [(k * 0.5, 0.45, 60) for k in range(400)])
    chord = _write_notes(tmp_path / "chord.mid", [(k * 1.0, 0.9, p) for k in range(200) for p in (60, 64, 67)])
    human = [r["human"] for r in _judge_json(capsys, "critic", *map(str, [*real, held_out, repeated, chord]))]
    assert min(human[:3]) > 0.95, human
    assert human[3] > 0.7, human
    assert max(human[4:]) < 0.01, human


@pytest.mark.xfail(strict=True, reason=(
    "the shipped critic takes random notes for human: P(human) 0.978-0.995 over six seeded random pieces "
    "(rebuilt on clara-joint; 0.9993-0.9998 before, issue 27); it learned human music against Clara's own "
    "generations, and noise is neither"))
def test_the_shipped_critic_does_not_take_random_notes_for_human(tmp_path, capsys):
    import random

    rng = random.Random(0)
    noise = [(k * 0.25, rng.choice([0.2, 0.45, 0.95]), rng.randint(36, 96)) for k in range(800)]
    [result] = _judge_json(capsys, "critic", str(_write_notes(tmp_path / "random.mid", noise)))
    assert result["human"] < 0.5, result


def test_clara_judge_score_pins_the_inception_score_of_known_sets(tmp_path, capsys):
    """Ten held-out pieces by ten composers: measured 4.23 (of 88), the critic's mean P(human) 0.93.
    Four copies of one piece: every p(y|x) is the marginal, so the score is 1 and the mean P(human)
    that piece's own."""
    import shutil

    from clara_live.judge.store import load_judge

    info = load_judge(MODELS / "composer", kind="composer").info
    assert all(info["split"][k] == "test" for k in DISTINCT)
    distinct, copies = tmp_path / "distinct", tmp_path / "copies"
    distinct.mkdir()
    copies.mkdir()
    for key in DISTINCT:
        shutil.copy(PIANO_MIDI_DE / key, distinct / key.replace("/", "_"))
    for k in range(4):
        shutil.copy(PIANO_MIDI_DE / "Clementi" / "clementi_opus36_1_3.mid", copies / f"copy{k}.mid")
    spread = _judge_json(capsys, "score", str(distinct))
    assert spread["files"] == 10 and spread["inception_score"] > 3.5, spread
    assert spread["human_mean"] > 0.8, spread
    same = _judge_json(capsys, "score", str(copies))
    [one] = _judge_json(capsys, "critic", str(copies / "copy0.mid"))
    assert same["files"] == 4 and same["inception_score"] == pytest.approx(1.0, abs=1e-6), same
    assert same["human_mean"] == pytest.approx(one["human"], abs=1e-4), (same, one)
