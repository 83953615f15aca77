"""The critic on a tiny setup: generations are keyed by seed and setting, human pieces are only
those the generator never trained on, no piece or generation is on two sides, ROC AUC is the
rank statistic, and `clara judge critic --json` is well formed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO

from clara_live.cli import main
from clara_live.config import CorpusConfig
from clara_live.corpus import split_of
from clara_live.judge.store import load_judge
from clara_live.model import load_model
from training.critic import SCHEDULE, SETTINGS, Prompts, auc, generations, setting_of

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

GENERATOR = REPO / "trained_models" / "clara-notewise"


def test_auc_is_the_rank_statistic():
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.1, 0.3])
    positive = np.array([True, True, True, False, False, False])
    pairs = [(p, n) for p in scores[positive] for n in scores[~positive]]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert auc(scores, positive) == pytest.approx(expected)
    assert auc(np.array([1.0, 0.0]), np.array([True, False])) == 1.0
    assert np.isnan(auc(np.array([1.0]), np.array([True])))


def test_generations_are_distinct_keyed_and_sized():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        made = generations(GENERATOR, count=6, tokens=40, burn_in=8, batch=3)
        assert torch.get_num_threads() == 2  # the engine's one thread is not left behind for the training
    finally:
        torch.set_num_threads(threads)
    keys = [k for k, _ in made]
    assert len(set(keys)) == 6 and all(k.startswith("generated/seed") for k in keys)
    assert all(len(ids) == 40 for _, ids in made)
    assert all(setting_of(k) == "default" for k in keys)  # the shipped sampling comes first, and most often
    assert SCHEDULE.count("default") == 4 and set(SCHEDULE) == set(SETTINGS)
    cycled = generations(GENERATOR, count=4, tokens=10, batch=2, schedule=["T0.8-k5-rf0.25", "T1.3-k0-rf1.0"])
    assert [setting_of(k) for k, _ in cycled] == ["T0.8-k5-rf0.25"] * 2 + ["T1.3-k0-rf1.0"] * 2


def test_prompted_generations_continue_a_drawn_prompt():
    """With prompts a batch continues one of them: a prompt of low notes only gets answers that
    stay low, one of high notes answers that stay high (the generator follows its context)."""
    loaded = load_model(GENERATOR)
    index = {t: i for i, t in enumerate(loaded.vocabulary)}

    def line(pitches):
        return np.array([index[t] for p in pitches for t in (f"p{p}", "wait6", f"endp{p}")] * 6)

    for pitches, side in (([3, 5, 7, 8], "low"), ([51, 53, 55, 56], "high")):  # pN: MIDI pitch 33 + N
        made = generations(GENERATOR, count=4, tokens=40, batch=4, prompts=Prompts([line(pitches)], tokens=60),
                           schedule=["T0.8-k5-rf0.25"])
        played = [int(loaded.vocabulary[i][1:]) for _, ids in made for i in ids
                  if loaded.vocabulary[i].startswith("p")]
        assert played and (np.median(played) < 22 if side == "low" else np.median(played) > 37), (side, played)


@pytest.fixture(scope="module")
def tiny_critic(tmp_path_factory, shared):
    corpus = tmp_path_factory.mktemp("corpus")
    for composer in ("Bach", "Chopin", "Mozart", "Schumann"):
        (corpus / composer).mkdir()
        for source in sorted((shared / "corpus" / "piano-midi-de" / composer).glob("*.mid")):
            if split_of(f"{composer}/{source.name}", CorpusConfig()) != "train":
                shutil.copy(source, corpus / composer / source.name)
    out = tmp_path_factory.mktemp("judge") / "critic"
    assert main(["judge", "train-critic", "--model", str(GENERATOR), "--corpus", str(corpus), "--out", str(out),
                 "--generations", "16", "--epochs", "1", "--window", "48"]) == 0
    return corpus, out


def test_the_critic_split_never_shares_a_piece_or_a_generation(tiny_critic):
    corpus, out = tiny_critic
    judge = load_judge(out, kind="critic")
    split = judge.info["split"]
    human = [k for k in split if not k.startswith("generated/")]
    assert human and all(split_of(k, CorpusConfig()) != "train" for k in human)
    assert sum(k.startswith("generated/") for k in split) == 16
    assert set(split.values()) <= {"train", "valid", "test"}  # a dict: each item on exactly one side
    assert 0.0 <= judge.info["metrics"]["test_auc"] <= 1.0 or np.isnan(judge.info["metrics"]["test_auc"])


def test_critic_json(tiny_critic, capsys):
    corpus, out = tiny_critic
    files = sorted(corpus.glob("*/*.mid"))[:2]
    capsys.readouterr()
    assert main(["judge", "critic", *map(str, files), "--judge", str(out), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in results] == [str(f) for f in files]
    assert all(0.0 <= r["human"] <= 1.0 for r in results)


def test_score_a_folder_of_generations(tiny_critic, tmp_path, capsys):
    from clara_live.codec import make_codec
    from clara_live.model import load_model
    from clara_live.music.midi_io import steps_to_midi, write_midi

    corpus, critic = tiny_critic
    composer = tmp_path / "composer"
    assert main(["judge", "train-composer", "--corpus", str(corpus), "--out", str(composer), "--head-epochs", "2",
                 "--window", "48"]) == 0
    loaded = load_model(GENERATOR)
    codec = make_codec(loaded.codec)
    gen_dir = tmp_path / "generated"
    for key, ids in generations(GENERATOR, count=3, tokens=120, burn_in=8, batch=3):
        notes = codec.decode([loaded.vocabulary[i] for i in ids])
        write_midi(steps_to_midi(notes, loaded.codec.sample_freq), gen_dir / f"{key.split('/')[1]}.mid")
    copies = tmp_path / "copies"
    copies.mkdir()
    for k in range(3):
        shutil.copy(sorted(gen_dir.glob("*.mid"))[0], copies / f"copy{k}.mid")
    judges = ["--composer", str(composer), "--critic", str(critic), "--json"]

    def judged(*args: str):
        capsys.readouterr()
        assert main(["judge", *args]) == 0
        return json.loads(capsys.readouterr().out)

    result = judged("score", str(gen_dir), *judges)
    classes = len(load_judge(composer).classes)
    assert result["files"] == 3 and result["composers"] == classes >= 2
    # the score is the files' own: the critic's mean P(human) over them (its --json rounds to 4 places), and
    # exp(mean KL(p(y|x) || p(y))) over the composer judge's probabilities for them
    files = sorted(str(f) for f in gen_dir.glob("*.mid"))
    human = [r["human"] for r in judged("critic", *files, "--judge", str(critic), "--json")]
    assert result["human_mean"] == pytest.approx(np.mean(human), abs=1e-4)
    assert result["inception_score"] == pytest.approx(_inception(composer, files), rel=1e-6)
    assert isinstance(result["novel"], list)
    # copies of one piece: every p(y|x) is the marginal, so the score is 1 whatever the judge
    same = judged("score", str(copies), *judges)
    assert same["inception_score"] == pytest.approx(1.0, abs=1e-6) and same["human_mean"] == pytest.approx(human[0],
                                                                                                       abs=1e-4)
    assert main(["judge", "score", str(tmp_path / "nowhere")]) == 1


def _inception(folder, files: list[str]) -> float:
    """exp(mean over files of KL(p(y|x) || p(y))), computed here from the composer judge's probabilities."""
    from clara_live.codec.vocabulary import Vocabulary
    from clara_live.judge.pieces import encode_file
    from clara_live.judge.predict import predict_pieces

    judge = load_judge(folder, kind="composer")
    vocab = Vocabulary(judge.vocabulary, judge.codec)
    p = np.stack([predict_pieces(judge.model, [encode_file(f, vocab)], judge.window, judge.stride)[0].double().numpy()
                  for f in files])
    p = np.clip(p, 1e-12, None)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), axis=1))))


def test_best_of_k_keeps_the_candidate_the_critic_likes_best(tiny_critic, tmp_path, shared):
    from clara_live.config import load_config
    from clara_live.engine import build_engine
    from clara_live.judge.rank import critic_scorer
    from clara_live.model import load_model
    from clara_live.sampling.sampler import Sampler
    from clara_live.sampling.search import best_of

    _, critic_dir = tiny_critic
    scorer = critic_scorer(load_judge(critic_dir, kind="critic"))
    loaded = load_model(GENERATOR)
    config = load_config()
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                      config.sampling, seed=5)
    sampler.feed(["wait25", "p30", "wait12", "endp30"])
    expanded = sampler.snapshot()
    tokens, scores = best_of(sampler, 4, max_tokens=60, scorer=scorer)
    assert scores.shape == (4,) and ((scores >= 0) & (scores <= 1)).all()
    sampler.restore(expanded)  # the same candidates again, scored independently
    from clara_live.sampling.search import generate
    sampler.expand(4)
    again = generate(sampler, max_tokens=60)
    assert tokens == again[int(np.argmax(scores))]
    assert np.allclose(scorer(again, np.zeros(4)), scores)
    out = tmp_path / "ranked.mid"
    prompt = next((shared / "midi" / "maestro").glob("*.mid"))
    assert main(["continue", str(prompt), "-o", str(out), "--tokens", "40", "--candidates", "3", "--rank", "critic",
                 "--critic", str(critic_dir), "--seed", "1"]) == 0
    assert out.stat().st_size > 100


def test_a_critic_of_a_built_corpus(tmp_path_factory, shared):
    """On a corpus `clara corpus` built: the human side is its valid and test pieces only, a work
    never on two sides of the critic's split, the generations continue its train pieces, and the
    test AUC is reported against each setting and for each corpus."""
    src = tmp_path_factory.mktemp("src")
    for composer in ("Bach", "Chopin", "Schumann"):
        shutil.copytree(shared / "corpus" / "piano-midi-de" / composer, src / composer)
    built = tmp_path_factory.mktemp("built")
    assert main(["corpus", str(src), "-o", str(built), "--set", "corpus.valid_fraction=0.25",
                 "--set", "corpus.test_fraction=0.25"]) == 0
    manifest = json.loads((built / "manifest.json").read_text())
    out = tmp_path_factory.mktemp("judge") / "critic"
    assert main(["judge", "train-critic", "--model", str(GENERATOR), "--corpus", str(built), "--out", str(out),
                 "--generations", "10", "--epochs", "1", "--window", "32"]) == 0
    judge = load_judge(out, kind="critic")
    split = judge.info["split"]
    held = {p["key"]: p for p in manifest["pieces"] if p["split"] != "train"}
    assert {k for k in split if not k.startswith("generated/")} == set(held)
    assert judge.info["sources"] == {k: p["source"] for k, p in held.items()}  # each human item's file
    sides: dict[int, set[str]] = {}
    for key, piece in held.items():
        sides.setdefault(piece["group"], set()).add(split[key])
    assert all(len(s) == 1 for s in sides.values())
    assert judge.info["prompted"] and sum(k.startswith("generated/") for k in split) == 10
    metrics = judge.info["metrics"]
    assert set(metrics["test_auc_by_setting"]) <= set(SETTINGS) and set(metrics["test_auc_by_corpus"]) <= {src.name}
    assert metrics["test_excerpts"] >= metrics["test_items"]
