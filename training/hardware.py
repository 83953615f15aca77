"""What this machine can do for training, and the precision that follows from it.

bf16 autocast pays only where the hardware multiplies in bf16: a CUDA GPU that supports it, or
a CPU with AMX (amx_bf16 + amx_tile) or AVX512-BF16. Elsewhere bf16 is emulated and many times
slower than fp32, so `training.precision: auto` picks fp32 there. On a CPU, oneDNN
(torch.backends.mkldnn) is what runs bf16 LSTMs and matmuls natively, so it is on under bf16;
under fp32 it stays off, as the trainer always ran; and on a CPU without native bf16 it is off
even under bf16: on an AVX2 AMD EPYC oneDNN builds no bf16 LSTM ("could not create a primitive
descriptor"), while the plain path runs, slowly, with autocast reaching only the decoder.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
PRECISIONS = ("auto", "fp32", "bf16")


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
    """How training steps run: autocast dtype and the oneDNN switch (None: left alone)."""

    name: str  # fp32 | bf16 (weights, optimiser state and checkpoints stay fp32 under both)
    onednn: bool | None
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def __str__(self) -> str:
        onednn = "" if self.onednn is None else f", oneDNN {'on' if self.onednn else 'off'}"
        return f"training precision {self.name}{onednn} ({self.reason})"


def choose_precision(requested: str, device_type: str, native: str | None) -> Precision:
    """The precision for training.precision = requested on a device of this type whose native
    bf16 is `native` (as native_bf16() reports it)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    where = "this GPU" if device_type == "cuda" else "this CPU"
    if requested == "auto":
        name = "bf16" if native else "fp32"
        reason = f"auto: {where} has native bf16 ({native})" if native else f"auto: {where} has no native bf16"
    else:
        name = requested
        reason = f"as asked; {where} has native bf16 ({native})" if native else f"as asked; {where} has no native bf16"
        if name == "bf16" and not native:
            reason += ", so bf16 is emulated and slow"
    onednn = None if device_type == "cuda" else name == "bf16" and native is not None
    return Precision(name, onednn, reason)


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
