"""TFLite exports on device: `mobile.tflite` run by MediaPipe's ImageClassifier and ImageEmbedder
(Python Tasks API, CPU) as they are, its metadata read back with MediaPipe's own generated
schema readers, and LiteRT's converter against the TF-Slim reference."""

from __future__ import annotations

import io
import json
import zipfile

import mediapipe as mp  # .[mediapipe]
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tflite_fb
from ai_edge_litert.interpreter import Interpreter
from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
from mediapipe.tasks.python import BaseOptions, vision

from conftest import reference
from inception_hub.export import export
from inception_hub.export.tflite_metadata import FILE_IDENTIFIER, ImageModel, metadata_buffer
from inception_hub.labels import imagenet_labels

SIZE = {"inception_v1": 224, "inception_resnet_v2": 299}
CASES = [(arch, precision) for arch in SIZE for precision in ("fp32", "int8")]


@pytest.fixture(scope="module")
def exports(checkpoints, tmp_path_factory):
    """{(arch, precision): folder} of classification/5 TFLite exports, and the v1 feature vector,
    each exported once. int8 calibrates on 32 crops of two bundled photos, to keep it cheap."""
    from inception_hub.engine import quantize

    root = tmp_path_factory.mktemp("tflite")
    photos = root / "photos"
    photos.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        (photos / name).write_bytes((quantize.DEFAULT_SET / name).read_bytes())
    out = {}
    for arch, precision in [*CASES, ("inception_v1", "fv")]:
        handle = f"{arch}/{'feature_vector' if precision == 'fv' else 'classification'}/5"
        with pytest.MonkeyPatch.context() as patch:
            # 32 calibration inputs, not 256: what is tested is how MediaPipe runs int8, not calibration.
            patch.setattr(quantize, "COUNT", 32)
            out[arch, precision] = export(
                handle,
                root / f"{arch}-{precision}",
                checkpoints[arch, "v2"],
                format="tflite",
                precision="int8" if precision == "int8" else "fp32",
                calibration=photos if precision == "int8" else None,
                progress=False,
            )
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _metadata(model_file) -> metadata_fb.ModelMetadataT:
    data = bytearray(model_file.read_bytes())
    model = tflite_fb.ModelT.InitFromPackedBuf(data, 0)
    (entry,) = [m for m in model.metadata if m.name == b"TFLITE_METADATA"]
    buffer = bytes(model.buffers[entry.buffer].data)
    assert buffer[4:8] == FILE_IDENTIFIER
    return metadata_fb.ModelMetadataT.InitFromPackedBuf(bytearray(buffer), 0)


@pytest.mark.slow  # exports both networks in fp32 and int8
@pytest.mark.parametrize("arch, precision", CASES)
def test_mediapipe_classifies_the_mobile_export_with_our_labels(exports, arch, precision):
    """As a phone would run it: the photo at the training size, MediaPipe's own normalization (read
    from the metadata), our labels by index, scores ordered as the module's logits."""
    size = SIZE[arch]
    ref = reference(arch, f"{size}x{size}")
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(exports[arch, precision] / "mobile.tflite")), max_results=-1
    )
    labels = imagenet_labels()
    direct = Interpreter(model_path=str(exports[arch, precision] / "mobile.tflite")).get_signature_runner()
    classifier = vision.ImageClassifier.create_from_options(options)
    agree = 0
    try:
        for i in range(4):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(ref["inputs_u8"][i]))
            categories = classifier.classify(image).classifications[0].categories
            assert len(categories) == 1001
            assert all(c.category_name == labels[c.index] for c in categories)
            scores = np.zeros(1001, np.float32)
            scores[[c.index for c in categories]] = [c.score for c in categories]
            # MediaPipe feeds what the contract says (its normalization from the metadata: pixels / 255).
            x = ref["inputs_u8"][i : i + 1].astype(np.float32) / 255
            np.testing.assert_allclose(scores, direct(images=x)["probabilities"][0], rtol=1e-5, atol=1e-7)
            if precision == "fp32":
                assert categories[0].index == np.argmax(ref["logits"][i])
                assert np.abs(np.log(scores) - np.log(_softmax(ref["logits"][i]))).max() <= 1e-4
            else:
                scored = scores > 0  # int8 probabilities come in steps of 1/256: most round to 0 here
                agree += ref["logits"][i][scored].mean() > ref["logits"][i][~scored].mean() + 0.5
    finally:
        classifier.close()
    # int8 is not exact, and the synthetic weights' probabilities are flat (at most 0.01): the classes
    # it scores above zero are those the module's logits rank high.
    assert precision == "fp32" or agree == 4, (arch, agree)


@pytest.mark.slow
@pytest.mark.parametrize("arch, precision", CASES)
def test_the_metadata_states_normalization_size_labels_and_licence(exports, arch, precision):
    mobile = exports[arch, precision] / "mobile.tflite"
    size = SIZE[arch]
    meta = _metadata(mobile)
    assert meta.name.decode() == f"{arch} classification"
    assert meta.version == b"5" and meta.license == b"Apache-2.0" and meta.minParserVersion == b"1.0.0"
    assert b"[0, 1]" in meta.description and b"background" in meta.description
    (subgraph,) = meta.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    (unit,) = image.processUnits
    assert unit.optionsType == metadata_fb.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [255.0]  # pixels / 255: [0, 1]
    assert image.content.contentPropertiesType == metadata_fb.ContentProperties.ImageProperties
    props = image.content.contentProperties
    assert props.colorSpace == metadata_fb.ColorSpaceType.RGB
    assert (props.defaultSize.height, props.defaultSize.width) == (size, size)
    assert (list(image.stats.min), list(image.stats.max)) == ([0.0], [1.0])
    (scores,) = subgraph.outputTensorMetadata
    (labels_file,) = scores.associatedFiles
    assert labels_file.name == b"labels.txt" and labels_file.type == metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    with zipfile.ZipFile(io.BytesIO(mobile.read_bytes())) as archive:  # the labels, embedded
        assert archive.read("labels.txt").decode().splitlines() == list(imagenet_labels())
        assert archive.getinfo("labels.txt").compress_type == zipfile.ZIP_STORED  # read in place
    model = tflite_fb.ModelT.InitFromPackedBuf(bytearray(mobile.read_bytes()), 0)
    (graph,) = model.subgraphs  # one subgraph, one fixed input, one output
    assert [list(graph.tensors[i].shape) for i in graph.inputs] == [[1, size, size, 3]]
    assert [list(graph.tensors[i].shape) for i in graph.outputs] == [[1, 1001]]
    recorded = json.loads((exports[arch, precision] / "inception_hub.json").read_text())
    assert recorded["mobile_file"] == "mobile.tflite" and recorded["precision"] == precision


@pytest.mark.slow
def test_the_feature_vector_export_has_no_labels_and_mediapipe_embeds_with_it(exports):
    folder = exports["inception_v1", "fv"]
    meta = _metadata(folder / "mobile.tflite")
    (subgraph,) = meta.subgraphMetadata
    (features,) = subgraph.outputTensorMetadata
    assert features.name == b"feature_vector" and not features.associatedFiles and features.stats is None
    assert list(subgraph.inputTensorMetadata[0].processUnits[0].options.std) == [255.0]
    ref = reference("inception_v1", "224x224")
    options = vision.ImageEmbedderOptions(base_options=BaseOptions(model_asset_path=str(folder / "mobile.tflite")))
    embedder = vision.ImageEmbedder.create_from_options(options)
    try:
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(ref["inputs_u8"][0]))
        vector = embedder.embed(image).embeddings[0].embedding
    finally:
        embedder.close()
    assert np.abs(np.asarray(vector) - ref["feature_vector"][0]).max() <= 1e-4


@pytest.mark.slow
def test_litert_converter_writes_the_fp32_mobile_files_within_1e_4(exports):
    """Both networks' fp32 mobile.tflite come from LiteRT's converter (Inception-ResNet-V2's SAME
    average pools had come out as a second subgraph, so TensorFlow's converter wrote that one)."""
    import litert_converter  # noqa: F401  (make litert: the converter this test is about must be there)

    for arch, kind, output in [(a, "fp32", "probabilities") for a in SIZE] + [("inception_v1", "fv", "feature_vector")]:
        meta = json.loads((exports[arch, kind] / "inception_hub.json").read_text())
        assert meta["mobile_converter"].startswith("litert-converter"), (arch, kind)
        ref = reference(arch, f"{SIZE[arch]}x{SIZE[arch]}")
        runner = Interpreter(model_path=str(exports[arch, kind] / "mobile.tflite")).get_signature_runner()
        for i in range(3):
            y = runner(images=ref["inputs_u8"][i : i + 1].astype(np.float32) / 255)[output][0]
            if output == "probabilities":  # the logits up to a constant, within 1e-4
                assert np.abs(np.log(y) - np.log(_softmax(ref["logits"][i]))).max() <= 1e-4, arch
            else:
                assert np.abs(y - ref["feature_vector"][i]).max() <= 1e-4


@pytest.mark.parametrize("size, kernel, stride", [((35, 35), 3, 1), ((17, 9), 3, 2), ((8, 7), (2, 3), 2)])
def test_the_fixed_size_average_pool_is_tfs_same_average_pool(size, kernel, stride):
    import tensorflow as tf

    from inception_hub.nets.tf_builder import FixedSizeTFBuilder

    x = tf.constant(np.random.default_rng(0).normal(size=(2, *size, 5)).astype(np.float32))
    builder = FixedSizeTFBuilder({})
    ours = builder.avg_pool2d(x, kernel, stride=stride, padding="SAME").numpy()
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    np.testing.assert_allclose(ours, tf.nn.avg_pool2d(x, k, stride, "SAME").numpy(), rtol=0, atol=1e-6)


def test_the_metadata_buffer_is_readable_by_mediapipe_schema():
    """The writer alone, without a model: every field read back as written."""
    model = ImageModel("n", "d", "3", "a", "Apache-2.0", (240, 320), 127.5, 127.5, "probability", "p", (0.0, 1.0))
    meta = metadata_fb.ModelMetadataT.InitFromPackedBuf(bytearray(metadata_buffer(model)), 0)
    assert (meta.name, meta.description, meta.version, meta.author) == (b"n", b"d", b"3", b"a")
    image = meta.subgraphMetadata[0].inputTensorMetadata[0]
    assert (image.content.contentProperties.defaultSize.width, image.content.contentProperties.defaultSize.height) == (
        320,
        240,
    )
    assert (list(image.stats.min), list(image.stats.max)) == ([-1.0], [1.0])  # (0 - 127.5) / 127.5 ...
    out = meta.subgraphMetadata[0].outputTensorMetadata[0]
    assert out.content.contentPropertiesType == metadata_fb.ContentProperties.FeatureProperties
    assert (list(out.stats.min), list(out.stats.max)) == ([0.0], [1.0]) and not out.associatedFiles
