"""Request bodies parsed where they cannot stall the server.

`json.loads` and the conversion of nested float lists hold the interpreter lock for the whole
call (seconds for tens of MB of floats), and a thread does not help: the event loop waits for
that lock, so every route (even /healthz) would wait too. Bodies above `IN_PROCESS_BYTES` are
parsed in worker processes instead (plain subprocesses of this interpreter, so nothing of the
caller's main module runs again in them), which hand back only compact results (a float32
array, the bytes of encoded photos): nothing large crosses back as Python objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Bodies up to this size are parsed on a thread: tens of milliseconds of held lock at most.
IN_PROCESS_BYTES = 256 << 10
#: Worker processes: parsing runs on both cores of a small machine while the loop stays free.
WORKERS = 2

_HEADER = struct.Struct("<QQ")  # the lengths of what follows: a pickle, then raw bytes
_libc = None


class WorkerDied(Exception):
    """A parsing process ended (killed, out of memory?); the next body gets a new one."""


def release_memory() -> None:
    """Give freed heap back to the system: after large requests glibc would otherwise keep
    gigabytes of freed arenas."""
    global _libc
    if _libc is False:
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        _libc = False


def _read_exactly(stream, n: int) -> bytearray:
    out = bytearray(n)
    view, got = memoryview(out), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise EOFError
        got += k
    return out


def worker() -> None:
    """A parsing process: reads (parse function, body) frames from stdin, answers (ok, result) frames."""
    # The server decides when its workers stop (it closes their stdin): a Ctrl-C or a SIGTERM to
    # the whole process group must not end them first, or print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    source = sys.stdin.buffer
    while True:
        try:
            n_fn, n_raw = _HEADER.unpack(_read_exactly(source, _HEADER.size))
            parse = pickle.loads(_read_exactly(source, n_fn))
            raw = _read_exactly(source, n_raw)
        except EOFError:
            return
        try:
            answer = pickle.dumps((True, parse(raw)), protocol=5)
        except Exception as e:
            try:
                answer = pickle.dumps((False, e), protocol=5)
            except Exception:  # an error that does not pickle
                answer = pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}")), protocol=5)
        del raw
        release_memory()
        out.write(_HEADER.pack(len(answer), 0))
        out.write(answer)
        out.flush()


class _Process:
    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding inception_hub
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from inception_hub.serve.parsing import worker; worker()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.alive = True

    def call(self, parse: Callable[[bytes], T], raw: bytes) -> T:
        fn = pickle.dumps(parse, protocol=5)
        try:
            self.proc.stdin.write(_HEADER.pack(len(fn), len(raw)))
            self.proc.stdin.write(fn)
            self.proc.stdin.write(raw)
            self.proc.stdin.flush()
            n, _ = _HEADER.unpack(_read_exactly(self.proc.stdout, _HEADER.size))
            ok, value = pickle.loads(_read_exactly(self.proc.stdout, n))
        except (OSError, EOFError, ValueError):
            self.close()
            self.proc.kill()
            raise WorkerDied("the request parser stopped (out of memory?) and restarts; retry") from None
        if ok:
            return value
        raise value

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the worker's cue to exit, once done with a body it may be parsing


class BodyParser:
    """Runs a body's parse function on `threads` when the body is small, in a worker process otherwise."""

    def __init__(self, threads: Executor, workers: int = WORKERS) -> None:
        self.threads = threads
        self.workers = workers
        self._idle: queue.SimpleQueue[_Process] | None = None
        self._callers: ThreadPoolExecutor | None = None
        self._all: list[_Process] = []
        self._closed = False

    def start(self) -> None:
        """Start the workers now (each imports the package, about a second), not on the first large body."""
        self._idle = queue.SimpleQueue()
        self._callers = ThreadPoolExecutor(self.workers, thread_name_prefix="parse")
        for _ in range(self.workers):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Process:
        p = _Process()
        self._all = [q for q in self._all if q.alive] + [p]
        return p

    def _call(self, parse: Callable[[bytes], T], raw: bytes) -> T:
        process = self._idle.get()
        try:
            return process.call(parse, raw)
        finally:
            self._idle.put(process if process.alive or self._closed else self._spawn())

    async def __call__(self, parse: Callable[[bytes], T], raw: bytes) -> T:
        """`parse(raw)`: WorkerDied if its worker process died meanwhile."""
        loop = asyncio.get_running_loop()
        if len(raw) <= IN_PROCESS_BYTES or self._callers is None:
            return await loop.run_in_executor(self.threads, parse, raw)
        return await loop.run_in_executor(self._callers, self._call, parse, raw)

    def close(self) -> None:
        """Stop the workers (a parse still running ends with WorkerDied)."""
        self._closed = True
        if self._callers is not None:
            self._callers.shutdown(wait=False, cancel_futures=True)
            self._callers = None
        for p in self._all:
            p.close()
        self._all = []
