"""The serving core both protocols share: model lookup, input checks, limits, batching, metrics.

REST and gRPC only translate their wire formats into `predict` calls and `ServingError`s back
into status codes, so both behave the same.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import ctypes.util
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..batch import decode
from ..errors import InputError
from ..inputs import check_images
from .batcher import Batcher, Overloaded, ShuttingDown
from .models import ServedModel, Signature

T = TypeVar("T")


class ServingError(Exception):
    """An error with its REST status and gRPC code."""

    http_status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error(name: str, http_status: int, grpc_code: str, doc: str) -> type[ServingError]:
    return type(name, (ServingError,), {"http_status": http_status, "grpc_code": grpc_code, "__doc__": doc})


NotFound = _error("NotFound", 404, "NOT_FOUND", "No such model, version or signature.")
InvalidArgument = _error("InvalidArgument", 400, "INVALID_ARGUMENT", "A request the server cannot run.")
TooLarge = _error("TooLarge", 413, "INVALID_ARGUMENT", "A request over the size limits.")
ResourceExhausted = _error("ResourceExhausted", 429, "RESOURCE_EXHAUSTED", "The queue is full: back off, retry.")
DeadlineExceeded = _error("DeadlineExceeded", 504, "DEADLINE_EXCEEDED", "No answer within the request timeout.")
Unavailable = _error("Unavailable", 503, "UNAVAILABLE", "The server is shutting down.")
UnsupportedMediaType = _error("UnsupportedMediaType", 415, "INVALID_ARGUMENT", "A body encoding not accepted.")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_body_bytes: int = 64 << 20
    max_images: int = 64  # per request
    max_pixels: int = 40_000_000  # per decoded image: decompression bombs stop here
    #: Per image sent as a float array, which runs at the size it comes in. Larger inputs cost
    #: compute the network gains little from: send them encoded, and the server resizes them.
    max_input_pixels: int = 1 << 20
    timeout_s: float = 30.0  # per request, queueing included
    max_queue: int = 512  # images waiting per model output, beyond which requests get 429
    #: Request bodies being read, parsed, decoded or run at once; past it requests get 429
    #: before their body is read. Memory stays within a small multiple of it (see README).
    max_inflight_bytes: int = 64 << 20


_libc = None


def _release_memory() -> None:
    """Give freed heap back to the system once the server has been idle for a second: after a
    burst of large requests, glibc would otherwise keep gigabytes of freed arenas."""
    global _libc
    if _libc is False:
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        _libc = False


class Metrics:
    """Prometheus metrics in a registry of the server's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inception_hub_requests",
            "Requests by protocol, model and result code",
            ["protocol", "model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inception_hub_request_latency_seconds",
            "Request latency",
            ["protocol"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "inception_hub_batch_size",
            "Images per model execution",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.queue_depth = Gauge(
            "inception_hub_queue_depth", "Images waiting to be batched", ["model"], registry=self.registry
        )


class ServingCore:
    def __init__(
        self,
        models: list[ServedModel],
        *,
        max_batch: int = 32,
        batch_timeout_ms: float = 5.0,
        workers: int = 1,
        limits: Limits | None = None,
    ) -> None:
        self.models = {m.name: m for m in models}
        self.max_batch = max_batch
        self.batch_timeout_ms = batch_timeout_ms
        self.workers = workers
        self.limits = limits or Limits()
        self.metrics = Metrics()
        self.inference = ThreadPoolExecutor(workers, thread_name_prefix="inference")
        self.decoding = ThreadPoolExecutor(2, thread_name_prefix="decode")
        self.batchers: dict[tuple[str, str], Batcher] = {}
        self.draining = False
        self.inflight_bytes = 0
        self.active = 0  # admitted requests not yet answered
        self._idle = asyncio.Event()

    async def start(self) -> None:
        """Create the batchers on the running event loop."""
        for model in self.models.values():
            for output, fn in model.compute.items():
                self.batchers[model.name, output] = Batcher(
                    fn,
                    self.inference,
                    max_batch=self.max_batch,
                    timeout_ms=self.batch_timeout_ms,
                    max_queue=self.limits.max_queue,
                    workers=self.workers,
                    on_batch=self.metrics.batch_size.labels(model.name).observe,
                )
            self.metrics.queue_depth.labels(model.name).set_function(
                lambda name=model.name: sum(b.queue_depth for (m, _), b in self.batchers.items() if m == name)
            )

    async def close(self) -> None:
        """Graceful shutdown: refuse new requests at once (503 / UNAVAILABLE), let the admitted
        ones finish, then close the batchers and the pools, which nothing can reach any more."""
        self.draining = True
        while self.active:
            self._idle.clear()
            await self._idle.wait()
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.inference.shutdown(wait=False)
        self.decoding.shutdown(wait=False)

    # Lookups ------------------------------------------------------------------------------------

    def model(self, name: str, version: str | int | None = None) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise NotFound(
                f"Servable not found for request: Latest({name})"
                if version is None
                else f"Servable not found for request: Specific({name}, {version})"
            )
        if version not in (None, "", 0) and str(version) != str(model.version):
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return model

    def signature(self, model: ServedModel, name: str | None) -> Signature:
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("signature_name must be a string")
        name = name or "serving_default"
        sig = model.signatures.get(name)
        if sig is None:
            raise InvalidArgument(
                f"model {model.name} has no signature {name!r}; it has {', '.join(sorted(model.signatures))}"
            )
        return sig

    # Inputs -------------------------------------------------------------------------------------

    def check_array(self, model: ServedModel, x: np.ndarray) -> np.ndarray:
        """The module input contract and this server's limits, before any queueing."""
        try:
            return check_images(
                x,
                name=model.name,
                arch=model.module.spec.arch,
                fixed_size=model.fixed_size,
                max_images=self.limits.max_images,
                max_pixels=self.limits.max_input_pixels,
            )
        except InputError as e:
            raise InvalidArgument(str(e)) from None

    def check_declared(self, model: ServedModel, dims: list[int]) -> None:
        """A float tensor's declared shape against the limits, before anything is allocated for it."""
        if len(dims) != 4 or dims[3] != 3 or min(dims) < 1:
            raise InvalidArgument(f"images must have shape [N, H, W, 3] (RGB, channels last), got {dims}")
        n, h, w = dims[:3]
        if n > self.limits.max_images:
            raise TooLarge(f"a request holds at most {self.limits.max_images} images, got {n}")
        if h * w > self.limits.max_input_pixels:
            raise TooLarge(
                f"images of {h}x{w} exceed the limit of {self.limits.max_input_pixels} pixels for float arrays; "
                f"resize them (the network was trained at {model.image_size[0]}x{model.image_size[1]}) or send "
                "them encoded (JPEG/PNG bytes), which the server resizes"
            )

    async def decode(self, model: ServedModel, encoded: list[bytes]) -> np.ndarray:
        """Decode JPEG/PNG bytes and apply the eval preprocessing, off the event loop."""
        if not 1 <= len(encoded) <= self.limits.max_images:
            raise InvalidArgument(f"a request holds 1 to {self.limits.max_images} images, got {len(encoded)}")
        loop = asyncio.get_running_loop()
        size, max_pixels = model.image_size, self.limits.max_pixels
        crop = model.module.spec.card.central_fraction

        def one(data: bytes):
            return decode(data, size, central_fraction=crop, max_pixels=max_pixels)

        images = await asyncio.gather(*(loop.run_in_executor(self.decoding, one, d) for d in encoded))
        for image in images:
            if isinstance(image, str):
                raise InvalidArgument(f"cannot decode image: {image}")
        return np.stack(images)

    @staticmethod
    def b64(value: str) -> bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidArgument("a b64 value is not valid base64") from None

    # Prediction ---------------------------------------------------------------------------------

    async def admitted(self, model: ServedModel, nbytes: int, work: Callable[[], Awaitable[T]]) -> T:
        """Run one request's whole work (reading its body, parsing, decoding, queueing and
        inference) within the request timeout, once admitted. A request is refused before any of
        that work: while draining (503), when the model's queue is full or when the request bodies
        already in flight would pass `max_inflight_bytes` (429)."""
        self.check_admission(model, nbytes)
        self.inflight_bytes += nbytes
        self.active += 1
        try:
            return await asyncio.wait_for(work(), self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no result within {self.limits.timeout_s:g}s") from None
        finally:
            self.inflight_bytes -= nbytes
            self.active -= 1
            if not self.active:
                self._idle.set()
                asyncio.get_running_loop().call_later(1.0, self._trim_when_idle)

    def check_admission(self, model: ServedModel, nbytes: int) -> None:
        """What `admitted` checks, for a request of `nbytes` (also asked before a client that
        sent `Expect: 100-continue` sends its body)."""
        if self.draining:
            raise Unavailable("the server is shutting down")
        if nbytes > self.limits.max_body_bytes:
            raise TooLarge(f"request body larger than {self.limits.max_body_bytes} bytes")
        for (name, _), batcher in self.batchers.items():
            if name == model.name and batcher.queue_depth >= self.limits.max_queue:
                raise ResourceExhausted(f"queue full ({batcher.queue_depth} images waiting); retry later")
        if self.inflight_bytes and self.inflight_bytes + nbytes > self.limits.max_inflight_bytes:
            raise ResourceExhausted(f"busy ({self.inflight_bytes >> 20} MiB of requests in progress); retry later")

    def _trim_when_idle(self) -> None:
        if not self.active:
            _release_memory()

    async def run(self, model: ServedModel, sig: Signature, count: int, images: Awaitable[np.ndarray]) -> np.ndarray:
        """Hold queue room for `count` images (429 when there is none) before `images` decodes
        them, then batch them: decoded images never wait outside the bounded queue."""
        batcher = self.batchers[model.name, sig.output]
        try:
            reserved = batcher.reserve(count)
        except Overloaded as e:
            images.close()  # never started
            raise ResourceExhausted(str(e)) from None
        except ShuttingDown as e:
            images.close()
            raise Unavailable(str(e)) from None
        try:
            x = await images
        except BaseException:
            batcher.release(reserved)
            raise
        if len(x) != count:  # the decoder's count is the truth; the queue check in submit covers it
            batcher.release(reserved)
            reserved = 0
        return await self.predict(model, sig, x, reserved)

    async def predict(self, model: ServedModel, sig: Signature, images: np.ndarray, reserved: int = 0) -> np.ndarray:
        """Queue checked images for batching (within `admitted`, which bounds the time and
        refuses new requests while draining)."""
        batcher = self.batchers[model.name, sig.output]
        try:
            x = self.check_array(model, images)
        except InvalidArgument:
            batcher.release(reserved)
            raise
        try:
            return await batcher.submit(x, reserved)
        except Overloaded as e:  # refused before queueing: the reservation is given back
            batcher.release(reserved)
            raise ResourceExhausted(str(e)) from None
        except ShuttingDown as e:
            batcher.release(reserved)
            raise Unavailable(str(e)) from None
        except ValueError as e:  # the module's own input checks (e.g. too small for the network)
            raise InvalidArgument(str(e)) from None

    def observe(self, protocol: str, model: str, code: str, started: float) -> None:
        self.metrics.requests.labels(protocol, model, code).inc()
        self.metrics.latency.labels(protocol).observe(time.perf_counter() - started)
