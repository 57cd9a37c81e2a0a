"""TFLite exports: two files from the one definition.

`model.tflite` is the module's whole contract for LiteRT and `inception_hub.load`: one signature,
`serving_default`, any batch (and any size from version 3 on), outputs `logits` and
`feature_vector` (or `feature_vector`).

`mobile.tflite` is what MediaPipe's Tasks, ML Kit and the TFLite Task Library take as it is: one
subgraph with a fixed input, float32 [1, H, W, 3], and one output (`probabilities` over the 1001
classes, or `feature_vector`), carrying TFLite model metadata (the input's normalization, size
and colour space; the labels as an associated file; name, version, licence). Those runtimes read
the input's stored shape, which for a dynamic input is [1, 1, 1, 3], and take each output of a
classifier for a classification head: hence the second file.

fp32 `mobile.tflite` is converted by LiteRT's converter (`litert-converter`) where it is
installed, from the StableHLO that XLA compiles the network to; TensorFlow's converter writes it
otherwise, and writes `model.tflite` (whose dynamic shapes StableHLO from XLA cannot express) and
the int8 files (full-integer quantization calibrated on photos, float input and output kept).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings

import numpy as np

from .._version import __version__
from ..catalog import ModelSpec
from ..metadata import FORMAT_RECORDS
from .job import Job
from .tflite_metadata import ImageModel, Labels, populate, tflite_schema

MOBILE_FILE = "mobile.tflite"
#: The mobile file's input: the module's [0, 1] contract is (pixel - 0) / 255.
MEAN, STD = 0.0, 255.0
LABELS_FILE = "labels.txt"


def export_tflite(job: Job) -> dict:
    """Write `model.tflite` and `mobile.tflite`; returns the metadata fields saying how."""
    import tensorflow as tf

    from ..nets.tf_module import InceptionNet

    spec = job.spec
    net = InceptionNet(spec.arch, spec.num_classes, job.weights)
    size = list(spec.image_size) if not spec.variable_size else [None, None]

    @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name="images")])
    def serving_default(images):
        output, end_points = net.run(images)
        if spec.num_classes:
            return {"logits": output, "feature_vector": end_points["global_pool"]}
        return {"feature_vector": output}

    @tf.function(input_signature=[tf.TensorSpec([1, *spec.image_size, 3], tf.float32, name="images")])
    def mobile(images):
        return {_mobile_output(spec): _mobile_head(spec, net.run(images)[0])}

    (job.out / FORMAT_RECORDS["tflite"].model_file).write_bytes(_tf_convert(job, net, serving_default))
    converted = _litert_convert(job) if job.meta["precision"] == "fp32" else None
    converter = f"litert-converter {importlib.metadata.version('litert-converter')}" if converted else None
    if converted is None:
        converted = _tf_convert(job, net, mobile)
        converter = f"TensorFlow {tf.__version__} TFLiteConverter"
    (job.out / MOBILE_FILE).write_bytes(populate(converted, image_model(spec, job.labels)))
    return {"mobile_file": MOBILE_FILE, "mobile_converter": converter}


def image_model(spec: ModelSpec, labels) -> ImageModel:
    """What `mobile.tflite`'s metadata says about the module."""
    card = spec.card
    h, w = spec.image_size
    if spec.num_classes:
        what = f"ImageNet classifier: probabilities over {len(labels)} classes, class 0 being background"
        output = ("probability", "Probabilities of the classes (softmax of the logits), in the labels' order.")
    else:
        what = f"ImageNet feature vector: the {spec.output_dim} pooled features before the logits"
        output = ("feature_vector", f"The global average pool of the last feature map, {spec.output_dim} values.")
    return ImageModel(
        name=f"{card.architecture.name} {spec.kind.replace('_', ' ')}",
        description=(
            f"{card.architecture.name} (TF-Slim {card.architecture.scope}) {what}; the TF-Hub module "
            f"{spec.handle}. Input: RGB {h}x{w}, values in [0, 1]. Trained with a central crop of "
            f"{card.central_fraction:g} before resizing."
        ),
        version=str(spec.version),
        author=f"Google (TF-Slim checkpoint {card.checkpoint.tarball}); converted by inception-hub {__version__}",
        license="Apache-2.0",
        image_size=spec.image_size,
        mean=MEAN,
        std=STD,
        output_name=output[0],
        output_description=output[1],
        output_range=(0.0, 1.0) if spec.num_classes else None,
        labels=Labels(LABELS_FILE, tuple(labels)) if spec.num_classes and labels else None,
    )


def _mobile_output(spec: ModelSpec) -> str:
    return "probabilities" if spec.num_classes else "feature_vector"


def _mobile_head(spec: ModelSpec, output):
    import tensorflow as tf

    return tf.nn.softmax(output) if spec.num_classes else output


def _tf_convert(job: Job, net, fn) -> bytes:
    """`fn` through TensorFlow's converter (int8: full-integer, float input and output kept)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], net)
    if job.meta["precision"] == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(job.spec, job.calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with warnings.catch_warnings():  # the converter calibrates with TF's own, deprecated, interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        warnings.filterwarnings("ignore", message=".*tf.lite.*deprecated", category=DeprecationWarning)
        return converter.convert()


def _litert_convert(job: Job) -> bytes | None:
    """The fixed-size mobile model through LiteRT's converter, or None where it is not installed
    or gives more than one subgraph (which MediaPipe refuses). XLA compiles the network, its
    weights as constants, to StableHLO; the converter lowers that to TFLite operators."""
    if importlib.util.find_spec("litert_converter") is None:
        return None
    import tensorflow as tf
    from litert_converter.mlir import ir, passmanager
    from litert_converter.mlir._mlir_libs import converter_api_ext

    from ..nets import build, variable_specs
    from ..nets.tf_builder import FixedSizeTFBuilder

    spec, weights = job.spec, job.weights
    names = [s.name for s in variable_specs(spec.arch, include_top=spec.num_classes is not None)]

    @tf.function(jit_compile=True, autograph=False)
    def mobile(images):
        # Constants made inside the function stay in the program; captured ones would become arguments.
        consts = {n: tf.constant(np.asarray(weights[n])) for n in names}
        out = build(FixedSizeTFBuilder(consts), spec.arch, 2.0 * images - 1.0, spec.num_classes)
        return _mobile_head(spec, out)

    stablehlo = mobile.experimental_get_compiler_ir(tf.zeros([1, *spec.image_size, 3]))(stage="stablehlo")
    context = ir.Context()
    converter_api_ext.prepare_mlir_context(context)
    with context:
        module = ir.Module.parse(stablehlo)
        config = converter_api_ext.ConvertToTFLConfig()
        config.model_origin_framework = "JAX"  # StableHLO without TF ops: the StableHLO path
        converter_api_ext.run_convert_to_tfl_passes(module, passmanager.PassManager(), config)
        converter_api_ext.set_signature(module.operation, "serving_default", ["images"], [_mobile_output(spec)])
        model = bytes(converter_api_ext.export_flatbuffer_to_bytes(module.operation))
    return model if tflite_schema().Model.GetRootAs(model, 0).SubgraphsLength() == 1 else None


def _representative(spec: ModelSpec, calibration: str | None):
    from ..engine import quantize

    data = quantize.Calibration(quantize.calibration_files(calibration), spec.image_size, count=quantize.COUNT)

    def inputs():
        for i in range(len(data)):
            for image in data.batch(i):
                yield {"images": image[None]}

    return inputs
