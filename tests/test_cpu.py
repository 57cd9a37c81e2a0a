"""The CPU facts (inception_hub.cpu) and the choices made from them, on given facts, so each
choice is tested whatever CPU runs the suite; and the facts of the CPU at hand."""

from __future__ import annotations

import os

import pytest

from inception_hub.cpu import CpuInfo, cpu, parse_cpuinfo
from inception_hub.engine import require_precision
from inception_hub.engine.quantize import PORTABLE, recipe_for
from inception_hub.errors import InputError

AVX2 = "processor : 0\nmodel name : Laptop CPU\nflags : fpu sse2 avx avx2 fma\n\nprocessor : 1\nflags : x\n"
EPYC = "model name : AMD EPYC\nflags : avx2 avx512f avx512_vnni avx512_bf16\n"
XEON = "model name : Xeon\nflags : avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16\n"
ALDER = "model name : Core\nflags : avx2 avx_vnni\n"


def test_cpuinfo_is_read_into_capabilities_and_a_class():
    laptop = parse_cpuinfo(AVX2, 4)
    assert (laptop.model, laptop.cores, laptop.isa) == ("Laptop CPU", 4, "avx2")
    assert laptop.has("avx2") and not laptop.has("avx512") and not laptop.vnni and not laptop.bf16
    assert [parse_cpuinfo(t, 2).isa for t in (EPYC, XEON, ALDER, "")] == [
        "avx512-vnni-bf16",
        "amx",
        "avx2-vnni",
        "baseline",
    ]
    assert parse_cpuinfo(ALDER, 2).vnni and not parse_cpuinfo(ALDER, 2).bf16
    assert parse_cpuinfo(EPYC, 2).describe() == "AMD EPYC (AVX2, AVX-512, VNNI, BF16; 2 cores)"


def test_int8_weights_are_8_bit_only_where_vnni_accumulates_them_without_overflow():
    assert recipe_for(parse_cpuinfo(AVX2, 2)) == PORTABLE and PORTABLE.weight_bits == 7
    assert [recipe_for(parse_cpuinfo(t, 2)).weight_bits for t in (EPYC, XEON, ALDER)] == [8, 8, 8]
    assert recipe_for(parse_cpuinfo(EPYC, 2)).key != PORTABLE.key  # cached apart


def test_bf16_is_refused_where_the_cpu_would_only_emulate_it():
    with pytest.raises(InputError, match="Laptop CPU.*no bf16 instructions"):
        require_precision("bf16", parse_cpuinfo(AVX2, 2))
    for text in (EPYC, XEON):
        require_precision("bf16", parse_cpuinfo(text, 2))
    require_precision("fp32", parse_cpuinfo(AVX2, 2))
    require_precision("int8", parse_cpuinfo(AVX2, 2))


def test_the_cpu_at_hand():
    here = cpu()
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith(("flags", "Features"))).split(":", 1)[1].split()
    assert here.flags == frozenset(flags) and here.cores == len(os.sched_getaffinity(0))
    assert isinstance(here, CpuInfo) and here.describe().startswith(here.model)
