"""ONNX, OpenVINO IR and TFLite exports: each run in its own runtime against the TF-Slim
reference, their metadata, int8 and what it costs, and the refusals."""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from ai_edge_litert.interpreter import Interpreter

import inception_hub
from conftest import SIZES, reference, reference_images
from inception_hub.accuracy import Sample, evaluate, variants
from inception_hub.cpu import cpu
from inception_hub.errors import InputError
from inception_hub.export import export
from inception_hub.export.formats import COMPILE_FIELD, compile_fields
from inception_hub.labels import imagenet_labels, imagenet_wnids

pytestmark = pytest.mark.slow  # converts both networks three ways

FLAT = ("onnx", "openvino", "tflite")


def _inputs(arch: str, size: str, n: int = 4) -> tuple[np.ndarray, dict]:
    ref = reference(arch, size)
    return ref["inputs_u8"][:n].astype(np.float32) / 255, {k: v[:n] for k, v in ref.items()}


def _documented_compile(model_file: Path):
    """An fp32 export compiled by OpenVINO as its metadata tells users to: the call must ask for
    f32 (OpenVINO takes no precision from the file), and the compiled model report it."""
    meta = json.loads((model_file.parent / "inception_hub.json").read_text())
    config = meta[COMPILE_FIELD]
    assert config["INFERENCE_PRECISION_HINT"] == "f32", model_file
    compiled = ov.Core().compile_model(str(model_file), "CPU", config)
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32, model_file
    return compiled


def _plain_compile_precision() -> ov.Type | None:
    """What OpenVINO's CPU plugin runs an fp32 model in when the compile call names no precision,
    on this CPU (None where not known here): on x86-64, bf16 where the CPU has AVX512_BF16 (which
    every AMX-BF16 CPU has too), else f32."""
    if platform.machine() not in ("x86_64", "AMD64") or not cpu().flags:
        return None
    return ov.Type.bf16 if cpu().bf16 else ov.Type.f32


def _openvino_outputs(compiled, x: np.ndarray) -> dict[str, np.ndarray]:
    result = compiled(x)
    # An output tensor can carry two names (its node's and the graph output's): take the latter.
    return {(o.get_names() & {"logits", "feature_vector"}).pop(): result[o] for o in compiled.outputs}


def _run_natively(fmt: str, folder, x: np.ndarray, runtime: str | None = None) -> dict[str, np.ndarray]:
    """The exported file in its runtime (or, for ONNX, `runtime="openvino"`), without
    inception-hub's loader; OpenVINO compiles it as the export's metadata says."""
    if fmt == "onnx" and runtime != "openvino":
        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {"images": x}), strict=True))
    if fmt in ("onnx", "openvino"):
        return _openvino_outputs(_documented_compile(folder / ("model.xml" if fmt == "openvino" else "model.onnx")), x)
    runner = Interpreter(model_path=str(folder / "model.tflite")).get_signature_runner("serving_default")
    return runner(images=x)


@contextlib.contextmanager
def _compiled_precisions(monkeypatch):
    """For every model OpenVINO compiles meanwhile: the precision the call asked for and the one the
    compiled model reports (both, so that a lost request fails on CPUs whose default is f32 too)."""
    seen, compile_model = [], ov.Core.compile_model

    def recording(core, model, device_name=None, config=None, **kwargs):
        compiled = compile_model(core, model, device_name, config, **kwargs)
        asked = (config or {}).get("INFERENCE_PRECISION_HINT")
        seen.append((asked, compiled.get_property("INFERENCE_PRECISION_HINT")))
        return compiled

    with monkeypatch.context() as patch:
        patch.setattr(ov.Core, "compile_model", recording)
        yield seen


@pytest.mark.parametrize("arch", SIZES)
def test_every_fp32_format_matches_tf_slim_in_its_own_runtime(checkpoints, arch, tmp_path, monkeypatch):
    """Each file in its runtime at the default size and another (batch and image size are
    dynamic), both outputs, the ONNX file in OpenVINO too (compiled as the metadata says); and
    through `inception_hub.load`, which picks that runtime and compiles in f32 on any CPU."""
    for fmt in FLAT:
        folder = export(f"{arch}/classification/5", tmp_path / fmt, checkpoints[arch, "v2"], format=fmt)
        for runtime in (None, "openvino") if fmt == "onnx" else (None,):
            for size in SIZES[arch]:
                x, ref = _inputs(arch, size, 3)
                native = _run_natively(fmt, folder, x, runtime)
                assert sorted(native) == ["feature_vector", "logits"], fmt  # the signatures' outputs only
                for out in ("logits", "feature_vector"):
                    err = np.abs(native[out] - ref[out]).max()
                    assert err <= 1e-4, (fmt, runtime, size, out, err)
        backends = {"onnx": ["onnxruntime", "openvino"], "openvino": ["openvino"], "tflite": ["tflite"]}[fmt]
        for backend in backends:
            with _compiled_precisions(monkeypatch) as precisions:
                module = inception_hub.load(folder, backend=None if backend == backends[0] else backend)
                assert module.backend == backend
                assert np.abs(module(x) - ref["logits"]).max() <= 1e-4
                assert np.abs(module.feature_vector()(x) - ref["feature_vector"]).max() <= 1e-4
            assert precisions == ([("f32", ov.Type.f32)] if backend == "openvino" else []), (fmt, backend)


def test_version_1_exports_have_a_fixed_size_and_every_export_carries_its_facts(checkpoints, v1_ckpt, tmp_path):
    labels = list(imagenet_labels())
    for fmt in FLAT:
        folder = export("inception_v1/classification/1", tmp_path / fmt, v1_ckpt, format=fmt, progress=False)
        meta = json.loads((folder / "inception_hub.json").read_text())
        assert (folder / "labels.txt").read_text().splitlines() == labels
        assert meta["format"] == fmt and meta["precision"] == "fp32" and meta["default_image_size"] == [224, 224]
        assert meta["handle"] == "google/imagenet/inception_v1/classification/1" and not meta["variable_input_size"]
        assert meta["weights_release"].endswith("inception_v1_2016_08_28.tar.gz")
        assert len(meta["weights_digest"]) == 64 and "central crop 0.875" in meta["preprocessing"]
        module = inception_hub.load(folder)
        x, ref = _inputs("inception_v1", "224x224", 2)
        assert np.abs(module(x) - ref["logits"]).max() <= 1e-4
        with pytest.raises(InputError, match="224"):
            module(np.zeros((1, 256, 320, 3), np.float32))
    model = onnx.load(str(tmp_path / "onnx" / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["labels"].split("\n") == labels and json.loads(props["inception_hub"])["format"] == "onnx"
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 224, 224, 3]
    ir = ov.Core().read_model(str(tmp_path / "openvino" / "model.xml"))
    assert str(ir.inputs[0].get_partial_shape()) == "[?,224,224,3]"
    assert ir.get_rt_info(["inception_hub", "labels"]).astype(str).split("\n") == labels
    # OpenVINO takes no inference precision from the file (a plain compile runs the CPU's default:
    # bf16 with AVX512_BF16), so the IR carries no such request and the export's metadata says how
    # to compile it: so compiled, the IR and the ONNX file run f32 and match TF-Slim.
    assert not ir.has_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"])
    for model_file in (tmp_path / "openvino" / "model.xml", tmp_path / "onnx" / "model.onnx"):
        meta = json.loads((model_file.parent / "inception_hub.json").read_text())
        assert meta[COMPILE_FIELD] == {"INFERENCE_PRECISION_HINT": "f32"}
        assert np.abs(_openvino_outputs(_documented_compile(model_file), x)["logits"] - ref["logits"]).max() <= 1e-4
        plain = ov.Core().compile_model(str(model_file), "CPU").get_property("INFERENCE_PRECISION_HINT")
        assert _plain_compile_precision() in (None, plain), (model_file.name, plain)
    assert compile_fields("openvino", "bf16") == {COMPILE_FIELD: {"INFERENCE_PRECISION_HINT": "bf16"}}
    assert compile_fields("openvino", "int8") == compile_fields("onnx", "fp32") and not compile_fields("tflite", "fp32")
    runner = Interpreter(model_path=str(tmp_path / "tflite" / "model.tflite")).get_signature_runner()
    assert list(runner.get_input_details()["images"]["shape"]) == [1, 224, 224, 3]


def test_int8_formats_are_quantized_and_report_their_agreement_with_fp32(v1_ckpt, tmp_path):
    """int8 of every format: really int8 inside, and evaluate's agreement figures equal a count
    made here from the same logits."""
    handle = "inception_v1/classification/5"
    paths = [str(p) for p in reference_images("inception_v1")]
    wnids = imagenet_wnids()
    fp32 = inception_hub.load(handle, v1_ckpt, backend="onnxruntime")
    x = np.stack([inception_hub.load_image(p, (224, 224)) for p in paths])
    top = np.argsort(-fp32(x), axis=1)
    # The first half labelled with the fp32 model's own answer, so top-1 is known to be >= 50%.
    samples = [Sample(p, wnids[top[i, 0]] if i % 2 == 0 else wnids[1 + i]) for i, p in enumerate(paths)]
    with contextlib.ExitStack() as stack:
        notes = []
        runs = variants(
            handle,
            v1_ckpt,
            ["onnxruntime"],
            ["fp32", "int8"],
            [None, "tflite", "openvino", "tf1_hub"],
            stack,
            progress=False,
            note=notes.append,
        )
        assert notes == ["left out tf1_hub/int8: tf1_hub exports in fp32, not int8"]
        assert [v.name for v in runs] == [
            "onnxruntime/fp32",
            "onnxruntime/int8",
            "tflite/fp32",
            "tflite/int8",
            "openvino/fp32",
            "openvino/int8",
            "tf1_hub/tf/fp32",
        ]
        report = evaluate(runs, samples, batch_size=8)  # scored 8 at a time, the logits then dropped
        logits = {v.name: v.module(x) for v in runs}
        folders = {v.name: Path(v.module.handle) for v in runs if v.format}
        details = Interpreter(model_path=str(folders["tflite/int8"] / "model.tflite")).get_tensor_details()
        assert sum(d["dtype"] == np.int8 for d in details) > 100  # every conv's weights and activations
        assert json.loads((folders["tflite/int8"] / "inception_hub.json").read_text())["calibration"] == "bundled"
        ir = ov.Core().read_model(str(folders["openvino/int8"] / "model.xml"))
        assert any(op.get_type_name() == "FakeQuantize" for op in ir.get_ops())  # the engines' QDQ model, converted
    by_name = {v["name"]: v for v in report.variants}
    truth = np.array([wnids.index(s.key) for s in samples])
    for name, lg in logits.items():
        assert by_name[name]["top1"] == pytest.approx((lg.argmax(1) == truth).mean())
        assert by_name[name]["images"] == len(paths)
    assert by_name["onnxruntime/fp32"]["top1"] == pytest.approx(np.mean([i % 2 == 0 for i in range(len(paths))]))
    for pair in report.agreement:
        a, b = logits[pair["a"]], logits[pair["b"]]
        assert pair["top1_agreement"] == pytest.approx((a.argmax(1) == b.argmax(1)).mean())
        # Computed here in one batch, there in batches of 8: float32 rounding may differ by ~1e-6.
        assert pair["max_logit_difference"] == pytest.approx(np.abs(a - b).max(), rel=1e-3, abs=1e-5)
        if "int8" not in pair["a"] + pair["b"]:
            assert pair["top1_agreement"] == 1.0 and pair["max_logit_difference"] <= 1e-4
    base = "onnxruntime/fp32"
    int8_agreement = [p["top1_agreement"] for p in report.agreement if p["a"] == base and "int8" in p["b"]]
    assert len(int8_agreement) == 3 and min(int8_agreement) >= 0.5
    assert by_name["tf1_hub/tf/fp32"]["top1"] == by_name["onnxruntime/fp32"]["top1"]


def test_refusals_name_the_fix(v1_ckpt, tmp_path):
    cases = [
        (dict(format="saved_model"), "inception_v1/classification/1", "version /5"),
        (dict(format="tf1_hub"), "inception_v1/classification/5", "version /3"),
        (dict(format="onnx", precision="bf16"), "inception_v1", "fp32 or int8"),
        (dict(format="tflite", calibration=str(tmp_path)), "inception_v1", "int8 exports only"),
        (dict(format="onnx", precision="int8", calibration=str(tmp_path / "nowhere")), "inception_v1", "not exist"),
        (dict(format="coreml"), "inception_v1", "unknown format"),
    ]
    for kwargs, handle, message in cases:
        with pytest.raises(InputError, match=message):
            export(handle, tmp_path / "out", v1_ckpt, **kwargs)
    assert not (tmp_path / "out").exists()
    folder = export("inception_v1/feature_vector/5", tmp_path / "fv", v1_ckpt, format="onnx", progress=False)
    with pytest.raises(InputError, match="runs on onnxruntime or openvino"):
        inception_hub.load(folder, backend="tf")
    with pytest.raises(InputError, match="exported in fp32"):
        inception_hub.load(folder, precision="int8")
    with pytest.raises(InputError, match="own weights"):
        inception_hub.load(folder, v1_ckpt)
    module = inception_hub.load(folder, backend="openvino")
    x, ref = _inputs("inception_v1", "224x224", 2)
    assert module.labels is None and np.abs(module(x) - ref["feature_vector"]).max() <= 1e-4


def test_onnx_and_openvino_exports_need_no_tensorflow(v1_ckpt, tmp_path):
    code = (
        "import sys; from inception_hub.cli import main; "
        f"rc = [main(['export', 'inception_v1', {str(tmp_path)!r} + '/' + f, '--format', f, "
        f"'--checkpoint', {v1_ckpt!r}, '--no-progress']) for f in ('onnx', 'openvino')]; "
        "print(rc, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[0, 0] False"
    assert (tmp_path / "onnx" / "model.onnx").is_file() and (tmp_path / "openvino" / "model.bin").is_file()


def test_exported_folders_serve_and_classify_like_the_handle(v1_ckpt, tmp_path, capsys):
    """An ONNX export in the server (both outputs from the one file) and the CLI."""
    from inception_hub.cli import main
    from inception_hub.serve.models import build

    folder = export("inception_v1/classification/5", tmp_path / "clf_onnx", v1_ckpt, format="onnx", progress=False)
    served = build(str(folder))
    x, ref = _inputs("inception_v1", "256x320", 2)
    assert served.name == "clf_onnx" and served.compute_dims == {"logits": 1001, "feature_vector": 1024}
    assert np.abs(served.compute["feature_vector"](x) - ref["feature_vector"]).max() <= 1e-4
    photo = str(reference_images("inception_v1")[0])
    answers = []
    for args in (["--model", str(folder)], ["--model", "inception_v1", "--checkpoint", v1_ckpt]):
        assert main(["classify", photo, *args, "--format", "csv", "--no-progress"]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1] and len(answers[0].splitlines()) > 1
