"""TF Serving's command line (`tensorflow_model_server`'s flags): version folders, the newest
served, model_config_file, KServe's TF Serving runtime arguments, and clear refusals."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading

import grpc
import pytest

from inception_hub.cli import model_server
from inception_hub.errors import InputError
from inception_hub.serve import ModelSource
from inception_hub.serve import v2_protos as ours
from test_serve import http


def fake_export(folder):
    """A folder `is_export` takes for an export (enough for the command line's checks)."""
    folder.mkdir(parents=True)
    (folder / "inception_hub.json").write_text("{}")
    return folder


@pytest.fixture
def base(tmp_path):
    for version in ("1", "2", "10"):
        fake_export(tmp_path / "m" / version)
    (tmp_path / "m" / "99-old").mkdir()  # not a number: not a version, as in TF Serving
    (tmp_path / "m" / "notes.txt").write_text("")
    return tmp_path / "m"


def parse(argv, notes=None):
    return model_server.parse(argv, notes if notes is not None else [].append)


# Without a server ---------------------------------------------------------------------------------


def test_kserve_runtime_arguments_serve_the_newest_version(base):
    argv = ["--model_name=m", "--port=9000", "--rest_api_port=8080", f"--model_base_path={base}",
            "--rest_api_timeout_in_ms=60000"]  # fmt: skip
    s = parse(argv)
    assert s.models == [ModelSource(str(base / "10"), "m", 10)]  # 10 > 2 > 1: numbers, not names
    assert (s.port, s.grpc_port, s.timeout_s, s.host) == (8080, 9000, 60.0, "0.0.0.0")
    spaced = parse(["--model_name", "m", "--port", "9000", "--rest_api_port", "8080", "--model_base_path", str(base),
                    "--rest_api_timeout_in_ms", "60000"])  # fmt: skip
    assert spaced == s


def test_tf_servings_defaults_no_rest_and_the_default_name(base):
    s = parse([f"--model_base_path={base}"])
    assert s.port is None and s.grpc_port == 8500 and s.models[0].name == "default"


def test_a_model_config_file_serves_each_model(base, tmp_path):
    fake_export(tmp_path / "other" / "3")
    fake_export(tmp_path / "other" / "4")
    config = tmp_path / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: 'first'
    base_path: '{base}'
    model_platform: 'tensorflow'
  }}
  config {{
    name: "second"
    base_path: "{tmp_path / "other"}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 3 }} }}
    version_labels {{ key: 'stable' value: 3 }}
  }}
}}
""")
    s = parse([f"--model_config_file={config}", "--port=8500", "--rest_api_port=8501"])
    assert s.models == [
        ModelSource(str(base / "10"), "first", 10),
        ModelSource(str(tmp_path / "other" / "3"), "second", 3),
    ]


def test_batching_flags_set_the_batcher(base, tmp_path):
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\n"
                      "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 40 }\n")  # fmt: skip
    s = parse([f"--model_base_path={base}", "--enable_batching", f"--batching_parameters_file={params}"])
    assert (s.max_batch, s.batch_timeout_ms, s.workers, s.max_queue) == (16, 2.0, 2, 640)
    assert parse([f"--model_base_path={base}", "--enable_batching=true"]).batch_timeout_ms == 5.0
    assert parse([f"--model_base_path={base}"]).batch_timeout_ms == 0.0  # TF Serving does not wait to batch
    params.write_text("max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n")
    with pytest.raises(InputError, match="allowed_batch_sizes"):
        parse([f"--model_base_path={base}", "--enable_batching", f"--batching_parameters_file={params}"])


def test_tuning_flags_are_ignored_with_a_note(base):
    notes = []
    s = parse([f"--model_base_path={base}", "--tensorflow_intra_op_parallelism=4", "--enable_model_warmup", "true",
               "--file_system_poll_wait_seconds", "1", "--port=9000"], notes.append)  # fmt: skip
    assert s.grpc_port == 9000 and len(notes) == 3
    assert "--file_system_poll_wait_seconds is ignored: versions are read at start-up" in notes[2]


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--ssl_config_file=x"], "--ssl_config_file is not supported: TLS is not served"),
        (["--monitoring_config_file", "x"], "Prometheus metrics are always at /metrics"),
        (["--model_nam=m"], "unknown flag --model_nam"),
        (["--bogus"], "unknown flag --bogus"),
        (["stray"], "unexpected argument 'stray'"),
        (["-port=1"], "unexpected argument '-port=1'"),
        ([], "give --model_base_path"),
        (["--port=7", "--rest_api_port=7"], "must differ"),
        (["--port=70000"], "not a port number"),
        (["--rest_api_timeout_in_ms=0"], "must be positive"),
    ],
)
def test_what_is_not_supported_fails_with_a_message(base, argv, expect):
    with pytest.raises(InputError, match=re.escape(expect)):
        parse(argv + ([f"--model_base_path={base}"] if argv else []))


def test_folders_that_are_not_version_folders_are_refused(tmp_path, base):
    with pytest.raises(InputError, match="is not a folder"):
        parse([f"--model_base_path={tmp_path / 'missing'}"])
    export = fake_export(tmp_path / "flat")
    with pytest.raises(InputError, match="holds no numbered version folders .*it is an export itself"):
        parse([f"--model_base_path={export}"])
    (base / "11").mkdir()  # the newest is not an export
    with pytest.raises(InputError, match="11 is not an export of inception-hub"):
        parse([f"--model_base_path={base}"])
    config = tmp_path / "c.config"
    with pytest.raises(InputError, match="not both"):
        parse([f"--model_base_path={base}", f"--model_config_file={config}"])
    for text, expect in [
        ("model_config_list { config { name: 'a' base_path: 'x' logging_config {} } }", "logging_config"),
        ("model_config_list { }", "lists no model"),
        ("model_config_list { config { name: 'a' } }", "needs a name and a base_path"),
        (f"model_config_list {{ config {{ name: 'a' base_path: '{base}' model_version_policy {{ all {{}} }} }} }}",
         "one version is served per model"),
        (f"model_config_list {{ config {{ name: 'a' base_path: '{base}' }} config {{ name: 'a' base_path: '{base}' "
         "} }", "listed twice"),
        (f"model_config_list {{ config {{ name: 'a' base_path: '{base}' model_version_policy {{ specific "
         "{ versions: 5 } } } }", "has no version 5; it has 1, 2, 10, 11"),
    ]:  # fmt: skip
        config.write_text(text)
        with pytest.raises(InputError, match=re.escape(expect)):
            parse([f"--model_config_file={config}"])
    with pytest.raises(InputError, match="cannot read --model_config_file"):
        parse([f"--model_config_file={tmp_path / 'none.config'}"])


def test_the_command_exits_2_with_one_line(capsys, base):
    assert model_server.main(["--ssl_config_file=x", f"--model_base_path={base}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inception-hub-model-server: error: --ssl_config_file") and len(err.splitlines()) == 1
    assert model_server.main(["--version"]) == 0
    assert "TensorFlow Serving's command line" in capsys.readouterr().out


# Running the real command -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(checkpoints, tmp_path_factory):
    """Version folders of ONNX exports: m/1 classifies, m/2 gives feature vectors."""
    from inception_hub.export import export

    root = tmp_path_factory.mktemp("models")
    ckpt = checkpoints["inception_v1", "v2"]
    export("inception_v1/classification/5", root / "m" / "1", ckpt, format="onnx", progress=False)
    export("inception_v1/feature_vector/5", root / "m" / "2", ckpt, format="onnx", progress=False)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Command:
    """`inception-hub-model-server ARGS` in a process of its own, until it says it serves."""

    def __init__(self, args: list[str]) -> None:
        cmd = [sys.executable, "-m", "inception_hub.cli.model_server", "--host=127.0.0.1", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.line = ""
        reader = threading.Thread(target=lambda: setattr(self, "line", self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(120)
        assert self.line.startswith("serving"), (self.line, self.proc.poll())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.kill()


def model_ready(grpc_target: str, name: str, version: str = "") -> bool:
    request, response = ours.SERVICES[ours.INFERENCE]["ModelReady"]
    call = grpc.insecure_channel(grpc_target).unary_unary(
        "/inference.GRPCInferenceService/ModelReady",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )
    return call(request(name=name, version=version), timeout=30).ready


@pytest.mark.slow
def test_kserves_tf_serving_runtime_arguments_start_the_server(exports):
    rest, grpc_port = free_port(), free_port()
    server = Command(["--model_name=m", f"--port={grpc_port}", f"--rest_api_port={rest}",
                      f"--model_base_path={exports / 'm'}", "--rest_api_timeout_in_ms=60000"])  # fmt: skip
    try:
        assert "serving m (version 2)" in server.line
        url = f"http://127.0.0.1:{rest}"
        status = json.loads(http("GET", f"{url}/v1/models/m")[1])
        assert status["model_version_status"][0]["version"] == "2"
        meta = json.loads(http("GET", f"{url}/v2/models/m")[1])
        assert meta["versions"] == ["2"] and [o["name"] for o in meta["outputs"]] == ["feature_vector"]
        body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 32, 32, 3], "data": [0.5] * 3072}]}
        code, answer = http("POST", f"{url}/v2/models/m/versions/2/infer", body)
        assert code == 200 and json.loads(answer)["outputs"][0]["shape"] == [1, 1024]
        assert http("GET", f"{url}/v2/models/m/versions/1")[0] == 404
        assert model_ready(f"127.0.0.1:{grpc_port}", "m", "2") and not model_ready(f"127.0.0.1:{grpc_port}", "m", "1")
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_model_config_file_with_two_models_serves_both(exports, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
  config {{ name: "features" base_path: "{exports / "m"}" model_platform: "tensorflow" }}
  config {{ name: "classes" base_path: "{exports / "m"}" model_platform: "tensorflow"
           model_version_policy {{ specific {{ versions: 1 }} }} }}
}}""")
    grpc_port = free_port()
    server = Command([f"--model_config_file={config}", f"--port={grpc_port}"])  # TF Serving's default: no REST
    try:
        assert "REST" not in server.line
        target = f"127.0.0.1:{grpc_port}"
        assert model_ready(target, "features", "2") and model_ready(target, "classes", "1")
        request, response = ours.SERVICES[ours.INFERENCE]["ModelMetadata"]
        call = grpc.insecure_channel(target).unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )
        assert [o.name for o in call(request(name="classes"), timeout=30).outputs] == ["logits", "feature_vector"]
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_the_real_command_refuses_unknown_flags_before_loading(exports):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "inception_hub.cli.model_server",
            "--model_name=m",
            f"--model_base_path={exports / 'm'}",
            "--grpc_socket_path=/tmp/s",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == (
        "inception-hub-model-server: error: --grpc_socket_path is not supported: gRPC listens on --port only"
    )
