"""Touch (issue 24): each note's velocity and timing kept from the file to the corpus, learned by the
model's touch layers and scored in bits per strike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clara_live.codec import make_codec, to_steps
from clara_live.codec.notewise import Touch
from clara_live.config import CodecConfig, ModelConfig, load_config
from clara_live.corpus import build_corpus
from clara_live.corpus.built import BuiltCorpus
from clara_live.model import AWDLSTM
from clara_live.model.evaluate import score
from clara_live.model.touch import input_rows, sample, targets, touch_loss, velocity_bin
from clara_live.music.midi_io import steps_to_midi
from clara_live.music.notes import Note, Piece, StepNote
from training.data import Corpus, epoch_stream
from training.trainer import with_touch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def test_quantising_keeps_each_onsets_offset_from_its_step():
    config = CodecConfig()  # 12 steps a quarter note
    piece = Piece([Note(1.0 + 1 / 48, 2.0, 60, 90), Note(2.0 - 1 / 60, 3.0, 64, 40), Note(3.0, 4.0, 67, 70)])
    notes = to_steps(piece, config)
    assert [n.start for n in notes] == [12, 24, 36]
    assert [round(n.offset, 6) for n in notes] == [0.25, -0.2, 0.0]
    assert [n.velocity for n in notes] == [90, 40, 70]


def test_encoding_gives_each_note_on_its_touch_and_decoding_gives_it_back():
    codec = make_codec(CodecConfig())
    notes = [StepNote(0, 6, 60, 90, "p", 0.25), StepNote(0, 6, 64, 30, "p", -0.1), StepNote(6, 12, 62, 70, "p", 0.0)]
    tokens, touch = codec.encode_touch(notes)
    assert [t for t in tokens if t.startswith("p")] == ["p27", "p31", "p29"]
    assert touch == [Touch(90, 0.25), Touch(30, -0.1), Touch(70, 0.0)]
    back = codec.decode(tokens, touch=touch)
    assert sorted((n.pitch, n.velocity, n.offset) for n in back) == [(60, 90, 0.25), (62, 70, 0.0), (64, 30, -0.1)]
    flat = codec.decode(tokens, velocity=55)
    assert {(n.velocity, n.offset) for n in flat} == {(55, 0.0)}


def test_two_onsets_of_a_key_in_one_step_keep_the_louder_and_the_earlier():
    codec = make_codec(CodecConfig())
    piece = Piece([Note(0.0, 1.0, 60, 40), Note(0.03, 1.0, 60, 100)])  # both round to step 0
    (note,) = to_steps(piece, CodecConfig())
    assert note.velocity == 100 and note.offset == 0.0
    assert codec.encode_touch([note])[1] == [Touch(100, 0.0)]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    """Two played performances (ASAP, velocities and timing) and two sequenced pieces, one of them
    written at one velocity (a file without dynamics)."""
    root = tmp_path_factory.mktemp("src")
    (root / "Played").mkdir()
    for midi in sorted((SHARED / "midi" / "maestro").glob("*.mid*")):
        shutil.copy(midi, root / "Played" / midi.name)
    flat = root / "Flat"
    flat.mkdir()
    steps_to_midi([StepNote(6 * i, 6 * i + 6, 60 + i % 12, 80) for i in range(40)], 12).save(flat / "flat.mid")
    out = tmp_path_factory.mktemp("corpus")
    config = load_config(overrides=["corpus.workers=1", "corpus.valid_fraction=0.5", "corpus.test_fraction=0.01",
                                    "corpus.cache="])
    return out, build_corpus([str(root)], out, config, progress=False)


def test_the_corpus_keeps_touch_where_the_file_has_it(built):
    out, manifest = built
    by_source = {Path(p["source"]).name: p for p in manifest["pieces"]}
    assert by_source["flat.mid"]["touch"] is False  # one velocity throughout: nothing to learn
    played = [p for name, p in by_source.items() if name != "flat.mid"]
    assert played and all(p["touch"] for p in played)
    corpus = BuiltCorpus(out)
    for split in ("train", "valid"):
        ids = corpus.pieces(split)
        touched = corpus.pieces(split, touch=True)
        for plain, piece, entry in zip(ids, touched, sorted((p for p in manifest["pieces"] if p["split"] == split),
                                                             key=lambda p: p["line"]), strict=True):
            assert np.array_equal(piece[:, 0], plain)
            strikes = np.array([t.startswith(("p", "v")) for t in np.array(corpus.vocabulary)[plain]])
            assert (piece[~strikes, 1:] == 0).all()  # only note-ons carry touch
            if entry["touch"]:
                velocities = piece[strikes, 1]
                assert velocities.min() >= 1 and len(set(velocities.tolist())) > 5
                assert (np.abs(piece[strikes, 2]) <= 50).all() and (piece[strikes, 2] != 0).any()
            else:
                assert (piece[strikes, 1] == -1).all()  # a strike of unknown touch


def test_a_touch_file_that_does_not_match_its_tokens_is_refused(built, tmp_path):
    out, _ = built
    copy = tmp_path / "corpus"
    shutil.copytree(out, copy)
    lines = (copy / "train.touch").read_text().splitlines()
    lines[0] = " ".join(lines[0].split()[:-1]) if lines[0] != "-" else "64:0"
    (copy / "train.touch").write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match=r"train.touch:1: \d+ touches for \d+ note-on tokens"):
        BuiltCorpus(copy).pieces("train", touch=True)


def test_transposing_a_piece_moves_its_tokens_and_keeps_its_touch(built):
    out, _ = built
    corpus = Corpus(out)
    pieces = corpus.pieces("train", touch=True)
    augment = corpus.augment(pieces, corpus.vocabulary, load_config().corpus)
    stream = epoch_stream(pieces, 0, 0, augment)
    assert stream.shape[1] == 3
    joined = np.concatenate(pieces)
    assert sorted(map(tuple, stream[:, 1:].tolist())) == sorted(map(tuple, joined[:, 1:].tolist()))
    assert not np.array_equal(np.sort(stream[:, 0]), np.sort(joined[:, 0]))  # some keys moved


def test_touch_rows_start_at_zero_so_a_grown_model_predicts_as_before():
    torch.manual_seed(0)
    plain = AWDLSTM(149, ModelConfig(touch=False, emb_size=32, hidden_size=48, num_layers=2)).eval()
    grown = with_touch(plain).eval()
    ids = torch.randint(0, 149, (2, 20))
    velocity, offset = torch.randint(-1, 128, (2, 20)), torch.randint(-50, 50, (2, 20))
    a, _ = plain(ids, plain.init_hidden(2))
    b, _ = grown(ids, grown.init_hidden(2), touch=(velocity, offset))
    torch.testing.assert_close(a, b)


def test_input_rows_and_targets_tell_strikes_unknown_and_other_tokens_apart():
    velocity = torch.tensor([0, -1, 1, 4, 5, 127])
    offset = torch.tensor([0, 0, -50, 0, 49, 10])
    v, o = input_rows(velocity, offset)
    assert v.tolist() == [0, 1, 2, 2, 3, 33] and o.tolist() == [0, 1, 2, 10, 17, 11]
    tv, to = targets(velocity, offset)
    assert tv.tolist() == [-100, -100, 0, 0, 1, 31] and to.tolist() == [-100, -100, 0, 8, 15, 9]


def test_sampled_touch_stays_inside_its_bin_and_in_range():
    generator = torch.Generator().manual_seed(1)
    logits = torch.full((500, 32), -30.0)
    logits[:, 31] = 0.0  # always the loudest bin
    offsets = torch.zeros(500, 16)
    velocity, offset = sample(logits, offsets, generator)
    assert velocity.min() >= 125 and velocity.max() <= 127 and len(set(velocity.tolist())) == 3
    assert offset.min() >= -0.5 and offset.max() < 0.5 and offset.std() > 0.2
    assert (velocity_bin(velocity) == 31).all()


def test_a_model_learns_touch_and_scores_it_in_bits_per_strike(built):
    """A few hundred steps on a played line whose loudness follows its pitch: the head learns it, and
    the bits per strike fall well below a uniform guess's (log2 127 = 7 bits)."""
    torch.manual_seed(0)
    model = AWDLSTM(149, ModelConfig(emb_size=32, hidden_size=64, num_layers=1, dropout_emb=0, dropout_input=0,
                                     dropout_hidden=0, dropout_output=0, weight_drop=0))
    rng = np.random.default_rng(0)
    pitch = rng.integers(0, 62, 400)
    ids = np.stack([25 + pitch, np.full(400, 11)], 1).reshape(-1)  # p.. wait12, a note every beat
    piece = np.zeros((len(ids), 3), dtype=np.int64)
    piece[:, 0] = ids
    piece[0::2, 1] = 20 + pitch * 1.6  # louder up high
    piece[0::2, 2] = rng.integers(-10, 10, 400)
    before = score(model, [piece])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = torch.as_tensor(piece).unsqueeze(0)
    for _ in range(150):
        logits, _, _, (v, o) = model(batch[:, :-1, 0], model.init_hidden(1), activations=True,
                                     touch=(batch[:, :-1, 1], batch[:, :-1, 2]), struck=batch[:, 1:, 0])
        loss, _ = touch_loss(v, o, *targets(batch[:, 1:, 1], batch[:, 1:, 2]))
        optimiser.zero_grad()
        (loss / 400).backward()
        optimiser.step()
    after = score(model, [piece])
    assert before["strikes"] == after["strikes"] == 399
    assert after["velocity_bits"] < 4.0 < before["velocity_bits"]
    assert json.dumps(after)  # finite, plain numbers


def _touch_model(tmp_path: Path, touch: bool = True) -> Path:
    """A tiny notewise model folder; with touch, its head made to play loud high notes and soft low
    ones (velocity bin = the pitch's place in the range), so what it gives is known."""
    from clara_live.model.store import save_model

    codec = CodecConfig()
    vocabulary = make_codec(codec).vocabulary()
    torch.manual_seed(3)
    model = AWDLSTM(len(vocabulary), ModelConfig(emb_size=16, hidden_size=32, num_layers=2, touch=touch)).eval()
    if touch:
        with torch.no_grad():  # the head ignores the state and reads the struck token only
            first, last = model.touch.head[0], model.touch.head[2]
            first.weight.zero_(), first.bias.zero_(), last.weight.zero_(), last.bias.zero_()
            ons = [i for i, t in enumerate(vocabulary) if t.startswith("p")]
            model.embed.weight[ons, 0] = torch.linspace(0.0, 1.0, len(ons))
            first.weight[0, 16] = 1.0  # one unit carries the struck token's place in the range
            last.weight[:32, 0] = torch.arange(32) * 40.0  # bins rise with it ...
            last.bias[:32] = -(torch.arange(32) ** 2) * 20.0 / 32  # ... peaking at 32 x place
    folder = tmp_path / ("touch-model" if touch else "flat-model")
    save_model(folder, model, codec, vocabulary)
    return folder


def _continue(model: Path, out: Path, *flags: str) -> list[tuple[int, int, int]]:
    """`clara continue` on a Chopin prelude: Clara's (tick, pitch, velocity) note-ons."""
    import mido

    from clara_live.cli import main

    prompt = SHARED / "corpus" / "piano-midi-de" / "Chopin" / "chpn-p7.mid"
    assert main(["continue", str(prompt), "--model", str(model), "-o", str(out), "--seconds", "8",
                 "--seed", "5", "--only-continuation", *flags]) == 0
    notes = []
    for track in mido.MidiFile(str(out)).tracks[1:]:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity:
                notes.append((tick, msg.note, msg.velocity))
    return notes


def test_continue_plays_each_note_with_the_touch_the_model_gives_it(tmp_path, torch_settings_restored):
    model = _touch_model(tmp_path)
    learned = _continue(model, tmp_path / "learned.mid")
    flat = _continue(model, tmp_path / "flat.mid", "--touch", "flat")
    assert len(learned) >= 10 and len(flat) >= 10
    assert len({v for _, _, v in flat}) == 1  # today's touch: one velocity, on the grid
    assert all(t % 40 == 0 for t, _, _ in flat)  # 480 ticks a quarter, 12 steps: 40 ticks a step
    velocities = np.array([v for _, _, v in learned])
    pitches = np.array([p for _, p, _ in learned])
    assert len(set(velocities.tolist())) >= 5 and velocities.min() >= 12
    assert np.corrcoef(pitches, velocities)[0, 1] > 0.5  # the head's rule: high notes loud
    assert any(t % 40 for t, _, _ in learned)  # onsets off the grid ...
    steps = np.array([t for t, _, _ in learned]) / 40
    assert np.abs(steps - np.round(steps)).max() <= 0.5  # ... never half a step or more from it


def test_a_model_without_touch_plays_flat_whatever_is_asked(tmp_path, torch_settings_restored):
    notes = _continue(_touch_model(tmp_path, touch=False), tmp_path / "old.mid")
    assert len({v for _, _, v in notes}) == 1 and all(t % 40 == 0 for t, _, _ in notes)


def test_early_and_late_onsets_never_reorder_a_keys_notes():
    from clara_live.music.midi_io import timed

    notes = [StepNote(0, 1, 60, 80, "p", 0.49), StepNote(1, 2, 60, 80, "p", -0.5), StepNote(2, 3, 60, 80, "p", -0.2),
             StepNote(0, 4, 62, 80, "p", -0.4)]
    events = sorted(timed(notes, 40))
    by_key = {}
    for pitch, on, off, _ in events:
        by_key.setdefault(pitch, []).append((on, off))
    for spans in by_key.values():
        spans.sort()
        assert all(on < off for on, off in spans)
        assert all(off <= next_on for (_, off), (next_on, _) in zip(spans, spans[1:], strict=False))
    assert by_key[62] == [(0, 160)]  # an early first onset stays at tick 0


def test_a_live_answer_plays_with_touch_and_its_first_note_on_the_beat(tmp_path, torch_settings_restored):
    from clara_live.codec.vocabulary import Vocabulary
    from clara_live.config import InferenceConfig, SamplingConfig
    from clara_live.engine import build_engine
    from clara_live.live.commands import Answer, Feed
    from clara_live.live.midi import NOTE_ON
    from clara_live.live.tempo import Grid
    from clara_live.live.worker import Worker
    from clara_live.model import load_model
    from clara_live.sampling.sampler import Sampler

    loaded = load_model(_touch_model(tmp_path))
    sampler = Sampler(build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32")),
                      loaded.vocabulary, loaded.codec, SamplingConfig(temperature=1.3), seed=2)
    sent = []
    worker = Worker(sampler, lambda *event: sent.append(event), lookahead=1e9, clock=lambda: 0.0)
    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    for token, velocity in [("p27", 60), ("wait6", 0), ("endp27", 0), ("p31", 75), ("wait6", 0),
                            ("endp31", 0), ("p34", 90), ("wait12", 0), ("endp34", 0)]:
        worker.handle(Feed(tuple(vocab.ids([token], "test").tolist()), velocity, None, 0))
    grid = Grid(anchor_time=10.0, anchor_step=0.0, bpm=100.0, sample_freq=12)
    answer = Answer(id=1, start_step=48, steps=96, grid=grid, velocity=70, channel=0)
    worker.handle(answer)
    ons = sorted((t, msg[1], msg[2]) for t, msg, *_ in sent if msg[0] & 0xF0 == NOTE_ON)
    assert len(ons) >= 8
    assert ons[0][0] == pytest.approx(answer.start_time)  # on the player's beat, touch or none
    assert len({v for *_, v in ons}) >= 4 and min(v for *_, v in ons) >= 12  # not one velocity
    steps = np.array([(t - 10.0) / grid.step_seconds for t, *_ in ons])
    assert np.abs(steps - np.round(steps)).max() <= 0.5 and (np.abs(steps - np.round(steps)) > 0.01).any()
    sounding: dict[int, float] = {}
    for t, msg, *_ in sorted(sent, key=lambda e: (e[0], e[1][0] & 0xF0 == NOTE_ON)):
        if msg[0] & 0xF0 == NOTE_ON:
            assert msg[1] not in sounding, "a key struck again before its release"
            sounding[msg[1]] = t
        else:
            assert sounding.pop(msg[1]) < t
    assert not sounding


def test_the_running_level_baseline_is_sure_of_a_steady_level_and_pays_for_a_jump():
    from conftest import load_benchmark

    bench = load_benchmark("touch_bits")
    steady = bench.running_level_bits(np.array([70, 71, 70, 69, 70, 71, 70, 70] * 4), 1, 127, (64.0, 20.0))
    assert steady[8:].mean() < 3.0  # within a velocity or two of its level
    jump = bench.running_level_bits(np.array([70] * 20 + [120]), 1, 127, (64.0, 20.0))
    assert jump[-1] > 10.0 and jump[-1] <= np.log2(127 / 0.01) + 1e-9  # the uniform share caps a surprise
    uniform = bench.running_level_bits(np.random.default_rng(0).integers(1, 128, 400), 1, 127, (64.0, 20.0))
    assert 6.5 < uniform.mean() < 8.0  # near log2(127) = 7.0 for random velocities


def test_touch_bits_scores_model_and_baseline_on_the_same_strikes(built, tmp_path, capsys):
    from conftest import load_benchmark

    from clara_live.model.store import save_model

    out, manifest = built
    corpus = BuiltCorpus(out)
    torch.manual_seed(0)
    model = AWDLSTM(len(corpus.vocabulary), ModelConfig(emb_size=16, hidden_size=32, num_layers=1)).eval()
    save_model(tmp_path / "m", model, corpus.codec, corpus.vocabulary)
    bench = load_benchmark("touch_bits")
    assert bench.main(["--corpus", str(out), "--model", str(tmp_path / "m"), "--split", "valid",
                       "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    rows = result["corpora"]
    assert rows and all(r["strikes"] > 100 for r in rows.values())
    for r in rows.values():  # an untrained head is near uniform: about log2(127) and log2(100) bits
        assert 6.0 < r["model_velocity_bits"] < 8.5 and 5.5 < r["model_offset_bits"] < 8.0
        assert r["baseline_velocity_bits"] < r["model_velocity_bits"]  # the level beats a guess
    assert "running level" in capsys.readouterr().out


@pytest.mark.parametrize("level", [1, 64, 127])
def test_a_prompt_without_dynamics_is_answered_at_a_musical_level(tmp_path, torch_settings_restored, level):
    """Every note at velocity 1, 64 (a keyboard without velocity) or 127: flat touch plays the
    codec's velocity, learned touch its own (fed as unknown), never silent and never out of 1..127."""
    import mido

    from clara_live.cli import main

    prompt = tmp_path / "flat.mid"
    steps_to_midi([StepNote(6 * i, 6 * i + 5, 55 + (i * 7) % 24, level) for i in range(48)], 12).save(prompt)
    model = _touch_model(tmp_path)
    for touch in ("flat", "learned"):
        out = tmp_path / f"{touch}.mid"
        assert main(["continue", str(prompt), "--model", str(model), "-o", str(out), "--seconds", "6",
                     "--seed", "1", "--only-continuation", "--touch", touch]) == 0
        velocities = [m.velocity for t in mido.MidiFile(str(out)).tracks for m in t if m.type == "note_on"
                      and m.velocity]
        assert velocities and all(12 <= v <= 127 for v in velocities)
        if touch == "flat":
            assert set(velocities) == {CodecConfig().velocity}
        else:
            assert len(set(velocities)) > 3


def test_the_running_level_is_the_same_in_training_and_in_the_sampler(tmp_path, torch_settings_restored):
    from clara_live.config import InferenceConfig, SamplingConfig
    from clara_live.engine import build_engine
    from clara_live.model import load_model
    from clara_live.model.touch import LEVEL_WINDOW, level_features
    from clara_live.sampling.sampler import Sampler

    velocity = torch.tensor([0, 70, 0, 0, 90, 0, -1, 0, 50, 0] * 8)
    offset = torch.tensor([0, 10, 0, 0, -20, 0, 0, 0, 5, 0] * 8)
    level = level_features(velocity, offset)
    assert level.shape == (80, 5) and torch.equal(level[0], torch.zeros(5))
    known = torch.tensor([70.0, 90.0, 50.0])
    assert level[-1, 1].item() == pytest.approx(float((known.mean() - 64) / 32), abs=1e-6)
    assert level[-1, 0].item() == pytest.approx(min(1.0, (LEVEL_WINDOW * 3 / 10) / 16), abs=0.07)

    loaded = load_model(_touch_model(tmp_path))
    sampler = Sampler(build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32")),
                      loaded.vocabulary, loaded.codec, SamplingConfig(), seed=1)
    tokens = ["p20", "wait3", "endp20", "p24", "wait3", "endp24"] * 12
    velocities = [60 + 3 * (i % 7) if t.startswith("p") else 0 for i, t in enumerate(tokens)]
    offsets = [0.1 * ((i % 5) - 2) if t.startswith("p") else 0.0 for i, t in enumerate(tokens)]
    sampler.feed(tokens, velocities, offsets)
    columns = torch.tensor([[v, round(o * 100)] for v, o in zip(velocities, offsets, strict=True)])
    expected = level_features(columns[:, 0], columns[:, 1])[-1]
    got = level_features(*torch.from_numpy(sampler.recent[0]).unbind(-1))[-1]
    torch.testing.assert_close(got, expected)


def test_touch_bits_says_what_each_corpus_carries(built):
    from conftest import load_benchmark

    out, manifest = built
    rows = load_benchmark("touch_bits").carried(out)
    played = [p for p in manifest["pieces"] if p["touch"]]
    assert sum(r["pieces"] for r in rows.values()) == len(played) == 5  # the flat file carries none
    r = next(iter(rows.values()))
    assert r["velocity_sd"] > 5 and r["distinct"] > 20 and 0 <= r["on_step"] < 0.5 and r["offset_sd_steps"] > 0.1


# --- exact values (formats 2, 3): SAME as the previous strike's velocity, ON the step, REPEAT its offset ---------

@pytest.mark.parametrize("format", [2, 3])
def test_an_exact_heads_values_sum_to_one_over_velocities_and_offsets(format):
    from clara_live.model.touch import exact_value_bits, value_log_probs

    torch.manual_seed(4)
    velocity_logits, offset_logits = torch.randn(1, 33) * 3, torch.randn(1, 15 + format) * 3
    for previous in ([0, 0], [1, 0], [4, 3], [5, -20], [64, 0], [124, 49], [125, -50], [127, 7]):
        prev = torch.tensor([previous])
        logs = value_log_probs(velocity_logits, offset_logits, prev)
        velocities = torch.arange(1, 128)
        v_bits, _ = exact_value_bits(*(x.expand(127, -1) for x in logs), velocities, torch.zeros(127, dtype=torch.long),
                                     prev.expand(127, -1))
        offsets = torch.arange(-50, 50)
        _, o_bits = exact_value_bits(*(x.expand(100, -1) for x in logs), torch.full((100,), 64), offsets,
                                     prev.expand(100, -1))
        assert (2 ** -v_bits.double()).sum().item() == pytest.approx(1.0, abs=1e-5)
        assert (2 ** -o_bits.double()).sum().item() == pytest.approx(1.0, abs=1e-5)
        if previous[0]:  # the previous velocity costs SAME's probability, nothing spread over a bin
            assert v_bits[previous[0] - 1].item() == pytest.approx(-logs[0][0, 32].item() / np.log(2), abs=1e-4)
        if previous[0] and previous[1] and format == 3:  # ... and its offset REPEAT's
            assert o_bits[previous[1] + 50].item() == pytest.approx(-logs[1][0, 17].item() / np.log(2), abs=1e-4)
        assert o_bits[50].item() == pytest.approx(-logs[1][0, 16].item() / np.log(2), abs=1e-4)  # offset 0: ON's


def test_exact_targets_and_the_previous_strike_carried_over_chunks():
    from clara_live.model.touch import ON, REPEAT, SAME, previous_strike

    velocity = torch.tensor([0, 70, 0, 70, -1, 71, 0, 71, 127])
    offset = torch.tensor([0, 0, 0, 5, 0, 5, 0, -3, 0])
    previous = previous_strike(velocity, offset)
    assert previous[:, 0].tolist() == [0, 70, 70, 70, 70, 71, 71, 71, 127]
    assert previous[:, 1].tolist() == [0, 0, 0, 5, 5, 5, 5, -3, 0]
    before = torch.cat([torch.zeros(1, 2, dtype=torch.long), previous[:-1]])  # the last known before each strike
    tv, to = targets(velocity, offset, before)
    assert tv.tolist() == [-100, 17, -100, SAME, -100, 17, -100, SAME, 31]
    assert to.tolist() == [-100, ON, -100, 8, -100, 8, -100, 7, ON]  # format 2: no REPEAT
    assert targets(velocity, offset, before, repeat=True)[1].tolist() == [-100, ON, -100, 8, -100, REPEAT, -100, 7, ON]
    carried = previous_strike(torch.tensor([0, 0, 90, 0]), torch.tensor([0, 0, -7, 0]), torch.tensor([33, 4]))
    assert carried.tolist() == [[33, 4], [33, 4], [90, -7], [90, -7]]
    assert targets(velocity, offset)[0].tolist() == [-100, 17, -100, 17, -100, 17, -100, 17, 31]  # format 1: bins


def test_a_format_1_model_saved_before_the_field_loads_and_scores_as_before(tmp_path):
    from clara_live.model import load_model
    from clara_live.model.touch import OFFSET_WIDTHS, offset_bin, velocity_width

    folder = _touch_model(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["model"]["touch_format"]  # as the models saved before the exact formats were
    (folder / "config.json").write_text(json.dumps(config))
    model = load_model(folder).model
    assert model.config.touch_format == 1 and model.touch.head[2].out_features == 48
    rng = np.random.default_rng(1)
    piece = np.zeros((120, 3), dtype=np.int64)
    piece[:, 0] = np.where(np.arange(120) % 2 == 0, rng.integers(25, 87, 120), 11)
    piece[0::2, 1], piece[0::2, 2] = rng.integers(1, 128, 60), rng.integers(-50, 50, 60)
    got = score(model, [piece])
    # the bins' bits, computed here as format 1 always counted them
    table = torch.as_tensor(piece).unsqueeze(0)
    _, _, _, (v, o) = model(table[:, :-1, 0], model.init_hidden(1), activations=True,
                            touch=(table[:, :-1, 1], table[:, :-1, 2]), struck=table[:, 1:, 0])
    known = table[0, 1:, 1] > 0
    vb, ob = velocity_bin(table[0, 1:, 1][known]), offset_bin(table[0, 1:, 2][known])
    v_bits = -torch.log_softmax(v[0][known], -1).gather(-1, vb[:, None])[:, 0] + torch.log(velocity_width(vb).float())
    o_bits = -torch.log_softmax(o[0][known], -1).gather(-1, ob[:, None])[:, 0] + torch.log(OFFSET_WIDTHS[ob].float())
    assert got["strikes"] == int(known.sum())
    assert got["velocity_bits"] == pytest.approx((v_bits.mean() / np.log(2)).item(), rel=1e-5)
    assert got["offset_bits"] == pytest.approx((o_bits.mean() / np.log(2)).item(), rel=1e-5)


@pytest.mark.parametrize("format", [2, 3])
def test_a_grown_head_reads_its_bins_as_before(format):
    from training.touch_head import grow

    torch.manual_seed(2)
    old = AWDLSTM(149, ModelConfig(emb_size=16, hidden_size=32, num_layers=2)).eval()
    new = grow(old, format)
    assert new.config.touch_format == format and new.touch.format == format
    ids = torch.randint(0, 149, (2, 30))
    velocity, offset = torch.randint(-1, 128, (2, 30)), torch.randint(-50, 50, (2, 30))
    a = old(ids, old.init_hidden(2), activations=True, touch=(velocity, offset), struck=ids)[3]
    b = new(ids, new.init_hidden(2), activations=True, touch=(velocity, offset), struck=ids)[3]
    torch.testing.assert_close(b[0][..., :32], a[0])  # velocity bins
    torch.testing.assert_close(b[1][..., :16], a[1])  # offset bins
    assert (b[0][..., 32:] == 0).all() and (b[1][..., 16:] == 0).all()  # the exact classes start fresh


def test_a_head_only_run_on_a_tiny_corpus_lowers_valid_touch_bits(built, tmp_path, capsys):
    from clara_live.model import load_model
    from training.touch_head import main

    out, _ = built
    base = _touch_model(tmp_path)
    (base / "splits.json").write_text('{"valid": ["a piece"]}')  # the benchmarks' prompts come from it
    new = tmp_path / "touch-exact"
    assert main(["--model", str(base), "--corpus", str(out), "--out", str(new), "--pieces", "3",
                 "--valid-pieces", "3", "--tokens", "800", "--epochs", "4", "--lr", "3e-3"]) == 0
    corpus = BuiltCorpus(out)
    before, after = load_model(base), load_model(new)
    assert after.model.config.touch_format == 3
    assert (new / "splits.json").read_text() == (base / "splits.json").read_text()
    for name, weight in before.model.state_dict().items():  # nothing but the head has moved
        if not name.startswith("touch.head."):
            torch.testing.assert_close(after.model.state_dict()[name], weight)
    valid = [p[:800] for p in corpus.pieces("valid", before.vocabulary, touch=True) if (p[:, 1] > 0).any()]
    a, b = score(before.model, valid), score(after.model, valid)
    assert a["strikes"] == b["strikes"] > 100
    assert b["velocity_bits"] + b["offset_bits"] < a["velocity_bits"] + a["offset_bits"] - 0.5


def _exact_model(tmp_path: Path, forced: tuple[int, int]) -> Path:
    """_touch_model's, grown to format 3 with the velocity class and the offset class `forced` (indices
    into each head's classes) all but certain."""
    from clara_live.model import load_model
    from clara_live.model.store import save_model
    from training.touch_head import grow

    loaded = load_model(_touch_model(tmp_path))
    model = grow(loaded.model, 3)
    with torch.no_grad():  # the bins reach a few hundred
        model.touch.head[2].bias[forced[0]] = 1e4
        model.touch.head[2].bias[33 + forced[1]] = 1e4
    folder = tmp_path / "exact-model"
    save_model(folder, model, loaded.codec, loaded.vocabulary)
    return folder


def test_sampling_gives_the_previous_strike_and_the_step_when_the_exact_classes_are_forced():
    from clara_live.model.touch import sample_exact

    generator = torch.Generator().manual_seed(0)
    previous = torch.tensor([[1, 0], [64, 9], [127, -50], [90, 49], [0, 0], [0, 0]])
    velocity_logits, offset_logits = torch.full((6, 33), -40.0), torch.full((6, 18), -40.0)
    velocity_logits[:, 32], offset_logits[:, 16] = 0.0, 0.0  # SAME, ON
    velocity, offset = sample_exact(velocity_logits, offset_logits, previous, generator)
    assert velocity[:4].tolist() == [1, 64, 127, 90] and (offset == 0).all()
    assert velocity[4:].min() >= 1  # no previous strike: SAME is impossible, a bin is drawn
    offset_logits[:, 16], offset_logits[:, 17] = -40.0, 0.0  # REPEAT
    _, offset = sample_exact(velocity_logits, offset_logits, previous, generator)
    assert (offset[1:4] * 100).round().long().tolist() == [9, -50, 49] and offset[0] != 0  # none to repeat at 0
    # a bin never gives an exact class's value
    velocity_logits, offset_logits = torch.full((600, 33), -40.0), torch.full((600, 18), -40.0)
    velocity_logits[:, 15], offset_logits[:, 8] = 0.0, 0.0  # the bins of 61..64 and of offsets 0..6
    velocity, offset = sample_exact(velocity_logits, offset_logits, torch.tensor([[62, 3]]).expand(600, -1), generator)
    assert set(velocity.tolist()) == {61, 63, 64}
    assert set((offset * 100).round().long().tolist()) == {1, 2, 4, 5, 6}


def test_a_colder_timing_keeps_the_likeliest_offset_class_and_leaves_the_velocities_alone():
    """sampling.timing_temperature: the offset's classes drawn at their own temperature (REPEAT at 0.7
    against a bin at 0.3 here), the velocity's at 1, from the same draws."""
    from clara_live.model.touch import sample_exact

    previous = torch.tensor([[64, 20]]).expand(2000, -1)
    velocity_logits = torch.randn(2000, 33, generator=torch.Generator().manual_seed(1))
    offset_logits = torch.full((2000, 18), -40.0)
    offset_logits[:, 17], offset_logits[:, 3] = float(np.log(0.7)), float(np.log(0.3))  # REPEAT, a bin
    drawn = {}
    for t in (1.0, 0.25):
        velocity, offset = sample_exact(velocity_logits, offset_logits, previous, torch.Generator().manual_seed(0),
                                        offset_temperature=t)
        drawn[t] = (velocity, float(((offset * 100).round() == 20).float().mean()))
    assert 0.65 < drawn[1.0][1] < 0.75 and drawn[0.25][1] > 0.95  # 0.7^4 / (0.7^4 + 0.3^4) = 0.97
    assert torch.equal(drawn[1.0][0], drawn[0.25][0])


def test_the_sampler_plays_the_last_strike_again_the_players_included(tmp_path, torch_settings_restored):
    from clara_live.config import InferenceConfig, SamplingConfig
    from clara_live.engine import build_engine
    from clara_live.model import load_model
    from clara_live.model.touch import REPEAT, SAME
    from clara_live.sampling.sampler import Sampler

    loaded = load_model(_exact_model(tmp_path, (SAME, REPEAT)))
    sampler = Sampler(build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32")),
                      loaded.vocabulary, loaded.codec, SamplingConfig(), seed=1)
    tokens = ["p20", "wait3", "endp20", "p24", "wait3", "endp24", "p27", "wait3", "endp27"]
    sampler.feed(tokens, [50, 0, 0, 70, 0, 0, 93, 0, 0], [0.1, 0, 0, -0.2, 0, 0, 0.13, 0, 0])  # the player's
    assert sampler.previous.tolist() == [[93, 13]]
    snapshot = sampler.snapshot()
    for token in ("p30", "wait3", "endp30", "p33"):
        sampler.advance(sampler.vocab.ids([token], "test"))
    assert [(t.velocity, round(t.offset * 100)) for t in sampler.made[0]] == [(93, 13), (93, 13)]
    sampler.restore(snapshot)
    assert sampler.previous.tolist() == [[93, 13]] and len(sampler.made[0]) == 0


def test_continue_with_same_and_on_forced_plays_the_prompts_last_velocity_on_the_grid(tmp_path,
                                                                                      torch_settings_restored):
    from clara_live.model.touch import ON, SAME

    notes = _continue(_exact_model(tmp_path, (SAME, ON)), tmp_path / "exact.mid")
    assert len(notes) >= 10
    assert len({v for _, _, v in notes}) == 1 and notes[0][2] >= 12  # the prompt's last strike, again and again
    assert all(t % 40 == 0 for t, _, _ in notes)  # every onset exactly on its step


def test_clara_train_learns_an_exact_head_from_scratch(built, tmp_path):
    """model.touch_format 3 in a full training run: the trainer's loss reads the exact classes and
    the folder it saves loads as format 3 and scores finite bits."""
    from clara_live.model import load_model
    from training.trainer import train

    out, _ = built
    config = load_config(overrides=["model.emb_size=8", "model.hidden_size=16", "model.num_layers=2",
                                    "model.touch_format=3", "training.batch_size=4", "training.bptt=20",
                                    "training.max_steps=6", "training.eval_tokens=2000", "training.device=cpu",
                                    "training.onednn=off", "training.precision=fp32"])
    train(out, tmp_path / "run", config, progress=False)
    loaded = load_model(tmp_path / "run" / "model")
    assert loaded.model.touch.format == 3
    result = score(loaded.model, BuiltCorpus(out).pieces("valid", loaded.vocabulary, touch=True))
    assert result["strikes"] > 100 and 0 < result["velocity_bits"] < 12 and 0 < result["offset_bits"] < 12


def test_the_trainers_touch_loss_counts_a_repeated_strike_as_its_exact_class():
    from clara_live.model.touch import REPEAT, SAME, previous_strike
    from training.trainer import touch_targets_loss

    batch = torch.zeros(1, 9, 3, dtype=torch.long)
    batch[0, 0::2, 1], batch[0, 0::2, 2] = 77, 12  # a strike every other token, each the same as the last
    velocity_logits, offset_logits = torch.full((1, 8, 33), -30.0), torch.full((1, 8, 18), -30.0)
    velocity_logits[..., SAME], offset_logits[..., REPEAT] = 30.0, 30.0
    previous = previous_strike(batch[:, :-1, 1], batch[:, :-1, 2])  # as _backward gives it
    loss, strikes = touch_targets_loss(velocity_logits, offset_logits, batch[:, 1:, 1], batch[:, 1:, 2], previous,
                                       repeat=True)
    assert strikes == 4 and loss.item() < 1e-6
    loss, _ = touch_targets_loss(velocity_logits[..., :32], offset_logits[..., :16], batch[:, 1:, 1], batch[:, 1:, 2])
    assert loss.item() > 8 * np.log(16)  # format 1 sees only (flat) bins


def test_the_level_pull_moves_a_strikes_expected_velocity_and_keeps_its_spread():
    from clara_live.model.touch import SAME, VELOCITY_BINS, level_bias

    values = torch.arange(VELOCITY_BINS, dtype=torch.float) * 4 + 2.5
    logits = (-((values - 80.0) ** 2) / (2 * 15.0**2)).expand(2, -1)  # about 80, give or take 15
    previous = torch.zeros(2, 2, dtype=torch.long)

    def moments(pull: float) -> tuple[float, float]:
        p = torch.softmax(logits + level_bias(logits, previous, 50.0, pull), -1)[0]
        mean = float((p * values).sum())
        return mean, float((p * (values - mean) ** 2).sum() ** 0.5)

    assert moments(0.0) == pytest.approx((80.0, 15.0), abs=0.5)
    assert moments(1.0) == pytest.approx((50.0, 15.0), abs=1.0)  # all the way to the level, as spread as before
    assert moments(0.5)[0] == pytest.approx(65.0, abs=1.0)
    same = torch.cat([logits, torch.zeros(2, 1)], -1)  # SAME: the previous velocity, 100 for the first stream
    bias = level_bias(same, torch.tensor([[100, 0], [0, 0]]), 50.0, 1.0)
    assert bias[0, SAME] == pytest.approx(bias[0, 24] * 100 / values[24])  # SAME leant as a value of 100
    sure = torch.cat([logits, torch.full((2, 1), 10.0)], -1)  # SAME likeliest, but no strike before: not counted
    assert torch.allclose(level_bias(sure, previous, 50.0, 1.0)[:, :VELOCITY_BINS],
                          level_bias(logits, previous, 50.0, 1.0))


def test_with_a_level_pull_her_velocities_stay_near_the_prompts_level(tmp_path, torch_settings_restored):
    """The head plays loud high notes and soft low ones whatever the prompt's level (here a tenth as sure of
    it as _touch_model's); the pull keeps her near the level the prompt was played at (its last 64 notes'),
    still shaped by the head."""
    import symusic

    from clara_live.model import load_model
    from clara_live.model.store import save_model

    loaded = load_model(_touch_model(tmp_path))
    with torch.no_grad():
        loaded.model.touch.head[2].weight.mul_(0.1), loaded.model.touch.head[2].bias.mul_(0.1)
    model = tmp_path / "softer"
    save_model(model, loaded.model, loaded.codec, loaded.vocabulary)
    prompt = symusic.Score(str(SHARED / "corpus" / "piano-midi-de" / "Chopin" / "chpn-p7.mid"))
    level = float(np.mean(sorted((n.time, n.velocity) for t in prompt.tracks for n in t.notes)[-64:], axis=0)[1])
    free = np.array([v for _, _, v in _continue(model, tmp_path / "free.mid", "--set", "sampling.level_pull=0")])
    pulled = np.array([v for _, _, v in _continue(model, tmp_path / "pulled.mid", "--set", "sampling.level_pull=1")])
    assert abs(pulled.mean() - level) < 0.5 * abs(free.mean() - level), (level, free.mean(), pulled.mean())
    assert len(set(pulled.tolist())) >= 5
