"""model/evaluate.py's score: what `clara evaluate` and the trainer's validation report, and the
progress it shows while a long file is scored."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import save_tiny_model

from clara_live.cli import main
from clara_live.model import load_model
from clara_live.model.evaluate import score

MAESTRO = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "midi" / "maestro"

pytestmark = pytest.mark.usefixtures("torch_settings_restored")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model(save_tiny_model(tmp_path_factory.mktemp("model") / "tiny"))


def test_progress_counts_the_tokens_scored_on_stderr(tiny, capsys):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, len(tiny.vocabulary), n) for n in (700, 40, 1)]
    quiet = score(tiny.model, sequences, chunk=64)
    assert capsys.readouterr().err == ""
    shown = score(tiny.model, sequences, chunk=64, progress=True)
    assert shown == quiet  # the same figures
    err = capsys.readouterr().err
    assert "scoring" in err and "/738 " in err  # every predicted token: 699 + 39 + 0


def test_evaluate_shows_progress_when_stderr_is_a_terminal(tmp_path, capsys, monkeypatch):
    """A 50 MB file ran past 180 s with nothing on the screen."""
    model = save_tiny_model(tmp_path / "tiny")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["evaluate", "--model", str(model), str(MAESTRO / "maestro_1.mid")]) == 0
    captured = capsys.readouterr()
    assert "scoring" in captured.err and "token" in captured.err
    assert captured.out.startswith("1 files, ")
