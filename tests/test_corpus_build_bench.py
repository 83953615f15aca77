"""benchmarks/corpus_build.py: a build from an empty cache reads every file, the build from the
user's cache none, and the figures come out as JSON."""

from __future__ import annotations

import importlib.util
import json
import shutil

from conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("corpus_build", REPO / "benchmarks" / "corpus_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cold_and_cached_builds(shared, tmp_path, capsys):
    source = tmp_path / "pieces" / "Chopin"
    source.mkdir(parents=True)
    for path in sorted((shared / "corpus" / "piano-midi-de" / "Chopin").glob("*.mid"))[:3]:
        shutil.copy(path, source / path.name)
    bench = _bench()
    args = [str(source.parent), "--set", "corpus.workers=1"]
    assert bench.main([*args, "--warm-only"]) == 0  # fills this test's own user cache (conftest)
    out = tmp_path / "build.json"
    assert bench.main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["cold"]["files"] == result["cached"]["files"] == 3
    assert result["cold"]["from_cache"] == 0 and result["cached"]["from_cache"] == 3
    assert result["cold"]["tokens"] == result["cached"]["tokens"] > 0
    assert "goal: a cached build under 20 minutes" in capsys.readouterr().out
