"""The container and the Kubernetes manifests run the server they name.

No container engine runs on every machine, so the image's own steps are replayed instead: the
Dockerfile's build context (as .dockerignore filters it), its install command into a fresh
virtual environment, its environment, and its ENTRYPOINT and CMD, then its HEALTHCHECK against
the running server. Where `docker info` answers, the image is also built and run. The manifests
are checked against the real server: their commands parse, and their probes and ports are
answered by the server started with their own arguments.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def exec_form(text: str) -> list[str]:
    return json.loads(text) if text.startswith("[") else shlex.split(text)


def build_context(dest: Path) -> Path:
    """The files `docker build .` sends, by .dockerignore's rules (later rules win)."""
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines() if r.strip() and r[0] != "#"]
    for path in ROOT.rglob("*"):
        if not path.is_file() or ".venv" in path.parts or ".git" in path.parts:
            continue
        rel = path.relative_to(ROOT).as_posix()
        keep = True
        for rule in rules:
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            hit = fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/") or fnmatch.fnmatch(rel, pattern + "/*")
            if pattern.startswith("**/"):
                hit = hit or any(fnmatch.fnmatch(part, pattern[3:]) for part in rel.split("/"))
            if hit:
                keep = negate
        if keep:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if get(url) == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def grpc_health(port: int, service: str = "") -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def with_ports(args: list[str], ports: dict[str, int]) -> list[str]:
    """`args` with each port flag's value (`--port 8501` or `--port=8501`) replaced."""
    out = list(args)
    for i, arg in enumerate(out):
        flag, eq, _ = arg.partition("=")
        if flag in ports:
            if eq:
                out[i] = f"{flag}={ports[flag]}"
            else:
                out[i + 1] = str(ports[flag])
    return out


def test_the_manifests_are_kubernetes_objects_with_the_servers_ports():
    deployment, service = yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert ports == {"http": int(args[args.index("--port") + 1]), "grpc": int(args[args.index("--grpc-port") + 1])}
    assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    runtime, *services = yaml.safe_load_all((DEPLOY / "kserve.yaml").read_text())
    assert runtime["kind"] == "ServingRuntime" and {s["kind"] for s in services} == {"InferenceService"}
    assert {s["spec"]["predictor"]["model"]["protocolVersion"] for s in services} == {"v1", "v2"}
    assert all(s["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"] for s in services)
    # The image's CMD is the Deployment's: the manifest runs the image as built.
    docker = dict(instructions(ROOT / "Dockerfile"))
    assert exec_form(docker["CMD"]) == args and exec_form(docker["ENTRYPOINT"]) == ["inception-hub", "serve"]


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory):
    """The image's steps replayed: its build context, its install command in a fresh venv."""
    root = tmp_path_factory.mktemp("image")
    steps = instructions(ROOT / "Dockerfile")
    context = build_context(root / "src")
    assert not (context / ".venv").exists() and (context / "pyproject.toml").is_file()
    run = next(arg for word, arg in steps if word == "RUN" and "pip install" in arg)
    venv = root / "opt"
    command = run.replace("/opt/inception-hub", str(venv)).replace("/src", str(context))
    subprocess.run(["sh", "-c", command.replace("python -m venv", f"{sys.executable} -m venv")], check=True)
    # `pip install .` builds in the source folder: it must leave nothing behind there.
    assert not (context / "build").exists() and not list(context.rglob("*.egg-info"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    for word, arg in steps:
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", arg):
                env[key] = value.replace("$PATH", os.environ["PATH"]).replace("/opt/inception-hub", str(venv))
    env["INCEPTION_HUB_CACHE"] = str(root / "cache")  # the volume
    return venv, env, steps


@pytest.mark.slow
def test_the_images_entry_command_serves_and_its_healthcheck_passes(image_venv, v1_ckpt):
    venv, env, steps = image_venv
    bin_ = venv / "bin"
    # The WEIGHTS build argument's step, with the reference checkpoint for the download.
    subprocess.run(
        [bin_ / "inception-hub", "fetch", "inception_v1", "--from", v1_ckpt, "--no-progress"], env=env, check=True
    )
    docker = dict(steps)
    rest, grpc_port = free_port(), free_port()
    entry = exec_form(docker["ENTRYPOINT"]) + with_ports(
        exec_form(docker["CMD"]), {"--port": rest, "--grpc-port": grpc_port}
    )
    proc = subprocess.Popen(entry, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(f"http://127.0.0.1:{rest}/v1/models/inception_v1", proc)
        check = docker["HEALTHCHECK"].split("CMD", 1)[1].strip().replace("8501", str(rest))
        assert subprocess.run(["sh", "-c", check], env=env).returncode == 0
        # The Deployment's HTTP probes, on the server its arguments start.
        container = yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text()).__next__()
        container = container["spec"]["template"]["spec"]["containers"][0]
        for probe in ("startupProbe", "livenessProbe"):
            assert get(f"http://127.0.0.1:{rest}{container[probe]['httpGet']['path']}") == 200, probe
        # Its readiness probe is Kubernetes' gRPC probe: grpc.health.v1's Check of the whole server.
        assert container["readinessProbe"]["grpc"]["port"] == int(exec_form(docker["CMD"])[-1])
        assert grpc_health(grpc_port, container["readinessProbe"]["grpc"].get("service", "")) == "SERVING"
    finally:
        proc.terminate()
        proc.wait(60)
    kserve_runtime(bin_, env)
    docker_cli = shutil.which("docker")
    if docker_cli and subprocess.run([docker_cli, "info"], capture_output=True).returncode == 0:  # an engine runs
        subprocess.run([docker_cli, "build", "-t", "inception-hub-test", str(ROOT)], check=True)
        print("built the image with docker")


def kserve_runtime(bin_: Path, env: dict) -> None:
    """The ServingRuntime's container command and arguments, as KServe fills them in (the model's
    name, its storage at /mnt/models holding numbered version folders), serve the newest version
    and answer its readiness probe and both protocols' model routes."""
    runtime = next(yaml.safe_load_all((DEPLOY / "kserve.yaml").read_text()))
    container = runtime["spec"]["containers"][0]
    models = Path(env["INCEPTION_HUB_CACHE"]).parent / "mnt-models"
    for version in (1, 2):
        subprocess.run([bin_ / "inception-hub", "export", "inception_v1", models / str(version), "--format", "onnx"],
                       env=env, check=True, capture_output=True)  # fmt: skip
    rest, grpc_port = free_port(), free_port()
    args = [a.replace("{{.Name}}", "inception-v1").replace("/mnt/models", str(models)) for a in container["args"]]
    args = with_ports(args, {"--rest_api_port": rest, "--port": grpc_port})
    assert container["ports"][0]["containerPort"] == int(container["args"][2].split("=")[1])
    proc = subprocess.Popen([bin_ / container["command"][0], *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{rest}{container['readinessProbe']['httpGet']['path']}", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/v2/models/inception-v1", timeout=10) as r:
            assert json.loads(r.read())["versions"] == ["2"]  # the newest
        assert get(f"http://127.0.0.1:{rest}/v1/models/inception-v1") == 200
        assert grpc_health(grpc_port) == "SERVING"
    finally:
        proc.terminate()
        proc.wait(60)
