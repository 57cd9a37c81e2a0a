"""The engine chosen by measurement (inception_hub.engine.choice): cached beside the engine
models, keyed by the CPU and the engines' versions, measured again when either changes, the
card's order where nothing is measured; and precision "fast", chosen from the CPU's facts.

The timings are injected (`choice.time_runs`), so the choices are known; the engines they time
are real: each fake timer runs every candidate once and checks its output."""

from __future__ import annotations

import json

import numpy as np
import pytest

import inception_hub
from conftest import IMAGES
from inception_hub.cli import main
from inception_hub.cpu import parse_cpuinfo
from inception_hub.engine import FAST, candidates, choice, choose, plan
from inception_hub.errors import InputError
from inception_hub.weights import folder

EPYC = parse_cpuinfo("model name : AMD EPYC\nflags : avx2 avx512f avx512_vnni avx512_bf16\n", 2)
ALDER = parse_cpuinfo("model name : Core\nflags : avx2 avx_vnni\n", 8)
COOPER = parse_cpuinfo("model name : bf16 only\nflags : avx2 avx512f avx512_bf16\n", 4)  # hypothetical
LAPTOP = parse_cpuinfo("model name : Laptop CPU\nflags : avx2 fma\n", 4)


@pytest.fixture
def engines(monkeypatch):
    """ONNX Runtime and OpenVINO only (the tf backend takes seconds more to build), measuring on."""
    monkeypatch.setattr(choose, "available_backends", lambda: ["onnxruntime", "openvino"])
    monkeypatch.setattr(choice, "available_backends", lambda: ["onnxruntime", "openvino"])
    monkeypatch.setenv(choice.ENV, "1")


def timings(monkeypatch, rates: dict[str, float]) -> list[list[str]]:
    """Time the engines as `rates` says, after running each once; returns the calls' candidates."""
    calls = []

    def timer(runs, x):
        assert x.shape[0] == choice.BATCH
        for run in runs.values():  # real engines: each computes logits
            out = run(x)
            assert out.shape == (choice.BATCH, 1001) and np.isfinite(out).all()
        calls.append(sorted(runs))
        return {name: rates[name] for name in runs}

    monkeypatch.setattr(choice, "time_runs", timer)
    return calls


def test_fast_is_chosen_from_the_cpu_facts():
    assert choose.fast_precisions(EPYC) == ["int8", "bf16"]
    assert choose.fast_precisions(ALDER) == ["int8"]  # VNNI without bf16
    assert choose.fast_precisions(COOPER) == ["bf16"]
    v1 = [("onnxruntime", "int8"), ("openvino", "int8"), ("openvino", "bf16")]
    assert candidates("inception_v1", FAST, info=EPYC) == v1  # the card's engine order within a precision
    assert candidates("inception_resnet_v2", FAST, info=ALDER) == [("openvino", "int8"), ("onnxruntime", "int8")]
    assert candidates("inception_v1", FAST, info=COOPER) == [("openvino", "bf16")]
    assert candidates("inception_v1", FAST, "onnxruntime", EPYC) == [("onnxruntime", "int8")]
    with pytest.raises(InputError, match=r"Laptop CPU\) has neither VNNI .* nor bf16 instructions: use fp32"):
        candidates("inception_v1", FAST, info=LAPTOP)
    with pytest.raises(InputError, match="the tf backend runs none of the fast precisions"):
        candidates("inception_v1", FAST, "tf", EPYC)
    with pytest.raises(InputError, match="unknown precision 'fastest'"):
        candidates("inception_v1", "fastest")


def test_fast_is_refused_on_a_cpu_without_vnni_or_bf16(monkeypatch, v1_ckpt):
    monkeypatch.setattr(choose, "cpu", lambda: LAPTOP)
    with pytest.raises(InputError, match="has neither"):
        inception_hub.load("inception_v1", checkpoint=v1_ckpt, precision=FAST)
    assert main(["models"]) == 0  # the table says so instead of failing


def test_the_choice_is_measured_once_cached_and_measured_again_when_the_key_changes(
    engines, monkeypatch, v1_ckpt, capsys
):
    calls = timings(monkeypatch, {"onnxruntime/fp32": 40.0, "openvino/fp32": 50.0})
    assert plan("inception_v1").backend == "onnxruntime"  # the card's order until measured
    module = inception_hub.load("inception_v1", checkpoint=v1_ckpt)
    assert (module.backend, module.precision) == ("openvino", "fp32") and calls == [
        ["onnxruntime/fp32", "openvino/fp32"]
    ]
    assert module.choice.measured and module.choice.rates == {"onnxruntime/fp32": 40.0, "openvino/fp32": 50.0}
    entry = json.loads((folder("engines") / choice.FILE).read_text())["inception_v1/fp32"]
    assert (
        entry["key"] == choice.key()
        and entry["key"]["isa"]
        and set(entry["key"]["engines"])
        == {
            "onnxruntime",
            "openvino",
        }
    )
    # Cached: the next load (and the default backend any caller asks for) takes it unmeasured.
    again = inception_hub.load("inception_v1/feature_vector", checkpoint=v1_ckpt)
    assert again.backend == "openvino" and len(calls) == 1
    assert choice.choose_backend(None, "fp32", "inception_v1") == "openvino"
    assert main(["models"]) == 0
    row = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("inception_v1 ") and "fp32" in line
    )
    assert "openvino" in row and "measured openvino 50.0, onnxruntime 40.0 img/s" in row
    # A new engine version: measured again (a challenger within MARGIN of the card's first loses).
    calls = timings(monkeypatch, {"onnxruntime/fp32": 40.0, "openvino/fp32": 41.0})
    real = choice.engine_version
    monkeypatch.setattr(choice, "engine_version", lambda pkg: "99" if pkg == "openvino" else real(pkg))
    assert plan("inception_v1").note == choice.FIRST_USE
    assert inception_hub.load("inception_v1", checkpoint=v1_ckpt).backend == "onnxruntime" and len(calls) == 1
    # Another CPU: measured again.
    calls = timings(monkeypatch, {"onnxruntime/fp32": 40.0, "openvino/fp32": 60.0})
    monkeypatch.setattr(choice, "cpu", lambda: ALDER)
    assert inception_hub.load("inception_v1", checkpoint=v1_ckpt).backend == "openvino" and len(calls) == 1
    # Measuring off: the card's order, whatever was measured.
    monkeypatch.setenv(choice.ENV, "0")
    off = inception_hub.load("inception_v1", checkpoint=v1_ckpt)
    assert off.backend == "onnxruntime" and off.choice.note == choice.OFF and len(calls) == 1
    # An explicit backend is never measured.
    monkeypatch.setenv(choice.ENV, "1")
    assert inception_hub.load("inception_v1", checkpoint=v1_ckpt, backend="onnxruntime").choice is None


@pytest.mark.slow  # quantizes inception_v1 once, about 20 s
def test_fast_runs_the_fastest_native_precision_and_says_how_close_it_is(engines, monkeypatch, v1_ckpt, capsys):
    monkeypatch.setattr(choose, "cpu", lambda: EPYC)  # what is native is the given CPU's facts
    monkeypatch.setattr(choice, "cpu", lambda: EPYC)
    rates = {"onnxruntime/int8": 90.0, "openvino/int8": 110.0, "openvino/bf16": 60.0, "onnxruntime/fp32": 30.0}
    calls = timings(monkeypatch, rates)
    module = inception_hub.load("inception_v1", checkpoint=v1_ckpt, precision=FAST)
    assert (module.backend, module.precision) == ("openvino", "int8")
    assert calls == [sorted(rates)]  # the candidates, and fp32 for reference
    agreement = module.choice.agreement
    assert 0.0 <= agreement <= 1.0 and module.choice.photos == choice.AGREEMENT_PHOTOS
    err = capsys.readouterr().err
    assert f"precision fast: int8 on openvino, 3.7x fp32's rate here; top-1 agreement with fp32 {agreement:.0%}" in err
    # Cached with the choice: neither timed nor compared again.
    monkeypatch.setattr(choice, "_measure_agreement", lambda *a: pytest.fail("measured again"))
    again = inception_hub.load("inception_v1", checkpoint=v1_ckpt, precision=FAST)
    assert again.choice.agreement == agreement and len(calls) == 1
    logits = again(np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32))
    assert logits.shape == (2, 1001)


def test_decoding_runs_beside_the_engine_at_a_lower_priority(monkeypatch, clf):
    """The engine has every core; the decoding threads (one per core, at most 8) yield to it."""
    import os
    import threading

    from inception_hub import pipeline
    from inception_hub.images import load_image

    assert [parse_cpuinfo("", n).decode_threads for n in (1, 2, 16, 64)] == [1, 2, 8, 8]
    seen = {}

    def decode(path, size, **kwargs):
        seen[threading.current_thread().name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return load_image(path, size)

    monkeypatch.setattr(pipeline, "decode", decode)
    photos = [str(p) for p in sorted(IMAGES.glob("imagenet-sample/*.JPEG"))[:4]]
    assert len(list(pipeline.run(clf, photos, batch_size=2))) == 4
    main_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen and all(v == min(19, main_priority + pipeline.DECODE_NICENESS) for v in seen.values()), seen
    assert all(name.startswith("decode") for name in seen)


def test_candidates_are_timed_in_interleaved_rounds_after_one_untimed_call():
    order = []
    runs = {name: (lambda x, name=name: order.append(name) or x) for name in ("a", "b")}
    rates = choice.time_runs(runs, np.zeros((3, 2), np.float32), budget=0.0)
    assert order == ["a", "b"] + ["a", "b"] * choice.MIN_RUNS  # warm-up, then rounds of both
    assert set(rates) == {"a", "b"} and all(np.isfinite(r) and r > 0 for r in rates.values())
