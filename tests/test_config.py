"""config.yaml into frozen dataclasses: defaults, refusals naming the key, --set overrides."""

from __future__ import annotations

import dataclasses

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
    ({"live": {"tempo_method": "neural"}}, "live.tempo_method: must be learned or classic"),
    ({"sampling": {"motif_pull": -1.0}}, r"sampling.motif_pull: must be in \[0 \(off\), 20\]"),
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
    ("codec.sample_freq=0", "codec.sample_freq: must be at least 1"),
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
    ({"transpose_high": -1}, "corpus.transpose_low"),
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
