"""The CPU at hand: which instruction sets it has (AVX2, AVX-512, VNNI, bf16, AMX) and how many
cores this process may use. The engines' precision choices, the int8 recipe, the benchmarks and
the tests all ask here, so they agree on what the machine can do.

Read from `/proc/cpuinfo` (Linux); elsewhere the facts are unknown and every question answers
False, which picks the choices that are safe on any CPU.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

#: Flags (as /proc/cpuinfo names them) that each capability stands for, any one sufficing.
_CAPABILITIES = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    # int8 dot products in one instruction: AVX512_VNNI, AVX-VNNI (Alder Lake and later), AMX.
    "vnni": ("avx512_vnni", "avx_vnni", "amx_int8"),
    # bf16 arithmetic in hardware: AVX512_BF16 or AMX-BF16 (without them bf16 is emulated).
    "bf16": ("avx512_bf16", "amx_bf16"),
    "amx": ("amx_tile",),
}


@dataclass(frozen=True)
class CpuInfo:
    """What one CPU can do. `flags` are the kernel's names for its instruction-set extensions."""

    model: str
    flags: frozenset[str]
    cores: int

    def has(self, capability: str) -> bool:
        """Whether the CPU has a capability: one of avx2, avx512, vnni, bf16, amx."""
        return any(flag in self.flags for flag in _CAPABILITIES[capability])

    @property
    def vnni(self) -> bool:
        return self.has("vnni")

    @property
    def bf16(self) -> bool:
        return self.has("bf16")

    @property
    def isa(self) -> str:
        """The CPU's class for the choices that depend on it, e.g. in cache keys: the widest of
        amx, avx512-vnni-bf16, avx512-vnni, avx512, avx2 or baseline."""
        if self.has("amx"):
            return "amx"
        if self.has("avx512"):
            return "avx512" + ("-vnni" if self.vnni else "") + ("-bf16" if self.bf16 else "")
        return "avx2" + ("-vnni" if self.vnni else "") if self.has("avx2") else "baseline"

    @property
    def decode_threads(self) -> int:
        """Image-decoding threads to run beside an engine that uses every core: one per core, at
        most eight. They run at a lower priority than the engine (`pipeline`), so they take the
        cores only while the engine leaves them idle, as at the start of a run."""
        return max(1, min(8, self.cores))

    def describe(self) -> str:
        """One line for reports and benchmarks: the model, the capabilities and the cores."""
        caps = [c.upper().replace("AVX512", "AVX-512") for c in _CAPABILITIES if self.has(c)]
        return f"{self.model} ({', '.join(caps) or 'no AVX2'}; {self.cores} cores)"


def parse_cpuinfo(text: str, cores: int) -> CpuInfo:
    """The facts of /proc/cpuinfo's text (the first processor's; they are alike on one machine)."""
    model, flags = platform.machine() or "unknown CPU", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == (platform.machine() or "unknown CPU"):
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags, cores)


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as containers and taskset set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.cache
def cpu() -> CpuInfo:
    """This machine's CPU, read once per process."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    return parse_cpuinfo(text, usable_cores())
