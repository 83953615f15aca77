"""What this machine can do for training, and the precision that follows from it.

bf16 autocast pays only where the hardware multiplies in bf16: a CUDA GPU that supports it, or
a CPU with AMX (amx_bf16 + amx_tile) or AVX512-BF16. Elsewhere bf16 is emulated and many times
slower than fp32, so `training.precision: auto` picks fp32 there. On a CPU, oneDNN
(torch.backends.mkldnn) is what runs bf16 LSTMs and matmuls natively, so it is on under bf16;
and on a CPU without native bf16 it is off even under bf16: on an AVX2 AMD EPYC oneDNN builds no
bf16 LSTM ("could not create a primitive descriptor"), while the plain path runs, slowly, with
autocast reaching only the decoder. Under fp32 on a CPU which is faster is the machine's: one
2-core AMD EPYC trained the AWD-LSTM 1.8x faster with oneDNN on, another day's CPU ran a step 15x
slower with it. So `training.onednn: auto` (the default) leaves it to be measured: the trainer
times a few passes of the real model each way (time_onednn) and keeps the faster (measured()).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
PRECISIONS = ("auto", "fp32", "bf16")
ONEDNN = ("auto", "on", "off")  # training.onednn: CPU fp32 only


def _torch_flags() -> frozenset[str]:
    """The flags torch's own cpuinfo library reports (macOS, Windows), or none."""
    try:
        return frozenset(name for name, value in torch.cpu.get_capabilities().items() if value is True)
    except (AttributeError, RuntimeError):
        return frozenset()


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as Linux names them (amx_bf16, avx512_bf16, ...): the first
    `flags` (x86) or `Features` (Arm) line of /proc/cpuinfo; where there is no such file,
    torch's cpuinfo report, which uses the same names."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return _torch_flags()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16(flags: Iterable[str] | None = None) -> str | None:
    """The CPU's native bf16: "amx" (AMX tiles with bf16), "avx512_bf16", or None.

    flags: feature names (default: this CPU's, from cpu_flags())."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    if {"amx_bf16", "amx_tile"} <= flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+"), as best known."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    try:
        name = torch.cpu.get_capabilities().get("cpu_name")
    except (AttributeError, RuntimeError):
        name = None
    return name or platform.processor() or platform.machine()


def native_bf16(device: torch.device) -> str | None:
    """What multiplies in bf16 on this device: "cuda", "amx", "avx512_bf16", or None."""
    if device.type == "cuda":
        return "cuda" if torch.cuda.is_bf16_supported(including_emulation=False) else None
    return cpu_bf16()


@dataclass(frozen=True)
class Precision:
    """How training steps run: autocast dtype and the oneDNN switch (None: left alone, or, with
    measure, still to be measured by the trainer)."""

    name: str  # fp32 | bf16 (weights, optimiser state and checkpoints stay fp32 under both)
    onednn: bool | None
    reason: str
    measure: bool = False  # CPU fp32 under training.onednn: auto, before the measurement

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def __str__(self) -> str:
        onednn = ", oneDNN to be measured" if self.measure else \
            "" if self.onednn is None else f", oneDNN {'on' if self.onednn else 'off'}"
        return f"training precision {self.name}{onednn} ({self.reason})"


def choose_precision(requested: str, device_type: str, native: str | None, fp32_onednn: str = "off") -> Precision:
    """The precision for training.precision = requested on a device of this type whose native
    bf16 is `native` (as native_bf16() reports it). fp32_onednn (training.onednn: auto, on or
    off) sets oneDNN for fp32 on a CPU only; auto leaves it to measure (Precision.measure)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if fp32_onednn not in ONEDNN:
        raise ValueError(f"onednn must be one of {', '.join(ONEDNN)}, not {fp32_onednn!r}")
    where = "this GPU" if device_type == "cuda" else "this CPU"
    if requested == "auto":
        name = "bf16" if native else "fp32"
        reason = f"auto: {where} has native bf16 ({native})" if native else f"auto: {where} has no native bf16"
    else:
        name = requested
        reason = f"as asked; {where} has native bf16 ({native})" if native else f"as asked; {where} has no native bf16"
        if name == "bf16" and not native:
            reason += ", so bf16 is emulated and slow"
    if device_type == "cuda":
        return Precision(name, None, reason)
    if name == "bf16":
        return Precision(name, native is not None, reason)
    if fp32_onednn == "auto":
        return Precision(name, None, reason, measure=True)
    return Precision(name, fp32_onednn == "on", f"{reason}; oneDNN {fp32_onednn} as asked")


def time_onednn(step: Callable[[], object], repeats: int = 2,
                clock: Callable[[], float] = time.perf_counter) -> tuple[float, float]:
    """(seconds a call of step takes with oneDNN on, with it off): one warm-up call each, then
    `repeats` timed calls each, interleaved (on, off, on, off) so that a change in the machine's
    speed falls on both; the fastest call of each. The switch is left as it was found."""
    for enabled in (True, False):
        with onednn(enabled):
            step()
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for enabled in (True, False):
            with onednn(enabled):
                start = clock()
                step()
                times[enabled].append(clock() - start)
    return min(times[True]), min(times[False])


def measured(precision: Precision, on_s: float, off_s: float) -> Precision:
    """precision with oneDNN set to the faster of on_s and off_s (seconds a step; on at a tie)."""
    enabled = on_s <= off_s
    reason = f"measured: {on_s:.3g} s a step on, {off_s:.3g} s off"
    return dataclasses.replace(precision, onednn=enabled, measure=False, reason=reason)


@contextlib.contextmanager
def onednn(enabled: bool | None) -> Iterator[None]:
    """torch.backends.mkldnn.enabled set to `enabled` inside the block (None: untouched), then
    restored; its other flags are left alone (torch.backends.mkldnn.flags resets them)."""
    before = torch.backends.mkldnn.enabled
    if enabled is not None:
        torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def memory_bytes(device: torch.device) -> int | None:
    """The memory a run on device can use at most: the GPU's own, or the machine's physical memory
    (os.sysconf; None where the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def training_bytes(parameters: int, rows: int, bptt: int, vocabulary: int) -> int:
    """A lower bound on the memory one process needs to train: 16 bytes a parameter (fp32 weights,
    their gradients and AdamW's two moments) and the batch's logits three times over (the logits,
    their softmax and its gradient; a batch is at most bptt + 20 steps long)."""
    return 16 * parameters + 3 * 4 * rows * (bptt + 20) * vocabulary
