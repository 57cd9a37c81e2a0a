"""Attaching to a Ray cluster: a local one started for the job, or an existing one."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import InceptionHubError, InputError
from ..quiet import silenced_stderr
from .reaper import alive


def ray_module():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise InceptionHubError("the ray engine needs Ray Data: pip install 'inception-hub[distributed]'") from e
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = False) -> bool:
    """Attach this process to a Ray cluster, unless it already is.

    `address`: None (with `RAY_ADDRESS` unset) starts a local cluster for this process;
    "auto" joins the cluster this machine belongs to (`ray start`); "HOST:PORT" joins that one.
    `quiet` keeps workers' logs off this process's stderr.
    Returns True when this call attached (the caller then owns the `ray.shutdown()`)."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    level = logging.ERROR if quiet else logging.WARNING
    kwargs: dict[str, Any] = {"logging_level": level, "log_to_driver": not quiet}
    if quiet:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(level)
    if address == "local":
        reap_orphans()
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
        # Local workers see this process's settings (cache folder, offline mode).
        env = {k: v for k, v in os.environ.items() if k.startswith("INCEPTION_HUB_")}
        kwargs["runtime_env"] = {"env_vars": env} if env else None
    else:
        if num_cpus is not None:
            raise InputError("num_cpus applies to a local cluster only; an existing cluster has its own")
        _check_reachable(address)
    try:
        # Quiet: Ray's services log to files in its session folder; its C++ start-up notes are
        # not for CLI users.
        with silenced_stderr() if quiet else contextlib.nullcontext(), _loopback(address == "local"):
            ray.init(address=address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        raise InceptionHubError(
            f"cannot reach a Ray cluster at {address}: {e}. Start one with `ray start --head` "
            "and pass the address it prints, or leave --address out to run on a local cluster"
        ) from e
    except Exception as e:  # Ray reports a local start that timed out as a bare Exception
        if address != "local":
            raise
        raise InceptionHubError(
            f"the local Ray cluster did not start: {e} Ray waits 30 s for its services; on a busy "
            "machine, run again when it is quieter, or start a cluster with `ray start --head` and pass "
            "--address auto"
        ) from e
    if address == "local":
        _start_reaper(ray)
    if quiet:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(level)
        ray.data.DataContext.get_current().enable_progress_bars = False
    return True


def _start_reaper(ray) -> subprocess.Popen:
    """Watch this driver's local cluster from a process of its own (see `reaper`), which stops
    Ray's agents within a second of a kill -9 of this process instead of minutes later."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("reaper.py")), str(os.getpid()), os.path.dirname(ray.__file__)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # holds no pipe of the driver's: a reader of its output sees EOF
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # out of reach of a signal sent to the driver's process group
        close_fds=True,
    )


#: Set in the environment of a local cluster's processes: the pid of the driver that started it.
DRIVER_ENV = "INCEPTION_HUB_RAY_DRIVER"


def reap_orphans() -> list[int]:
    """Stop what the local cluster of a driver that died (kill -9) left running, should its
    watchdog have been killed too. Returns the pids stopped."""
    marker = DRIVER_ENV.encode() + b"="
    stopped = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        driver = next((int(v[len(marker) :]) for v in env.split(b"\0") if v.startswith(marker)), None)
        if driver is None or driver == os.getpid() or alive(driver):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(entry.name), signal.SIGKILL)
            stopped.append(int(entry.name))
    return stopped


@contextlib.contextmanager
def _loopback(local: bool):
    """While a local cluster starts, make Ray take 127.0.0.1 as this node's address, so that its
    services (whose ports accept code to run, without authentication) listen on loopback only.
    Ray's own switch for that is RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; the services started now
    inherit it, and this process gets its setting back afterwards."""
    if not local:
        yield
        return
    from ray._private import ray_constants

    before_env = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR)
    before = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[DRIVER_ENV] = str(os.getpid())  # marks the cluster's processes as this driver's
    try:
        yield
    finally:
        os.environ.pop(DRIVER_ENV, None)
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = before_env


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong HOST:PORT; Ray itself would keep retrying for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise InceptionHubError(
            f"cannot reach a Ray cluster at {address}: {e.strerror or e}. Start one with `ray start --head` "
            "and pass the address it prints, or leave --address out to run on a local cluster"
        ) from e
