"""Watchdog of a local Ray cluster: stops what the cluster leaves running once its driver is gone.

A driver killed outright (kill -9) takes Ray's GCS and raylet with it, but the dashboard and
runtime-env agents live on for minutes. `connect` starts this file as its own process, in its own
session so that the kill does not reach it: `python reaper.py DRIVER_PID RAY_PACKAGE_DIR`.

It follows the process tree rather than a mark in the environment, because Ray does not pass its
driver's environment to every service. Every half second it records the driver's children that
run Ray's code and everything below them (with their start times, so a reused pid is never hit).
When the driver dies it stops what it recorded and exits; when those services end while the
driver lives (`ray.shutdown()`), it stops any stragglers and exits. Standard library only: it
must start in milliseconds and import nothing of the package.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

POLL_S = 0.5
GRACE_S = 1.0


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def alive(pid: int, start: int | None = None) -> bool:
    """Whether a process runs (a zombie is dead: only its exit status waits to be collected),
    and is the one that started at `start` when that is given."""
    stat = _stat(pid)
    return stat is not None and start in (None, stat[1]) and stat[2] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cluster_processes(driver: int, ray_dir: str) -> tuple[dict[int, int], dict[int, int]]:
    """pid -> start time of the driver's children that run Ray's code (the roots), and of
    the roots with everything below them."""
    children: dict[int, list[int]] = defaultdict(list)
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children[stat[0]].append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    roots = {pid: starts[pid] for pid in children[driver] if pid != os.getpid() and ray_dir in _cmdline(pid)}
    found: dict[int, int] = {}
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in found:
            found[pid] = starts[pid]
            todo.extend(children[pid])
    return roots, found


def stop(processes: dict[int, int]) -> list[int]:
    """SIGTERM what is still alive, SIGKILL what outlives the grace period. Returns the pids hit."""
    hit = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        running = [pid for pid, start in processes.items() if alive(pid, start)]
        for pid in running:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
            if pid not in hit:
                hit.append(pid)
        deadline = time.monotonic() + GRACE_S
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            if not any(alive(pid, processes[pid]) for pid in running):
                return hit
            time.sleep(0.1)
    return hit


def watch(driver: int, ray_dir: str) -> None:
    driver_stat = _stat(driver)
    if driver_stat is None:
        return
    recorded: dict[int, int] = {}
    roots: dict[int, int] = {}
    while True:
        if not alive(driver, driver_stat[1]):
            break
        current_roots, current = cluster_processes(driver, ray_dir)
        recorded = {pid: s for pid, s in {**recorded, **current}.items() if alive(pid, s)}
        roots.update(current_roots)
        if roots and not any(alive(pid, s) for pid, s in roots.items()):
            break  # the driver shut its cluster down
        time.sleep(POLL_S)
    stop(recorded)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
