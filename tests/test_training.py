"""clara train / clara evaluate on a tiny corpus: run folder, exact resume, DDP, fine-tuning."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clara_live.cli import main
from clara_live.config import load_config
from clara_live.corpus import build_corpus
from clara_live.model import load_model
from training.trainer import train

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REPO = Path(__file__).resolve().parents[1]
TINY = ["model.emb_size=8", "model.hidden_size=16", "model.num_layers=2", "training.batch_size=4",
        "training.bptt=20", "training.checkpoint_every=5", "training.eval_tokens=2000", "training.device=cpu",
        "training.onednn=off"]  # pinned: a measured switch may differ between the runs a test compares
# the oneDNN switch is for CPU fp32 (under native bf16 oneDNN is always on): pinned, as any CPU may run the suite
FP32 = ["training.precision=fp32"]
NO_DROPOUT = ["model.dropout_emb=0", "model.dropout_input=0", "model.dropout_hidden=0",
              "model.dropout_output=0", "model.weight_drop=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("src") / "Clementi"
    source.mkdir()
    for midi in sorted((SHARED / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:4]:
        shutil.copy(midi, source / midi.name)
    out = tmp_path_factory.mktemp("corpus")
    config = load_config(overrides=["corpus.workers=1", "corpus.transpose_low=-1", "corpus.transpose_high=0",
                                    "corpus.valid_fraction=0.3", "corpus.test_fraction=0.0"])
    manifest = build_corpus([str(source)], out, config, progress=False)
    assert manifest["splits"]["train"]["pieces"] and manifest["splits"]["valid"]["pieces"]
    return out


def _params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_run_folder_and_model(corpus, tmp_path):
    out = tmp_path / "run"
    result = train(corpus, out, load_config(overrides=TINY + ["training.max_steps=12"]), progress=False)
    assert result["step"] == 12
    assert {"checkpoint.pt", "metrics.jsonl", "model"} <= {p.name for p in out.iterdir()}
    loaded = load_model(out / "model")
    assert loaded.codec.sample_freq == 12 and loaded.info["valid"]["tokens"] > 0
    assert torch.equal(_params(loaded.model), _params(result["model"]))
    with pytest.raises(Exception, match="holds a checkpoint already"):
        train(corpus, out, load_config(overrides=TINY), progress=False)


def test_resume_continues_exactly(corpus, tmp_path):
    straight = train(corpus, tmp_path / "a", load_config(overrides=TINY + ["training.max_steps=14"]), progress=False)
    train(corpus, tmp_path / "b", load_config(overrides=TINY + ["training.max_steps=7"]), progress=False)
    resumed = train(corpus, tmp_path / "b", load_config(overrides=TINY + ["training.max_steps=14"]),
                    resume=True, progress=False)
    assert resumed["step"] == 14
    assert torch.equal(_params(straight["model"]), _params(resumed["model"]))


def test_full_epoch_logs_validation_and_plots(corpus, tmp_path):
    out = tmp_path / "run"
    train(corpus, out, load_config(overrides=TINY + ["training.epochs=1"]), progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if "valid_nll" in r]
    assert len(valid) == 1 and valid[0]["valid_perplexity"] == pytest.approx(2.718281828 ** valid[0]["valid_nll"])
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_json_and_finetune(corpus, tmp_path, capsys):
    out = tmp_path / "base"
    train(corpus, out, load_config(overrides=TINY + ["training.max_steps=5"]), progress=False)
    files = sorted((SHARED / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:2]
    assert main(["evaluate", "--model", str(out / "model"), "--json", *map(str, files)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"nll", "perplexity", "accuracy", "tokens", "files", "notes", "bits_per_note"}
    assert result["files"] == 2
    assert 0 < result["nll"] < 6 and 0 <= result["accuracy"] <= 1
    assert main(["evaluate", "--model", str(out / "model"), str(SHARED / "midi/edge/corrupted_control168.mid")]) == 1
    # a personal model starts from the base model's weights and vocabulary
    personal = train(corpus, tmp_path / "personal", load_config(overrides=TINY + ["training.max_steps=2"]),
                     init=str(out / "model"), progress=False)
    assert load_model(tmp_path / "personal" / "model").info["init"] == str(out / "model")
    assert personal["step"] == 2


def test_finetune_refuses_an_incompatible_base(corpus, tmp_path):
    out = tmp_path / "base"
    train(corpus, out, load_config(overrides=TINY + ["training.max_steps=2"]), progress=False)
    meta = json.loads((out / "model" / "config.json").read_text())
    meta["codec"].update(sample_freq=4, max_wait=25)  # max_wait: its vocabulary's waits still fit its codec
    (out / "model" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="codec.sample_freq is 4 but the corpus has 12"):
        train(corpus, tmp_path / "p", load_config(overrides=TINY), init=str(out / "model"), progress=False)


def test_a_piano_model_grows_into_a_chamber_corpus_keeping_what_it_predicts(tmp_path):
    """--init from a piano model on a chamber corpus: the v family's rows start as the p family's, the
    model's own ids keep their meaning (same predictions over its own tokens before training), and
    touch's layers are added."""
    from training.run import Place
    from training.trainer import _base_model

    source = tmp_path / "src" / "Clementi"
    source.mkdir(parents=True)
    for midi in sorted((SHARED / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:3]:
        shutil.copy(midi, source / midi.name)
    config = load_config(overrides=["corpus.workers=1", "corpus.valid_fraction=0.3", "corpus.test_fraction=0.0",
                                    "codec.chamber=true", "corpus.cache="])
    build_corpus([str(source)], tmp_path / "corpus", config, progress=False)
    from training.data import Corpus

    base = load_model(REPO / "trained_models" / "clara-notewise")
    model, vocabulary = _base_model(Corpus(tmp_path / "corpus"), config, str(REPO / "trained_models" /
                                                                            "clara-notewise"),
                                    Place(0, 1, torch.device("cpu")))
    assert vocabulary[:len(base.vocabulary)] == base.vocabulary and {"v10", "endv61"} <= set(vocabulary)
    assert model.touch is not None
    rows = model.embed.weight
    assert torch.equal(rows[vocabulary.index("v10")], base.model.embed.weight[base.vocabulary.index("p10")])
    ids = torch.randint(0, len(base.vocabulary), (1, 40))
    model.eval()
    a, _ = base.model.eval()(ids, base.model.init_hidden(1))
    b, _ = model(ids, model.init_hidden(1))
    torch.testing.assert_close(a, b[..., :len(base.vocabulary)])


def test_sigint_saves_a_checkpoint_and_exits_cleanly(corpus, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "clara_live", "train", "--corpus", str(corpus), "--out", str(out)]
    for item in TINY + ["training.checkpoint_every=100000", "training.epochs=50", "training.log_every=10"]:
        args += ["--set", item]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:  # wait for log_every steps
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"; checkpoint saved in {out}/checkpoint.pt; resume with: clara train --corpus" in err
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["position"]["global_step"] >= 10  # saved at the interrupt, not at an interval
    assert (out / "model" / "config.json").exists()
    held = json.loads((out / "model" / "splits.json").read_text())  # its held-out music with it
    assert held["valid"] and held["sources"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_two_processes_match_one(corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo): the same parameters as one process on the same global batch."""
    # fp32: under bf16 autocast (a CPU with native bf16) two ranks' reductions round apart by ~1e-4
    overrides = TINY + NO_DROPOUT + ["training.max_steps=6", "training.alpha=0", "training.beta=0",
                                     "training.precision=fp32"]
    single = train(corpus, tmp_path / "one", load_config(overrides=overrides), progress=False)
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
            "-m", "clara_live", "train", "--corpus", str(corpus), "--out", str(tmp_path / "two")]
    for item in overrides:
        args += ["--set", item]
    env = {**os.environ, "CLARA_RANK_DIGESTS": str(tmp_path / "two")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [torch.load(tmp_path / "two" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0], ranks[1]), "ranks diverged"
    torch.testing.assert_close(ranks[0], _params(single["model"]), atol=1e-5, rtol=1e-4)
    two = load_model(tmp_path / "two" / "model")
    assert two.info["world_size"] == 2
    assert two.info["valid"]["nll"] == pytest.approx(load_model(tmp_path / "one" / "model").info["valid"]["nll"],
                                                     rel=1e-4)


def _train_losses(out: Path) -> list[float]:
    return [r["train_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "train_loss" in r]


def test_bf16_autocast_on_cpu_learns_and_keeps_fp32_weights(corpus, tmp_path, capfd):
    decoded = {True: set(), False: set()}  # the decoder's output dtypes, in training steps and in validation

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            decoded[module.training].add(output.dtype)

    overrides = TINY + ["training.precision=bf16", "training.max_steps=20", "training.log_every=5",
                        "training.lr=0.03", "training.warmup_fraction=0.02", "training.epochs=1"]
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        train(corpus, tmp_path / "run", load_config(overrides=overrides), progress=False)
    finally:
        handle.remove()
    assert "training precision bf16" in capfd.readouterr().err
    assert decoded == {True: {torch.bfloat16}, False: {torch.float32}}  # autocast in the steps only
    losses = _train_losses(tmp_path / "run")
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.2, losses
    loaded = load_model(tmp_path / "run" / "model")
    assert loaded.info["precision"] == "bf16" and loaded.info["training"]["precision"] == "bf16"
    assert {p.dtype for p in loaded.model.state_dict().values()} == {torch.float32}
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {t.dtype for t in state["model"].values()} == {torch.float32}
    assert {t.dtype for o in state["optimiser"]["state"].values() for t in o.values() if t.dim()} == {torch.float32}


def test_bf16_resume_continues_exactly(corpus, tmp_path):
    overrides = TINY + ["training.precision=bf16"]
    straight = train(corpus, tmp_path / "a", load_config(overrides=overrides + ["training.max_steps=10"]),
                     progress=False)
    train(corpus, tmp_path / "b", load_config(overrides=overrides + ["training.max_steps=5"]), progress=False)
    hidden = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["hidden"]
    assert {t.dtype for layer in hidden for t in layer} == {torch.float32}
    resumed = train(corpus, tmp_path / "b", load_config(overrides=overrides + ["training.max_steps=10"]),
                    resume=True, progress=False)
    assert torch.equal(_params(straight["model"]), _params(resumed["model"]))


@pytest.mark.parametrize("chosen", [True, False])
def test_training_steps_run_under_the_chosen_onednn_switch(corpus, tmp_path, monkeypatch, chosen):
    import training.trainer as trainer
    from training.hardware import Precision

    monkeypatch.setattr(trainer, "choose_precision", lambda *args: Precision("fp32", chosen, "test"))
    seen, clip = [], torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda *a, **k: seen.append(torch.backends.mkldnn.enabled) or clip(*a, **k))
    before = torch.backends.mkldnn.enabled
    train(corpus, tmp_path / "run", load_config(overrides=TINY + ["training.max_steps=3"]), progress=False)
    assert seen == [chosen] * 3
    assert torch.backends.mkldnn.enabled == before  # the process's setting is back


def _steps_onednn(monkeypatch) -> list[bool]:
    """The oneDNN switch as each training step sees it (at gradient clipping)."""
    seen, clip = [], torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda *a, **k: seen.append(torch.backends.mkldnn.enabled) or clip(*a, **k))
    return seen


@pytest.mark.parametrize("setting", ["on", "off"])
def test_training_onednn_on_or_off_is_obeyed_without_measuring(corpus, tmp_path, monkeypatch, setting):
    import training.trainer as trainer

    monkeypatch.setattr(trainer, "_time_step", lambda *a, **k: pytest.fail("measured"))
    seen = _steps_onednn(monkeypatch)
    overrides = TINY + FP32 + ["training.max_steps=3", f"training.onednn={setting}"]
    train(corpus, tmp_path / "run", load_config(overrides=overrides), progress=False)
    assert seen == [setting == "on"] * 3
    assert load_model(tmp_path / "run" / "model").info["onednn"] is (setting == "on")


@pytest.mark.parametrize(("timings", "chosen"), [((0.1, 0.2), True), ((0.2, 0.1), False)])
def test_auto_measures_keeps_the_faster_and_a_resumed_run_keeps_it(corpus, tmp_path, monkeypatch, capfd,
                                                                   timings, chosen):
    import training.trainer as trainer

    auto = TINY + FP32 + ["training.onednn=auto"]
    fixed = TINY + FP32 + ["training.max_steps=10", f"training.onednn={'on' if chosen else 'off'}"]
    straight = train(corpus, tmp_path / "a", load_config(overrides=fixed), progress=False)
    monkeypatch.setattr(trainer, "_time_step", lambda *a, **k: timings)
    seen = _steps_onednn(monkeypatch)
    train(corpus, tmp_path / "b", load_config(overrides=auto + ["training.max_steps=5"]), progress=False)
    line = f"oneDNN {'on' if chosen else 'off'} for fp32 (measured: {timings[0]} s a step on, {timings[1]} s off)"
    assert line in capfd.readouterr().err
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["position"]["onednn"] is chosen
    monkeypatch.setattr(trainer, "_time_step", lambda *a, **k: pytest.fail("measured on resume"))
    resumed = train(corpus, tmp_path / "b", load_config(overrides=auto + ["training.max_steps=10"]), resume=True,
                    progress=False)
    assert f"oneDNN {'on' if chosen else 'off'} for fp32 (as the run began" in capfd.readouterr().err
    assert seen == [chosen] * 10
    assert torch.equal(_params(straight["model"]), _params(resumed["model"]))  # exact, as if never stopped


def test_timing_a_step_leaves_the_rng_weights_and_gradients_as_they_were():
    from clara_live.config import ModelConfig
    from clara_live.model import AWDLSTM
    from training.trainer import _time_step

    torch.manual_seed(1)
    model = AWDLSTM(12, ModelConfig(emb_size=8, hidden_size=16, num_layers=2))
    batch = torch.randint(0, 12, (4, 21))
    weights, rng, calls = _params(model).clone(), torch.get_rng_state(), []

    def timer(step):
        step()  # draws dropout masks and fills gradients
        calls.append([p.grad is not None for p in model.parameters()])
        return 0.3, 0.4

    assert _time_step(model, batch, torch.device("cpu"), timer=timer) == (0.3, 0.4)
    assert any(calls[0])
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(_params(model), weights)
    assert all(p.grad is None for p in model.parameters())
    _time_step(model, batch, torch.device("cpu"))  # the real timer too
    assert torch.equal(torch.get_rng_state(), rng) and all(p.grad is None for p in model.parameters())


def test_distributed_auto_measures_on_rank_zero_only(corpus, tmp_path):
    """torchrun with 2 CPU processes under training.onednn: auto: rank 0 measures and broadcasts."""
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
            "-m", "clara_live", "train", "--corpus", str(corpus), "--out", str(tmp_path / "two")]
    for item in TINY + FP32 + ["training.max_steps=2", "training.onednn=auto"]:
        args += ["--set", item]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("for fp32 (measured: ") == 1, done.stderr[-2000:]
    assert isinstance(load_model(tmp_path / "two" / "model").info["onednn"], bool)


def test_a_model_too_large_to_train_is_refused_before_anything_is_allocated(corpus, tmp_path, capsys):
    """16 layers of 16,384 (the largest sizes config allows) need ~550 GB: refused in one line, where
    the allocator's RuntimeError was a traceback; model.hidden_size=100000 is refused by config itself."""
    args = ["train", "--corpus", str(corpus), "--out", str(tmp_path / "run")]
    for item in TINY + ["model.emb_size=16384", "model.hidden_size=16384", "model.num_layers=16"]:
        args += ["--set", item]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "clara: error: model.emb_size 16384, hidden_size 16384, num_layers 16: 34,"), err
    assert "GB to train, more than this machine's" in err, err
    assert not (tmp_path / "run").exists()


def test_the_memory_estimate_refuses_what_the_machine_cannot_hold(corpus, tmp_path, monkeypatch):
    import training.trainer as trainer
    from clara_live.config import ConfigError
    from training.hardware import training_bytes

    config = load_config(overrides=TINY + ["training.max_steps=1"])
    monkeypatch.setattr(trainer, "memory_bytes", lambda device: 10**5)  # a 0.1 MB machine
    with pytest.raises(ConfigError, match=r"parameters need ~.* MB to train, more than this machine's 0.1 MB of"):
        train(corpus, tmp_path / "run", config, progress=False)
    # weights, gradients and AdamW's two moments in fp32, and a batch's logits thrice
    assert training_bytes(1000, rows=4, bptt=20, vocabulary=100) == 16 * 1000 + 12 * 4 * 40 * 100


def _train_steps(out: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "train_loss" in r]


def test_resume_after_a_kill_logs_each_step_once(corpus, tmp_path):
    """A run killed (SIGKILL) after logging past its last checkpoint logged those steps again on
    --resume: metrics.jsonl held the step-250 line twice. The lines past the checkpoint go."""
    logged = TINY + ["training.log_every=1", "training.checkpoint_every=100"]
    out = tmp_path / "run"
    train(corpus, out, load_config(overrides=logged + ["training.max_steps=5"]), progress=False)
    at_five = (out / "checkpoint.pt").read_bytes()
    train(corpus, out, load_config(overrides=logged + ["training.max_steps=7"]), resume=True, progress=False)
    (out / "checkpoint.pt").write_bytes(at_five)  # killed at step 7 before its checkpoint: steps 6, 7 logged
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 8, "epoch": 1, "train_lo')  # and a line torn by the kill
    train(corpus, out, load_config(overrides=logged + ["training.max_steps=8"]), resume=True, progress=False)
    assert _train_steps(out) == list(range(1, 9))


def test_trimming_metrics_keeps_what_the_checkpoint_has_seen(tmp_path):
    from training.run import Position
    from training.trainer import _trim_metrics

    lines = [{"step": 10, "epoch": 1, "train_loss": 3.0}, {"epoch": 1, "step": 12, "valid_nll": 2.5},
             {"step": 20, "epoch": 2, "train_loss": 2.0}, {"step": 24, "epoch": 2, "train_loss": 1.9},
             {"epoch": 2, "step": 24, "valid_nll": 2.4}, {"step": 30, "epoch": 3, "train_loss": 1.8}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 3')
    # the checkpoint: epoch 2 (0-based 1) at its last step, saved before that epoch's validation line was
    _trim_metrics(tmp_path, Position(epoch=1, step=12, global_step=24))
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == lines[:4]
    _trim_metrics(tmp_path / "none", Position())  # no metrics yet: nothing to do
    assert not (tmp_path / "none").exists()


def test_an_interrupted_run_says_where_it_saved_and_how_to_resume(corpus, tmp_path, monkeypatch, capsys):
    """Ctrl-C saved a checkpoint but said only 'interrupted'."""
    calls, clip = [], torch.nn.utils.clip_grad_norm_

    def clip_and_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C during step 3: the step finishes, its checkpoint is saved
            os.kill(os.getpid(), signal.SIGINT)
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_interrupt)
    out = tmp_path / "my run"
    args = ["train", "--corpus", str(corpus), "--out", str(out)]
    for item in TINY + ["training.max_steps=10"]:
        args += ["--set", item]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"clara: interrupted at step 3; checkpoint saved in {out}/checkpoint.pt; resume with: clara train "
        f"--corpus {corpus} --out '{out}' --resume (and any --config/--set given)")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["position"]["global_step"] == 3
