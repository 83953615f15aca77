"""config.yaml into frozen dataclasses: defaults, refusals naming the key, --set overrides."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest

from clara_live.config import (
    DEFAULT_CONFIG_PATH,
    CodecConfig,
    Config,
    ConfigError,
    CorpusConfig,
    from_dict,
    load_config,
    parse_override,
    replace,
)
from clara_live.errors import ClaraError


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_config_loads_to_the_defaults():
    assert DEFAULT_CONFIG_PATH.is_file()
    config = load_config()
    assert config == Config()
    assert config.codec.encoding == "notewise" and config.codec.sample_freq == 12
    assert config.codec.wait_limit == 25 and (config.codec.low_pitch, config.codec.high_pitch) == (33, 94)
    assert config.corpus == CorpusConfig()


def test_every_field_of_the_repository_file_is_a_known_key():
    import yaml

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for section, cls in (("codec", CodecConfig), ("corpus", CorpusConfig)):
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}


def test_missing_keys_and_sections_take_defaults(tmp_path):
    config = load_config(write(tmp_path, "codec:\n  sample_freq: 4\n"))
    assert config.codec == CodecConfig(sample_freq=4)
    assert config.corpus == CorpusConfig()
    assert load_config(write(tmp_path, "")) == Config()
    assert from_dict(None) == from_dict({}) == from_dict({"codec": None}) == Config()


def test_wait_limit_and_high_pitch():
    assert CodecConfig(sample_freq=4).wait_limit == 9
    assert CodecConfig(max_wait=7).wait_limit == 7
    assert CodecConfig(low_pitch=21, num_pitches=88, violin_low=55).high_pitch == 108


@pytest.mark.parametrize(("data", "named"), [
    ({"mixer": {}}, "mixer: unknown section"),
    ({"codec": {"sample_frq": 4}}, "codec.sample_frq: unknown key"),
    ({"corpus": {"encoding": "notewise"}}, "corpus.encoding: unknown key"),
])
def test_unknown_sections_and_keys_are_refused_by_name(data, named):
    with pytest.raises(ConfigError, match=named):
        from_dict(data)


def test_unknown_key_in_a_file_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="codec.chambr: unknown key"):
        load_config(write(tmp_path, "codec:\n  chambr: true\n"))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sample_freq", "4", "codec.sample_freq: expected int, got str '4'"),
    ("sample_freq", True, "codec.sample_freq: expected int, got bool True"),
    ("sample_freq", 4.0, "codec.sample_freq: expected int, got float"),
    ("chamber", 1, "codec.chamber: expected bool, got int"),
    ("chamber", "yes", "codec.chamber: expected bool, got str"),
    ("encoding", 5, "codec.encoding: expected str, got int"),
    ("bpm", "fast", "codec.bpm: expected float, got str"),
    ("bpm", True, "codec.bpm: expected float, got bool"),
    ("sample_freq", None, "codec.sample_freq: expected int, got NoneType"),
])
def test_wrong_types_are_refused_by_name(key, value, message):
    with pytest.raises(ConfigError) as info:
        from_dict({"codec": {key: value}})
    assert str(info.value).startswith(message)


def test_float_accepts_int():
    config = from_dict({"codec": {"bpm": 90, "chord_hold": 1}, "corpus": {"valid_fraction": 0}})
    assert config.codec.bpm == 90.0 and isinstance(config.codec.bpm, float)
    assert isinstance(config.codec.chord_hold, float) and isinstance(config.corpus.valid_fraction, float)


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "expected a mapping of sections, got list"),
    ({"codec": [1]}, "codec: expected a mapping of keys, got list"),
    ({"codec": 4}, "codec: expected a mapping of keys, got int"),
])
def test_wrong_shapes_are_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(data)


@pytest.mark.parametrize(("data", "named"), [
    ({"live": {"tempo_method": "neural"}}, "live.tempo_method: must be chosen, learned or classic"),
    ({"sampling": {"motif_pull": -1.0}}, r"sampling.motif_pull: -1.0 is outside \[0, 20\] \(0: off\)"),
    ({"sampling": {"motif_pull": float("nan")}}, "sampling.motif_pull"),
])
def test_out_of_range_values_are_refused_by_name(data, named):
    with pytest.raises(ConfigError, match=named):
        from_dict(data)


# --- overrides ----------------------------------------------------------------------------


def test_overrides_are_typed_as_yaml():
    config = load_config(overrides=["codec.sample_freq=4", "codec.chamber=true", "codec.encoding=chordwise",
                                    "codec.bpm=90", "corpus.valid_fraction=0.25"])
    assert config.codec.sample_freq == 4 and config.codec.chamber is True
    assert config.codec.encoding == "chordwise"
    assert config.codec.bpm == 90.0 and config.corpus.valid_fraction == 0.25
    # the rest keeps the file's values
    assert config.codec.low_pitch == 33 and config.corpus.test_fraction == 0.1


def test_later_override_wins_and_file_values_are_overridden(tmp_path):
    path = write(tmp_path, "codec:\n  sample_freq: 6\n  velocity: 64\n")
    config = load_config(path, ["codec.sample_freq=4", "codec.sample_freq=8"])
    assert config.codec.sample_freq == 8 and config.codec.velocity == 64


@pytest.mark.parametrize("text", ["codec.sample_freq", "sample_freq=4", "codec.=4", ".sample_freq=4", "=4", ""])
def test_malformed_override_is_refused(text):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(overrides=[text])


@pytest.mark.parametrize(("text", "named"), [
    ("codec.sample_frq=4", "codec.sample_frq: unknown key"),
    ("mixer.layers=3", "mixer: unknown section"),
    ("codec.sample_freq=four", "codec.sample_freq: expected int, got str"),
    ("codec.chamber=2", "codec.chamber: expected bool, got int"),
    ("codec.sample_freq=0", r"codec.sample_freq: 0 is outside \[1, 480\]"),
])
def test_bad_overrides_are_refused_by_name(text, named):
    with pytest.raises(ConfigError, match=named):
        load_config(overrides=[text])


def test_parse_override():
    assert parse_override("codec.sample_freq=4") == ("codec", "sample_freq", 4)
    assert parse_override(" codec.bpm = 90.5") == ("codec", "bpm", 90.5)
    assert parse_override("codec.encoding=") == ("codec", "encoding", "")
    assert parse_override("codec.encoding=a=b") == ("codec", "encoding", "a=b")
    assert parse_override("codec.encoding=[") == ("codec", "encoding", "[")  # not YAML: kept as text


def test_override_into_an_empty_section(tmp_path):
    path = write(tmp_path, "codec:\n  # all defaults\ncorpus:\n")
    assert load_config(path) == Config()
    assert load_config(path, ["codec.sample_freq=4"]).codec.sample_freq == 4


# --- files --------------------------------------------------------------------------------


def test_missing_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("codec: [1, 2\n", "not valid YAML"),
    ("- codec\n", "expected a mapping of sections"),
])
def test_unreadable_config_file_is_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "config.yaml" in str(info.value)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"sample_freq": 0}, "codec.sample_freq"),
    ({"encoding": "foo"}, "codec.encoding: must be notewise or chordwise, not 'foo'"),
    ({"max_wait": -1}, "codec.max_wait"),
    ({"low_pitch": 100}, "codec.low_pitch"),
    ({"low_pitch": -1}, "codec.low_pitch"),
    ({"num_pitches": 11, "violin_low": 33}, "codec.num_pitches"),
    ({"violin_low": 90}, "codec.violin_low"),
    ({"violin_low": 20}, "codec.violin_low"),
    ({"rest_window": 0}, "codec.rest_window"),
    ({"rest_cap": -1}, "codec.rest_cap"),
    ({"chord_hold": 0.0}, "codec.chord_hold"),
    ({"bpm": 0.0}, "codec.bpm"),
    ({"velocity": 0}, "codec.velocity"),
    ({"velocity": 128}, "codec.velocity"),
])
def test_codec_values_are_validated(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        CodecConfig(**kwargs)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"valid_fraction": 1.0}, "corpus.valid_fraction"),
    ({"test_fraction": -0.1}, "corpus.test_fraction"),
    ({"valid_fraction": 0.5, "test_fraction": 0.5}, "corpus.test_fraction"),
    ({"transpose_low": 1}, "corpus.transpose_low"),
    ({"transpose_high": -1}, "corpus.transpose_high"),
    ({"workers": -1}, "corpus.workers"),
    ({"chord_min_count": 0}, "corpus.chord_min_count"),
])
def test_corpus_values_are_validated(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        CorpusConfig(**kwargs)


def test_validation_applies_to_files_too(tmp_path):
    with pytest.raises(ConfigError, match="codec.encoding: must be notewise or chordwise"):
        load_config(write(tmp_path, "codec:\n  encoding: foo\n"))


def test_config_error_is_a_clara_error():
    assert issubclass(ConfigError, ClaraError)


# --- frozen -------------------------------------------------------------------------------


def test_dataclasses_are_frozen():
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.codec.sample_freq = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.corpus.workers = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.codec = CodecConfig()  # type: ignore[misc]


def test_replace_swaps_whole_sections():
    config = load_config()
    other = replace(config, codec=CodecConfig(sample_freq=4))
    assert other.codec.sample_freq == 4 and other.corpus is config.corpus
    assert config.codec.sample_freq == 12


# --- duplicate keys -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line", "key", "first"), [
    ("training:\n  clip: 0.5\n  lr: 0.1\n  clip: -1\n", 4, "clip", 2),
    ("codec:\n  bpm: 90\ncorpus: {}\ncodec:\n  bpm: 100\n", 4, "codec", 1),
    ("training: {clip: 1, clip: 2}\n", 1, "clip", 1),
])
def test_a_key_given_twice_is_refused_naming_it_and_its_line(tmp_path, text, line, key, first):
    """Plain YAML keeps the last of two equal keys silently: a setting edited in one place is undone by
    a forgotten copy further down."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    expected = f"line {line}: key {key!r} given twice (first on line {first})"
    assert str(info.value) == f"{tmp_path / 'config.yaml'}: {expected}"


def test_the_duplicate_check_keeps_safe_load_semantics(tmp_path):
    # the same key in two sections is two keys; a merge key may be overridden; no Python objects
    config = load_config(write(tmp_path, "codec:\n  bpm: 90\nlive:\n  bpm: 90\n"))
    assert config.codec.bpm == config.live.bpm == 90.0
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "codec: !!python/object/apply:os.system ['true']\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "? [1, 2]\n: 3\n"))  # an unhashable key, as safe_load refuses it


# --- every numeric setting's range --------------------------------------------------------

SECTIONS = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}


def numeric_settings() -> list[tuple[str, str, type]]:
    """(section, key, int or float) for every numeric setting of config.yaml."""
    found = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float):
                found.append((section, f.name, hints[f.name]))
    return found


EDGES = [0, 1, -1, 0.5, -0.5, "1.0e-300", "1.0e+300", "1e300", 10**30, 2**63, 2**64, -(2**64), 10**400, 127, 128,
         16, 17, 1000, ".inf", "-.inf", ".nan", "true", "false", "x", "''", "null", "[1]", "{a: 1}"]


PITCHES = ("low_pitch", "num_pitches", "violin_low")


def test_every_numeric_setting_has_a_range():
    for section, key, _ in numeric_settings():
        assert key in SECTIONS[section].RANGES, f"{section}.{key} has no range"


@pytest.mark.parametrize(("section", "key", "kind"), numeric_settings(), ids=lambda v: str(getattr(v, "__name__", v)))
def test_every_numeric_setting_takes_a_legal_value_or_refuses_it_in_one_line(section, key, kind):
    """Each edge (0, negative, tiny, huge, inf, nan, huge ints, bools, strings, lists) ends in a Config
    holding a value inside the setting's range, or in one ConfigError line naming section.key."""
    import yaml

    interval = SECTIONS[section].RANGES[key]
    repository = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for edge in EDGES:
        text = f"{section}.{key}={edge}"
        try:  # load_config's way, the file read once: parse_override, then from_dict
            _, _, value = parse_override(text)
            config = from_dict({**repository, section: {**repository[section], key: value}})
        except ConfigError as exc:
            message = str(exc)
            named = message.split(": ")[0]
            # the codec's pitch settings are checked together too: a refusal may name the other one
            assert "\n" not in message and (f"{section}.{key}" in named or key in PITCHES and named in
                                            [f"codec.{p}" for p in PITCHES]), (text, message)
            continue
        value = getattr(getattr(config, section), key)
        assert type(value) is kind and _in_range(value, interval), (text, value, interval)


def _in_range(value, interval: str) -> bool:
    low, high = (float(v) for v in interval.split(" (")[0][1:-1].split(", "))
    return math.isfinite(value) and low <= value <= high


@pytest.mark.parametrize(("text", "message"), [
    ("training.clip=-1", "training.clip: -1.0 is outside (0, 1000]"),
    ("training.clip=0", "training.clip: 0.0 is outside (0, 1000]"),
    ("training.lr=0", "training.lr: 0.0 is outside (0, 10]"),
    ("training.weight_decay=-0.01", "training.weight_decay: -0.01 is outside [0, 1]"),
    ("training.alpha=-2", "training.alpha: -2.0 is outside [0, 1000]"),
    ("training.beta=-1", "training.beta: -1.0 is outside [0, 1000]"),
    ("training.seed=-1", "training.seed: -1 is outside [0, 4294967295]"),
    ("training.batch_size=0", "training.batch_size: 0 is outside [1, 65536]"),
    ("model.dropout_input=1", "model.dropout_input: 1.0 is outside [0, 1)"),
    ("model.hidden_size=100000", "model.hidden_size: 100000 is outside [1, 16384]"),
    ("model.hidden_size=1000000000", "model.hidden_size: 1000000000 is outside [1, 16384]"),
    ("model.num_layers=0", "model.num_layers: 0 is outside [1, 16]"),
    ("sampling.temperature=0.001", "sampling.temperature: 0.001 is outside [0.01, 100]"),
    ("sampling.top_p=0", "sampling.top_p: 0.0 is outside (0, 1]"),
    ("sampling.cache_theta=1.0e+300", "sampling.cache_theta: 1e+300 is outside [0, 1000]"),
    ("live.channel=17", "live.channel: 17 is outside [1, 16]"),
    ("live.metronome_channel=0", "live.metronome_channel: 0 is outside [1, 16]"),
    ("live.velocity=128", "live.velocity: 128 is outside [1, 127]"),
    ("live.trigger_cc=-2", "live.trigger_cc: -2 is outside [-1, 127] (-1: none)"),
    ("live.candidates=1000000", "live.candidates: 1000000 is outside [1, 64]"),
    ("live.silence_beats=0", "live.silence_beats: 0.0 is outside (0, 64]"),
    ("codec.bpm=1", "codec.bpm: 1.0 is outside [4, 1000]"),
    ("corpus.transpose_low=-1000000000", "corpus.transpose_low: -1000000000 is outside [-12, 0]"),
    ("inference.threads=-1", "inference.threads: -1 is outside [0, 1024] (0: torch's default)"),
    ("sampling.seed=18446744073709551616",
     "sampling.seed: 18446744073709551616 is outside [-1, 18446744073709551615] (-1: fresh each run)"),
    ("training.clip=.nan", "training.clip: expected a finite number, got nan"),
    ("training.clip=true", "training.clip: expected float, got bool True"),
    ("training.epochs=1000.0", "training.epochs: expected int, got float 1000.0"),
])
def test_a_value_outside_its_range_is_one_line_naming_it_and_the_range(text, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[text])
    assert str(info.value) == message


@pytest.mark.parametrize("text", ["training.clip=1000", "sampling.seed=18446744073709551615", "sampling.seed=-1",
                                  "live.trigger_cc=-1", "model.dropout_emb=0", "training.checkpoint_every=100000",
                                  "sampling.temperature=0.01", "corpus.weights=asap=100"])
def test_the_ends_of_a_range_are_accepted(text):
    load_config(overrides=[text])


@pytest.mark.parametrize("weights", ["asap=1e300", "asap=101", "asap=-1", "asap=nan", "asap=inf"])
def test_a_corpus_weight_is_bounded(weights):
    """A weight of 1e300 drew a piece 10**300 times: training hung building the epoch."""
    with pytest.raises(ConfigError, match=r"corpus.weights: .* in \[0, 100\]"):
        load_config(overrides=[f"corpus.weights={weights}"])


@pytest.mark.parametrize("text", ["training.clip=-1", "model.hidden_size=100000", "live.channel=0",
                                  "sampling.temperature=.inf", "training.epochs=10000000000000000000000"])
def test_a_bad_setting_on_the_command_line_is_one_line_and_exit_1(tmp_path, capsys, text):
    from clara_live.cli import main

    assert main(["train", "--corpus", str(tmp_path), "--out", str(tmp_path / "run"), "--set", text]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"clara: error: {text.split('=')[0]}: ")
    assert not (tmp_path / "run").exists()


def test_accepted_codec_edges_encode_a_file(tmp_path, capsys):
    """The codec's accepted edges do work: each encodes a real file (no traceback, exit 0)."""
    from clara_live.cli import main

    midi = Path(__file__).resolve().parents[2] / "shared" / "midi" / "maestro" / "maestro_1.mid"
    if not midi.exists():
        pytest.skip(f"{midi} not found")
    for text in ["codec.sample_freq=1", "codec.sample_freq=480", "codec.max_wait=10000", "codec.max_wait=1",
                 "codec.rest_cap=0", "codec.rest_window=10000", "codec.chord_hold=1000", "codec.num_pitches=12",
                 "codec.low_pitch=0"]:
        for encoding in ("notewise", "chordwise"):
            extra = ["--set", "codec.violin_low=0", "--set", "codec.num_pitches=128"] if "low_pitch" in text else []
            extra += ["--set", "codec.violin_low=33"] if "num_pitches" in text else []
            status = main(["encode", str(midi), "-o", str(tmp_path / "x.txt"), "--set", text,
                           "--set", f"codec.encoding={encoding}", *extra])
            assert status == 0, (text, encoding, capsys.readouterr().err)


# every accepted edge of a sampling setting does work: clara continue with a tiny model
SAMPLING_EDGES = ["sampling.random_freq=0", "sampling.random_freq=1", "sampling.top_k=1", "sampling.top_k=1000000",
                  "sampling.top_p=1.0e-9", "sampling.temperature=0.01", "sampling.temperature=100",
                  "sampling.min_p=0.999", "sampling.seed=18446744073709551615", "sampling.polyphony=1",
                  "sampling.polyphony=128", "sampling.max_note_quarters=1.0e-9", "sampling.max_repeats=0",
                  "sampling.max_repeats=1000", "sampling.prompt_tokens=1", "sampling.beats_per_bar=32",
                  "sampling.register_pull=20", "sampling.motif_pull=20", "sampling.key_pull=5", "sampling.cache_size=1",
                  "sampling.cache_theta=1000", "sampling.cache_lambda=0.999", "sampling.phrase_bars=1000",
                  "inference.threads=0"]


@pytest.mark.parametrize("text", SAMPLING_EDGES)
def test_accepted_sampling_edges_continue_a_piece(tmp_path, capsys, text):
    from conftest import save_tiny_model

    from clara_live.cli import main

    midi = Path(__file__).resolve().parents[2] / "shared" / "midi" / "maestro" / "maestro_1.mid"
    if not midi.exists():
        pytest.skip(f"{midi} not found")
    model = save_tiny_model(tmp_path / "tiny")
    cache = ["--set", "sampling.cache=true"] if "cache" in text else []
    status = main(["continue", str(midi), "-o", str(tmp_path / "x.mid"), "--tokens", "16", "--model", str(model),
                   "--set", text, *cache])
    err = capsys.readouterr().err
    assert status == 0 and "Traceback" not in err, (text, err)
    assert (tmp_path / "x.mid").stat().st_size > 0


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "2e-4"])
def test_a_float_written_with_an_exponent_is_a_float(text, tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string: --set training.lr=1e-3 was refused as "expected float, got str"
    assert load_config(overrides=[f"training.lr={text}"]).training.lr == pytest.approx(float(text))
    path = tmp_path / "c.yaml"
    path.write_text(f"training:\n  lr: {text}\n")
    assert load_config(path).training.lr == pytest.approx(float(text))


def test_a_word_where_a_float_is_meant_is_still_refused():
    with pytest.raises(ConfigError, match="training.lr"):
        load_config(overrides=["training.lr=fast"])
    with pytest.raises(ConfigError, match="training.lr"):
        load_config(overrides=["training.lr=nan"])
