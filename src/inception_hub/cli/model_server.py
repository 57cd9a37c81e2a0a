"""TensorFlow Serving's command line (`tensorflow_model_server`'s flags), so the scripts and
platforms that start TF Serving (KServe's TF Serving runtime among them) can start this server:

    inception-hub-model-server --model_name=m --port=9000 --rest_api_port=8080 --model_base_path=DIR

`--model_base_path` holds numbered version folders (`DIR/1/`, `DIR/2/`, ...), each an export of
ours (`inception-hub export --format saved_model`, or onnx, ...); the newest is served, as TF
Serving's default version policy does. `--model_config_file` is TF Serving's text-format
`model_config_list`. Flags are written `--flag=value` or `--flag value`. Tuning flags that do not
change any answer are accepted and ignored (with a note); other TF Serving flags are refused.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..errors import InceptionHubError, InputError
from ..metadata import is_export

PROG = "inception-hub-model-server"
#: What the server needs beyond the lean install (the `serve` extra).
SERVER_MODULES = ("aiohttp", "grpc", "google", "prometheus_client")

#: TF Serving flags accepted and ignored: they tune TF Serving itself, and change no answer here.
IGNORED = {
    "tensorflow_session_parallelism": "threads are the backend's own",
    "tensorflow_intra_op_parallelism": "threads are the backend's own",
    "tensorflow_inter_op_parallelism": "threads are the backend's own",
    "rest_api_num_threads": "one event loop serves every connection",
    "grpc_max_threads": "one event loop serves every connection",
    "file_system_poll_wait_seconds": "versions are read at start-up; restart to serve a new one",
    "model_config_file_poll_wait_seconds": "the config is read at start-up; restart to change it",
    "enable_model_warmup": "every model is warmed up before the server listens",
    "flush_filesystem_caches": "nothing to flush",
    "max_num_load_retries": "a model that cannot load stops the start-up with its reason",
    "load_retry_interval_micros": "a model that cannot load stops the start-up with its reason",
    "num_load_threads": "models load one after another",
    "num_unload_threads": "models load one after another",
    "per_process_gpu_memory_fraction": "this server runs on the CPU",
    "xla_cpu_compilation_enabled": "the backend compiles as it does",
    "remove_unused_fields_from_bundle_metagraph": "nothing to remove",
    "skip_initialize_tpu": "this server runs on the CPU",
    "enable_profiler": "no profiler",
}
#: TF Serving flags this server cannot honour: refused, since running without them would differ.
REFUSED = {
    "ssl_config_file": "TLS is not served; put a TLS proxy (or the platform's ingress) in front",
    "grpc_socket_path": "gRPC listens on --port only",
    "platform_config_file": "each version folder's export says how it runs",
    "monitoring_config_file": "Prometheus metrics are always at /metrics on the REST port",
    "saved_model_tags": "exports are served with the tags they were written with",
    "prefer_tflite_model": "export the model in the format to serve (--format tflite)",
    "use_tflite_model": "export the model in the format to serve (--format tflite)",
    "num_tflite_pools": "TFLite pools are not configurable",
    "num_tflite_interpreters_per_pool": "TFLite pools are not configurable",
    "rest_api_enable_cors_support": "CORS is not served",
    "enable_signature_method_name_check": "signatures are the published modules'",
    "allow_version_labels_for_unavailable_models": "one version is served per model; labels name it",
    "thread_pool_factory_config_file": "thread pools are not configurable",
    "mixed_precision": "export with --precision bf16 instead",
    "grpc_channel_arguments": "gRPC channel arguments are not configurable",
    "rest_api_max_request_body_bytes": "use inception-hub serve --max-body-mb",
}


@functools.cache
def config_messages() -> tuple[type, type]:
    """TF Serving's ModelServerConfig (model_config_list only) and BatchingParameters, by their
    text-format names (field numbers as in model_server_config.proto and session_bundle_config.proto).
    Made on first use: the command line's other parts need neither protobuf nor the server."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    from ..serve.protos import add_map, add_message, new_file

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = new_file("inception_hub/model_server_config.proto", "tensorflow.serving", "google/protobuf/wrappers.proto")
    policy = add_message(f, "ServableVersionPolicy", [
        ("latest", 100, ".tensorflow.serving.ServableVersionPolicy.Latest", "policy_choice"),
        ("all", 101, ".tensorflow.serving.ServableVersionPolicy.All", "policy_choice"),
        ("specific", 102, ".tensorflow.serving.ServableVersionPolicy.Specific", "policy_choice"),
    ], oneofs=("policy_choice",))  # fmt: skip
    add_message(policy, "Latest", [("num_versions", 1, "int32")])
    add_message(policy, "All", [])
    add_message(policy, "Specific", [("versions", 1, "int64", "repeated")])
    config = add_message(f, "ModelConfig", [
        ("name", 1, "string"),
        ("base_path", 2, "string"),
        ("model_platform", 4, "string"),
        ("model_version_policy", 7, ".tensorflow.serving.ServableVersionPolicy"),
    ])  # fmt: skip
    add_map(config, "version_labels", 8, "int64")
    add_message(f, "ModelConfigList", [("config", 1, ".tensorflow.serving.ModelConfig", "repeated")])
    add_message(f, "ModelServerConfig", [("model_config_list", 1, ".tensorflow.serving.ModelConfigList")])
    add_message(f, "BatchingParameters", [
        (name, number, ".google.protobuf.Int64Value") for number, name in enumerate(
            ["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"], start=1)
    ])  # fmt: skip
    pool.Add(f)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("ModelServerConfig", "BatchingParameters")
    )


def _bool(text: str) -> bool:
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        description="TensorFlow Serving's command line for inception-hub's server (TF Serving's REST and gRPC "
        "APIs, and the Open Inference Protocol v2, on the same ports).",
        epilog=f"Accepted and ignored: {', '.join('--' + f for f in IGNORED)}. "
        f"Refused: {', '.join('--' + f for f in REFUSED)}.",
    )
    p.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500; 0: any free port)")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (default 0: no REST API, as TF Serving)")
    p.add_argument("--model_name", default="default", help="the served model's name (default 'default')")
    p.add_argument("--model_base_path", metavar="DIR", help="numbered version folders, each an export")
    p.add_argument("--model_config_file", metavar="FILE", help="text-format ModelServerConfig (model_config_list)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000, help="request timeout, queueing included")
    p.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False, metavar="BOOL")
    p.add_argument("--batching_parameters_file", metavar="FILE", help="text-format BatchingParameters")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, as TF Serving)")
    p.add_argument("--backend", help="engine for exports that run on several (onnxruntime, openvino)")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


@dataclass
class Settings:
    """What a command line asks for, ready for `serve`."""

    models: list
    host: str
    port: int | None
    grpc_port: int
    timeout_s: float
    max_batch: int = 32
    batch_timeout_ms: float = 5.0
    workers: int = 1
    max_queue: int = 512
    backend: str | None = None


def parse(argv: list[str], notes=None) -> Settings | None:
    """The settings of a TF Serving command line (None for --version); InceptionHubError naming
    the flag for one that is refused, unknown or wrong. `notes` gets a line per ignored flag."""
    from ..serve import ModelSource

    notes = notes if notes is not None else (lambda text: print(f"{PROG}: note: {text}", file=sys.stderr))
    args, rest = build_parser().parse_known_args(argv)
    _check_rest(rest, notes)
    if args.version:
        return None
    if args.model_config_file and args.model_base_path:
        raise InputError("give --model_config_file or --model_name/--model_base_path, not both")
    if args.model_config_file:
        models = [ModelSource(str(folder), name, v) for name, v, folder in read_model_config(args.model_config_file)]
    elif args.model_base_path:
        version, folder = newest_version(Path(args.model_base_path), "--model_base_path")
        models = [ModelSource(str(folder), args.model_name, version)]
    else:
        raise InputError("give --model_base_path (numbered version folders, each an export) or --model_config_file")
    for flag, port in (("--port", args.port), ("--rest_api_port", args.rest_api_port)):
        if not 0 <= port <= 65535:
            raise InputError(f"{flag} {port} is not a port number")
    if args.port and args.port == args.rest_api_port:
        raise InputError("--port (gRPC) and --rest_api_port must differ")
    if args.rest_api_timeout_in_ms <= 0:
        raise InputError("--rest_api_timeout_in_ms must be positive")
    settings = Settings(
        models,
        args.host,
        args.rest_api_port or None,
        args.port,
        args.rest_api_timeout_in_ms / 1000,
        backend=args.backend,
    )
    if args.batching_parameters_file and not args.enable_batching:
        notes("--batching_parameters_file applies with --enable_batching, as in TF Serving; ignored")
    elif args.enable_batching and args.batching_parameters_file:
        _batching(settings, args.batching_parameters_file)
    elif not args.enable_batching:
        settings.batch_timeout_ms = 0.0  # no waiting for a batch to fill; requests queued together still share one
    return settings


def _check_rest(rest: list[str], notes) -> None:
    """Refuse what the parser did not take, unless it is a TF Serving flag that changes no answer."""
    skip_value = False
    for token in rest:
        if skip_value and not token.startswith("-"):
            skip_value = False
            continue
        skip_value = False
        if not token.startswith("--"):
            raise InputError(f"unexpected argument {token!r}; flags are written --flag=value or --flag value")
        flag, has_value = token[2:].partition("=")[0], "=" in token
        if flag in IGNORED:
            notes(f"--{flag} is ignored: {IGNORED[flag]}")
            skip_value = not has_value
        elif flag in REFUSED:
            raise InputError(f"--{flag} is not supported: {REFUSED[flag]}")
        else:
            raise InputError(f"unknown flag --{flag}; see {PROG} --help for the supported ones")


def newest_version(base: Path, what: str, wanted: int | None = None) -> tuple[int, Path]:
    """The newest numbered version folder of `base` (or version `wanted`), an export of ours."""
    if not base.is_dir():
        raise InputError(f"{what} {base} is not a folder")
    versions = {int(p.name): p for p in base.iterdir() if p.name.isdigit() and p.is_dir()}
    if not versions:
        hint = " (it is an export itself: move it into a folder named 1 inside)" if is_export(base) else ""
        raise InputError(f"{what} {base} holds no numbered version folders (1/, 2/, ...){hint}")
    version = max(versions) if wanted is None else wanted
    if version not in versions:
        raise InputError(f"{base} has no version {version}; it has {', '.join(map(str, sorted(versions)))}")
    folder = versions[version]
    if not is_export(folder):
        raise InputError(
            f"{folder} is not an export of inception-hub (inception-hub export --format saved_model, onnx, ... "
            "writes one)"
        )
    return version, folder


def read_model_config(path: str) -> list[tuple[str, int, Path]]:
    """(name, version, folder) of each model of a text-format `model_config_list`."""
    from google.protobuf import text_format

    config = config_messages()[0]()
    try:
        text = Path(path).read_text()
        text_format.Parse(text, config)
    except OSError as e:
        raise InputError(f"cannot read --model_config_file {path}: {e.strerror or e}") from None
    except text_format.ParseError as e:
        raise InputError(f"--model_config_file {path}: {e} (this server reads model_config_list only)") from None
    configs = config.model_config_list.config
    if not configs:
        raise InputError(f"--model_config_file {path} lists no model (model_config_list {{ config {{ ... }} }})")
    names = set()
    for c in configs:  # the whole file first, then the folders
        if not c.name or not c.base_path:
            raise InputError(f"--model_config_file {path}: every config needs a name and a base_path")
        if c.name in names:
            raise InputError(f"--model_config_file {path}: model {c.name!r} is listed twice")
        names.add(c.name)
    wanted = [_wanted_version(c) for c in configs]
    return [
        (c.name, *newest_version(Path(c.base_path), f"base_path of {c.name!r}", version))
        for c, version in zip(configs, wanted, strict=True)
    ]


def _wanted_version(c) -> int | None:
    """The one version a config's policy serves: the newest (None), or the one it names."""
    policy = c.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific" and len(policy.specific.versions) == 1:
        return policy.specific.versions[0]
    if kind is None or kind == "latest" and policy.latest.num_versions <= 1:
        return None
    raise InputError(f"model {c.name!r}: one version is served per model, the newest or one named in specific {{ }}")


def _batching(settings: Settings, path: str) -> None:
    from google.protobuf import text_format

    params = config_messages()[1]()
    try:
        text_format.Parse(Path(path).read_text(), params)
    except OSError as e:
        raise InputError(f"cannot read --batching_parameters_file {path}: {e.strerror or e}") from None
    except text_format.ParseError as e:
        raise InputError(f"--batching_parameters_file {path}: {e}") from None
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        if params.HasField(field) and getattr(params, field).value < (0 if field == "batch_timeout_micros" else 1):
            raise InputError(f"--batching_parameters_file {path}: {field} must be positive")
    if params.HasField("max_batch_size"):
        settings.max_batch = params.max_batch_size.value
    if params.HasField("batch_timeout_micros"):
        settings.batch_timeout_ms = params.batch_timeout_micros.value / 1000
    if params.HasField("num_batch_threads"):
        settings.workers = params.num_batch_threads.value
    if params.HasField("max_enqueued_batches"):
        settings.max_queue = params.max_enqueued_batches.value * settings.max_batch


def run(argv: list[str]) -> int:
    """Parse a TF Serving command line and serve until interrupted."""
    settings = parse(argv)
    if settings is None:
        print(f"{PROG} {__version__} (TensorFlow Serving's command line for inception-hub)")
        return 0
    from ..serve import Limits, serve

    limits = Limits(timeout_s=settings.timeout_s, max_queue=max(settings.max_queue, Limits.max_images))
    serve(
        settings.models,
        host=settings.host,
        port=settings.port,
        grpc_port=settings.grpc_port,
        max_batch=settings.max_batch,
        batch_timeout_ms=settings.batch_timeout_ms,
        workers=settings.workers,
        limits=limits,
        backend=settings.backend,
    )
    return 0


def cmd_model_server(args: argparse.Namespace) -> int:
    """`inception-hub model-server FLAGS...`: the flags as `tensorflow_model_server` takes them."""
    return run(args.flags)


def main(argv: list[str] | None = None) -> int:
    """The `inception-hub-model-server` command."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except InceptionHubError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top not in SERVER_MODULES:
            raise
        print(f"{PROG}: error: this needs {e.name}, which is not installed: pip install 'inception-hub[serve]'",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
