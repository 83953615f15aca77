"""Shared fixtures: the real MIDI files beside the repository (../shared) and the checks that
every codec test makes on a decoded file (paired note-ons, note-level F1, the full round trip);
and the Debian packages some tests need (`@pytest.mark.system(...)`): a test whose package is
missing is skipped, and the run ends with one line naming the packages and the command that
installs them (which `make test` runs first, through .ci/system-deps, where it can).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import mido
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from clara_live.codec import make_codec, to_steps
from clara_live.config import CodecConfig
from clara_live.live.synth import DEFAULT_SOUNDFONT
from clara_live.music.midi_io import steps_to_midi, write_midi
from clara_live.music.notes import StepNote
from clara_live.music.read import read_music

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MAESTRO_FILES = sorted((SHARED / "midi" / "maestro").glob("*.mid"))
_CORPUS_FILES = sorted((SHARED / "corpus" / "piano-midi-de").glob("*/*.mid"))
# a fixed seed, so every run (and every xdist worker) draws the same files
CORPUS_SAMPLE = sorted(random.Random(20240601).sample(_CORPUS_FILES, min(25, len(_CORPUS_FILES))))
REAL_FILES = MAESTRO_FILES + CORPUS_SAMPLE

# property tests stay small so the whole suite runs in seconds; no deadline, since the first
# example of a test pays for imports and a loaded machine must not turn that into a failure
settings.register_profile("clara", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# HYPOTHESIS_PROFILE=thorough for a longer hunt before a release
settings.register_profile("thorough", parent=settings.get_profile("clara"), max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "clara"))


# the Debian packages tests need, each with how a run sees that it is there
SYSTEM_PACKAGES: dict[str, Callable[[], bool]] = {
    "fluidsynth": lambda: shutil.which("fluidsynth") is not None,
    "fluid-soundfont-gm": DEFAULT_SOUNDFONT.is_file,
    "jackd2": lambda: shutil.which("jackd") is not None,
}
FIXTURE_PACKAGES = {"jack_server": ("jackd2",)}  # every test that uses the fixture needs these too
INSTALL = "sudo apt-get install --no-install-recommends"
_MISSING = "missing_system_packages"  # the user property that carries them to the summary (xdist too)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--missing-system-packages", action="store_true",
                     help="print how many tests would skip for a missing Debian package, and which packages "
                          "(`missing-system-packages: N PACKAGE...`), and run nothing (.ci/system-deps)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip each test whose packages (its `system` marks, its fixtures') are missing, saying how to install them."""
    present = {name: check() for name, check in SYSTEM_PACKAGES.items()}
    count, wanted = 0, set()
    for item in items:
        packages = {p for mark in item.iter_markers("system") for p in mark.args}
        packages |= {p for name in item.fixturenames for p in FIXTURE_PACKAGES.get(name, ())}
        missing = [p for p in SYSTEM_PACKAGES if p in packages and not present[p]]
        if missing:
            count += 1
            wanted.update(missing)
            item.add_marker(pytest.mark.skip(reason=f"needs {' '.join(missing)}: {INSTALL} {' '.join(missing)}"))
            item.user_properties.append((_MISSING, " ".join(missing)))
    if config.getoption("missing_system_packages"):
        print(f"\nmissing-system-packages: {count} {' '.join(p for p in SYSTEM_PACKAGES if p in wanted)}")
        config.hook.pytest_deselected(items=list(items))
        items.clear()


def pytest_terminal_summary(terminalreporter) -> None:
    """One line at the end when tests were skipped for want of a system package: which, and the command."""
    skipped = [dict(getattr(r, "user_properties", ())).get(_MISSING) for r in terminalreporter.stats.get("skipped", [])]
    wanted = {p for packages in skipped if packages for p in packages.split()}
    if wanted:
        packages, count = " ".join(p for p in SYSTEM_PACKAGES if p in wanted), sum(1 for p in skipped if p)
        terminalreporter.write_line(f"{count} test{'s' * (count != 1)} skipped for want of {packages} (not "
                                    f"installed); install with: {INSTALL} {packages}", yellow=True, bold=True)


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def save_tiny_model(folder: Path, chamber: bool = False) -> Path:
    """A tiny notewise model folder (8/16 x 2, random weights from seed 0), with families p and v
    (`chamber`) or p alone: for tests of the way in (loading, checking, the CLI, duet roles), not of
    the music."""
    import torch

    from clara_live.config import ModelConfig
    from clara_live.model import AWDLSTM, save_model

    torch.manual_seed(0)
    codec = CodecConfig(chamber=chamber)
    vocabulary = make_codec(codec).vocabulary()
    save_model(folder, AWDLSTM(len(vocabulary), ModelConfig(emb_size=8, hidden_size=16, num_layers=2)), codec,
               vocabulary)
    return folder


@pytest.fixture(scope="session")
def chamber_model(tmp_path_factory) -> Path:
    """A tiny random chamber model (families p and v)."""
    return save_tiny_model(tmp_path_factory.mktemp("chamber"), chamber=True)


@pytest.fixture(scope="session")
def piano_model(tmp_path_factory) -> Path:
    """A tiny random model of the piano family alone."""
    return save_tiny_model(tmp_path_factory.mktemp("piano"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data folder (../shared beside the repository)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: the real-file tests need the shared data folder")
    return SHARED


@pytest.fixture(scope="session")
def edge(shared: Path) -> Path:
    return shared / "midi" / "edge"


@pytest.fixture(scope="session")
def maestro_files(shared: Path) -> list[Path]:
    """Every MAESTRO excerpt in ../shared/midi/maestro."""
    assert MAESTRO_FILES, f"no MIDI files in {shared / 'midi' / 'maestro'}"
    return MAESTRO_FILES


@pytest.fixture(scope="session")
def corpus_sample(shared: Path) -> list[Path]:
    """25 piano-midi.de files, the same ones every run."""
    assert len(CORPUS_SAMPLE) >= 20, f"expected the piano-midi.de corpus in {shared / 'corpus'}"
    return CORPUS_SAMPLE


@pytest.fixture(params=REAL_FILES, ids=[_name(p) for p in REAL_FILES])
def real_midi(request: pytest.FixtureRequest) -> Path:
    """Each MAESTRO excerpt and each file of the corpus sample in turn."""
    return request.param


def pairing_errors(path: str | Path) -> list[str]:
    """What is wrong with a MIDI file's note pairing, read back with mido: a note-on for a
    note already sounding, a note-off for a silent note, a note never released."""
    sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> tick of its note-on
    errors = []
    tick = 0
    for msg in mido.merge_tracks(mido.MidiFile(str(path)).tracks):
        tick += msg.time
        if msg.type not in ("note_on", "note_off"):
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            if key in sounding:
                errors.append(f"tick {tick}: note-on for sounding {key}")
            sounding[key] = tick
        elif sounding.pop(key, None) is None:
            errors.append(f"tick {tick}: note-off for silent {key}")
    errors += [f"tick {t}: {key} never released" for key, t in sounding.items()]
    return errors


def note_f1(expected: Iterable[tuple], actual: Iterable[tuple]) -> float:
    """F1 of two sets of note keys; 1.0 when both are empty."""
    a, b = set(expected), set(actual)
    if not a and not b:
        return 1.0
    hits = len(a & b)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(b), hits / len(a)
    return 2 * precision * recall / (precision + recall)


def onset_keys(notes: Iterable[StepNote]) -> set[tuple[int, int, str]]:
    """(pitch, onset step, family) of each note: what the note-level F1 compares."""
    return {(n.pitch, n.start, n.family) for n in notes}


@pytest.fixture(name="pairing_errors", scope="session")
def _pairing_errors() -> Callable[[str | Path], list[str]]:
    return pairing_errors


@pytest.fixture(name="note_f1", scope="session")
def _note_f1() -> Callable[..., float]:
    return note_f1


@pytest.fixture(name="onset_keys", scope="session")
def _onset_keys() -> Callable[..., set]:
    return onset_keys


def load_benchmark(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is scripts, not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def build_midi(path: Path, tracks: list[list[tuple[int, mido.Message]]],
               tempos: Iterable[tuple[int, float]] = ((0, 120.0),), ticks_per_beat: int = 480) -> Path:
    """Write a type-1 MIDI file: a conductor track with (tick, bpm) tempos, then one track per
    list of (absolute tick, message)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    conductor = [(tick, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))) for tick, bpm in tempos]
    for events in [conductor, *tracks]:
        track = mido.MidiTrack()
        now = 0
        for tick, msg in sorted(events, key=lambda e: e[0]):  # stable: same-tick order kept
            track.append(msg.copy(time=tick - now))
            now = tick
        midi.tracks.append(track)
    midi.save(str(path))
    return path


@pytest.fixture
def make_midi(tmp_path: Path) -> Callable[..., Path]:
    """build_midi into tmp_path: make_midi("name.mid", tracks, tempos=..., ticks_per_beat=...)."""

    def make(name: str, tracks: list[list[tuple[int, mido.Message]]], **kwargs: object) -> Path:
        return build_midi(tmp_path / name, tracks, **kwargs)

    return make


@pytest.fixture
def assert_round_trip(tmp_path: Path) -> Callable[[str | Path, CodecConfig], Path]:
    """Check the full round trip of one file under one codec config; returns the decoded file.

    read_music -> to_steps -> encode -> decode -> steps_to_midi -> write_midi -> read_music ->
    to_steps -> encode must give the same tokens, the same (pitch, onset, family) notes
    (F1 = 1.0) and a file whose every note-on is paired. The decoded file stays in tmp_path
    and a failure names it.
    """

    def check(source: str | Path, config: CodecConfig) -> Path:
        codec = make_codec(config)
        notes = to_steps(read_music(source, config.sustain_pedal), config)
        tokens = codec.encode(notes)
        decoded = codec.decode(tokens)
        out = tmp_path / f"{Path(str(source)).stem}.{config.encoding}{config.sample_freq}.decoded.mid"
        write_midi(steps_to_midi(decoded, config.sample_freq, config.bpm, config.violin_low), out)
        again = to_steps(read_music(out, config.sustain_pedal), config)
        f1 = note_f1(onset_keys(notes), onset_keys(again))
        missing = sorted(onset_keys(notes) - onset_keys(again))[:5]
        extra = sorted(onset_keys(again) - onset_keys(notes))[:5]
        assert f1 == 1.0, (f"{source}: note F1 {f1:.4f} after the round trip "
                           f"(lost {missing}, gained {extra}); decoded MIDI kept at {out}")
        tokens_again = codec.encode(again)
        if tokens_again != tokens:
            first = next((i for i, (x, y) in enumerate(zip(tokens, tokens_again, strict=False)) if x != y),
                         min(len(tokens), len(tokens_again)))
            pytest.fail(f"{source}: tokens differ from position {first} "
                        f"({tokens[first:first + 5]} became {tokens_again[first:first + 5]}); "
                        f"decoded MIDI kept at {out}")
        errors = pairing_errors(out)
        assert not errors, f"{source}: unpaired notes in {out}: {errors[:5]}"
        return out

    return check


def step_notes(config: CodecConfig, max_start: int = 120, max_length: int = 70) -> st.SearchStrategy[list[StepNote]]:
    """Random notes on the step grid inside the config's range (both codecs' property tests)."""
    families = ["p", "v"] if config.chamber else ["p"]
    note = st.builds(
        lambda start, length, pitch, velocity, family: StepNote(start, start + length, pitch, velocity, family),
        st.integers(0, max_start), st.integers(1, max_length), st.integers(config.low_pitch, config.high_pitch),
        st.integers(1, 127), st.sampled_from(families))
    return st.lists(note, max_size=40)


@pytest.fixture(scope="module")
def torch_settings_restored():
    """build_engine sets torch's thread count and turns oneDNN off for the process: put them back
    after the module (use it with `pytestmark = pytest.mark.usefixtures("torch_settings_restored")`)."""
    import torch

    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    yield
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn


def tiny_engine(vocab: list[str], seed: int = 0, sharpness: float = 1.0, bias=None, touch: bool = False):
    """A random tiny AWD-LSTM (16/32x2) as an fp32 engine; bias(token) -> decoder bias steers what it wants.
    Without touch by default: a random touch head would only draw from the seed what the tests steer."""
    import torch

    from clara_live.config import InferenceConfig, ModelConfig
    from clara_live.engine import build_engine
    from clara_live.model import AWDLSTM

    torch.manual_seed(seed)
    model = AWDLSTM(len(vocab), ModelConfig(emb_size=16, hidden_size=32, num_layers=2, touch=touch)).eval()
    with torch.no_grad():
        model.embed.weight.mul_(sharpness)  # tied to the decoder: larger weights, peakier predictions
        if bias is not None:
            model.decoder.bias.copy_(torch.tensor([float(bias(t)) for t in vocab]))
    return build_engine(model, InferenceConfig(device="cpu", precision="fp32"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Corpus builds cache encoded files under XDG_CACHE_HOME: a test run's own, never the user's."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous
