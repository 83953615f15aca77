"""training/hardware.py: the CPU's native bf16 read from its flags, the precision training.precision
resolves to on each kind of device, the oneDNN switch, and the config's refusal of a bad value.
(The trainer under bf16 is tested in test_training.py, beside its corpus.)"""

from __future__ import annotations

import pytest
import torch

from clara_live.config import ConfigError, TrainingConfig, load_config
from training import hardware
from training.hardware import (
    choose_precision,
    cpu_bf16,
    cpu_flags,
    cpu_model,
    measured,
    native_bf16,
    onednn,
    time_onednn,
)

SAPPHIRE_RAPIDS = "fpu sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"
ZEN4 = "fpu sse2 avx2 avx512f avx512bw avx512_bf16 avx512_vnni"
ZEN3 = "fpu sse2 avx avx2 fma f16c vaes vpclmulqdq"  # this project's AMD EPYC: no native bf16


@pytest.mark.parametrize(("flags", "native"), [
    (SAPPHIRE_RAPIDS, "amx"),
    (ZEN4, "avx512_bf16"),
    (ZEN3, None),
    ("amx_tile amx_int8", None),  # AMX tiles without their bf16 instructions
    ("amx_bf16 amx_tile", "amx"),
    ("", None),
])
def test_native_bf16_from_flags(flags, native):
    assert cpu_bf16(flags.split()) == native


def _cpuinfo(tmp_path, text: str):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_flags_and_model_are_read_from_cpuinfo(tmp_path):
    x86 = _cpuinfo(tmp_path, "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                             f"flags\t\t: {SAPPHIRE_RAPIDS}\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_bf16(cpu_flags(x86)) == "amx"  # the first CPU's line
    assert cpu_model(x86) == "Intel(R) Xeon(R) Platinum 8480+"
    arm = _cpuinfo(tmp_path, "processor\t: 0\nFeatures\t: fp asimd bf16 sve\nCPU implementer\t: 0x41\n")
    assert cpu_flags(arm) == {"fp", "asimd", "bf16", "sve"} and cpu_bf16(cpu_flags(arm)) is None
    assert cpu_flags(_cpuinfo(tmp_path, "processor\t: 0\n")) == frozenset()


def test_without_proc_cpuinfo_torch_reports_the_flags(tmp_path, monkeypatch):
    missing = tmp_path / "no-cpuinfo"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {})
    assert cpu_bf16(cpu_flags(missing)) is None
    monkeypatch.setattr(torch.cpu, "get_capabilities",
                        lambda: {"amx_bf16": True, "amx_tile": True, "avx2": True, "cpu_name": "Xeon"})
    assert cpu_flags(missing) == {"amx_bf16", "amx_tile", "avx2"}
    assert cpu_bf16(cpu_flags(missing)) == "amx"
    assert cpu_model(missing) == "Xeon"


@pytest.mark.parametrize(("requested", "device", "native", "name", "onednn"), [
    ("auto", "cuda", "cuda", "bf16", None),  # CUDA: oneDNN is not touched
    ("auto", "cuda", None, "fp32", None),  # a GPU before bf16 (pre-Ampere)
    ("auto", "cpu", "amx", "bf16", True),
    ("auto", "cpu", "avx512_bf16", "bf16", True),
    ("auto", "cpu", None, "fp32", False),
    ("fp32", "cpu", "amx", "fp32", False),
    ("bf16", "cpu", None, "bf16", False),  # oneDNN has no bf16 LSTM without native bf16: the plain path
    ("bf16", "cuda", None, "bf16", None),
    ("fp32", "cuda", "cuda", "fp32", None),
])
def test_precision_and_onednn_per_device(requested, device, native, name, onednn):
    precision = choose_precision(requested, device, native)
    assert (precision.name, precision.onednn, precision.bf16) == (name, onednn, name == "bf16")
    line = str(precision)
    assert "\n" not in line and line.startswith(f"training precision {name}")
    assert ("native bf16 (" in line) == (native is not None)


def test_asking_for_bf16_without_native_support_says_it_is_slow():
    assert "emulated and slow" in str(choose_precision("bf16", "cpu", None))
    assert "slow" not in str(choose_precision("bf16", "cpu", "amx"))
    with pytest.raises(ValueError, match="'fp16'"):
        choose_precision("fp16", "cpu", None)


def test_native_bf16_per_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert native_bf16(torch.device("cuda", 0)) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert native_bf16(torch.device("cuda", 0)) is None  # emulated bf16 is not native
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(ZEN4.split()))
    assert native_bf16(torch.device("cpu")) == "avx512_bf16"


@pytest.mark.parametrize("before", [True, False])
def test_the_onednn_switch_is_set_inside_and_restored_after(before):
    saved = torch.backends.mkldnn.enabled
    try:
        torch.backends.mkldnn.enabled = before
        for enabled in (True, False):
            with onednn(enabled):
                assert torch.backends.mkldnn.enabled is enabled
            assert torch.backends.mkldnn.enabled is before
        with onednn(None):
            assert torch.backends.mkldnn.enabled is before
        with pytest.raises(RuntimeError), onednn(not before):
            raise RuntimeError
        assert torch.backends.mkldnn.enabled is before
    finally:
        torch.backends.mkldnn.enabled = saved


def test_the_config_names_a_bad_precision():
    assert load_config().training.precision == "auto"
    assert TrainingConfig(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["training.precision=fp16"])
    assert str(error.value) == "training.precision: must be auto, fp32 or bf16, not 'fp16'"
    with pytest.raises(ConfigError, match=r"^training\.amp: unknown key"):  # replaced by precision
        load_config(overrides=["training.amp=true"])


@pytest.mark.parametrize(("requested", "device", "native", "setting", "onednn", "measure"), [
    ("fp32", "cpu", None, "auto", None, True),  # left to the trainer to measure
    ("auto", "cpu", None, "auto", None, True),
    ("fp32", "cpu", "amx", "on", True, False),
    ("fp32", "cpu", None, "off", False, False),
    ("bf16", "cpu", "amx", "off", True, False),  # bf16 keeps its rule
    ("bf16", "cpu", None, "on", False, False),
    ("fp32", "cuda", "cuda", "auto", None, False),  # CUDA: oneDNN is not touched
])
def test_training_onednn_applies_to_cpu_fp32_only(requested, device, native, setting, onednn, measure):
    precision = choose_precision(requested, device, native, setting)
    assert (precision.onednn, precision.measure) == (onednn, measure)
    assert ("oneDNN to be measured" in str(precision)) == measure
    with pytest.raises(ValueError, match="'maybe'"):
        choose_precision(requested, device, native, "maybe")


@pytest.mark.parametrize(("on_s", "off_s", "chosen"), [(0.5, 2.0, True), (2.0, 0.5, False), (1.0, 1.0, True)])
def test_the_timed_switch_keeps_the_faster(on_s, off_s, chosen):
    clock, calls = [0.0], []

    def step():  # a fake step: advances a fake clock by this switch's time
        calls.append(torch.backends.mkldnn.enabled)
        clock[0] += on_s if torch.backends.mkldnn.enabled else off_s

    before = torch.backends.mkldnn.enabled
    assert time_onednn(step, repeats=2, clock=lambda: clock[0]) == (on_s, off_s)
    assert calls == [True, False] * 3  # a warm-up each, then interleaved
    assert torch.backends.mkldnn.enabled == before
    precision = measured(choose_precision("fp32", "cpu", None, "auto"), on_s, off_s)
    assert (precision.onednn, precision.measure) == (chosen, False)
    assert f"measured: {on_s:.3g} s a step on, {off_s:.3g} s off" in str(precision)


def test_the_config_names_a_bad_onednn_value():
    assert load_config().training.onednn == "auto"
    for value, setting in (("on", "on"), ("off", "off"), ('"on"', "on"), ("auto", "auto")):
        assert load_config(overrides=[f"training.onednn={value}"]).training.onednn == setting
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["training.onednn=maybe"])
    assert str(error.value) == "training.onednn: must be auto, on or off, not 'maybe'"
