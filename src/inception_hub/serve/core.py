"""The serving core both protocols share: model lookup, input checks, limits, batching, metrics.

REST and gRPC only translate their wire formats into `predict` calls and `ServingError`s back
into status codes, so both behave the same.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..batch import decode
from ..errors import InputError
from ..inputs import check_images
from .batcher import Batcher, Expired, Overloaded, ShuttingDown
from .metrics import Metrics
from .models import ServedModel, Signature
from .parsing import BodyParser, WorkerDied, release_memory

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
RequestTimeout = _error("RequestTimeout", 408, "DEADLINE_EXCEEDED", "A request body that arrives too slowly.")
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
    #: Bytes of request bodies held at once (counted as they arrive, until the answer); a request
    #: that would pass it gets 429. Memory stays within a small multiple of it (see README).
    max_inflight_bytes: int = 64 << 20
    #: Bytes per second a body must average once it has had `BODY_GRACE_S`; slower ones get 408,
    #: so a client trickling a large body cannot hold a connection and its bytes for long. 0: none.
    min_body_rate: int = 16 << 10


#: Seconds a body may take before `min_body_rate` applies (a slow start, a round trip or two).
BODY_GRACE_S = 5.0


def has_bool(items: list) -> bool:
    """Whether nested JSON lists hold true or false anywhere (numpy would read them as 1 and 0
    among numbers, so pixels in JSON are refused when they do)."""
    stack = [items]
    while stack:
        x = stack.pop()
        if type(x) is list:
            stack.extend(x)
        elif type(x) is bool:
            return True
    return False


class Admission:
    """An admitted request: when its answer is due (event-loop time) and how many bytes of it
    the server holds."""

    __slots__ = ("deadline", "held")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.held = 0


#: The admission of the request the running task serves (set by `ServingCore.admitted`).
_current: ContextVar[Admission | None] = ContextVar("admission", default=None)


def _retrieved(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


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
        self.parser = BodyParser(self.decoding)
        self.batchers: dict[tuple[str, str], Batcher] = {}
        self.draining = False
        self.inflight_bytes = 0
        self.active = 0  # admitted requests not yet answered
        self._idle = asyncio.Event()

    async def start(self) -> None:
        """Create the batchers on the running event loop, and start the parsing process."""
        self.parser.start()
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
        ones finish (each within its deadline), then close the batchers and the pools, which
        nothing can reach any more (the pools also when the wait is cut short)."""
        self.draining = True
        try:
            while self.active:
                self._idle.clear()
                await self._idle.wait()
            await asyncio.gather(*(b.close() for b in self.batchers.values()))
        finally:
            self.parser.close()
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

    # Admission --------------------------------------------------------------------------------

    async def admitted(
        self, model: ServedModel | None, work: Callable[[], Awaitable[T]], *, declared: int = 0, held: int = 0
    ) -> T:
        """Run one request's whole work (reading its body, parsing, decoding, queueing and
        inference) within the request timeout, once `check_admission` lets it in. `held`: bytes
        of the request already in memory (a gRPC message); a REST body is counted by `hold` as it
        arrives, so a body that has not arrived holds nothing."""
        self.check_admission(model, declared)
        admission = Admission(asyncio.get_running_loop().time() + self.limits.timeout_s)
        self.active += 1
        try:
            if held:
                self.hold(held, admission)
            token = _current.set(admission)
            task = asyncio.ensure_future(work())  # the task starts with the admission in its context
            _current.reset(token)
            # Its error is read even when the request was cancelled first (its client left), so
            # that a lost connection is not logged as an error nobody retrieved.
            task.add_done_callback(_retrieved)
            return await asyncio.wait_for(task, self.limits.timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no result within {self.limits.timeout_s:g}s") from None
        finally:
            self.inflight_bytes -= admission.held
            self.active -= 1
            if not self.active:
                self._idle.set()
                asyncio.get_running_loop().call_later(1.0, self._trim_when_idle)

    def check_admission(self, model: ServedModel | None, declared: int = 0) -> None:
        """Refuse a request from its headers, before any work: while draining (503), a declared
        body over `max_body_bytes` (413), a full queue of `model` (429), or when the bodies held
        already fill `max_inflight_bytes` or leave no room for the `declared` size (429). Also
        asked before a client that sent `Expect: 100-continue` sends its body."""
        if self.draining:
            raise Unavailable("the server is shutting down")
        if declared > self.limits.max_body_bytes:
            raise TooLarge(f"request body larger than {self.limits.max_body_bytes} bytes")
        if model is not None:
            self.check_queue(model)
        if self.inflight_bytes and self.inflight_bytes + max(declared, 1) > self.limits.max_inflight_bytes:
            raise ResourceExhausted(f"busy ({self.inflight_bytes >> 20} MiB of requests in progress); retry later")

    def check_queue(self, model: ServedModel) -> None:
        for (name, _), batcher in self.batchers.items():
            if name == model.name and batcher.queue_depth >= self.limits.max_queue:
                raise ResourceExhausted(f"queue full ({batcher.queue_depth} images waiting); retry later")

    def hold(self, nbytes: int, admission: Admission | None = None) -> None:
        """Count `nbytes` more of the running request as held (its body, as it arrives): 429 when
        that would pass `max_inflight_bytes` while other requests hold bytes too (one request up
        to `max_body_bytes` always gets through alone)."""
        admission = admission or _current.get()
        if admission is None:
            raise RuntimeError("hold() is for the work of an admitted request")
        others = self.inflight_bytes - admission.held
        if others and self.inflight_bytes + nbytes > self.limits.max_inflight_bytes:
            raise ResourceExhausted(f"busy ({self.inflight_bytes >> 20} MiB of requests in progress); retry later")
        admission.held += nbytes
        self.inflight_bytes += nbytes

    def busy(self) -> str | None:
        """Why the server would refuse any request now (for /healthz), or None."""
        if self.draining:
            return "shutting down"
        if self.inflight_bytes >= self.limits.max_inflight_bytes:
            return f"{self.inflight_bytes >> 20} MiB of request bodies held, the limit (--max-inflight-mb)"
        full = {name for (name, _), b in self.batchers.items() if b.queue_depth >= self.limits.max_queue}
        if self.models and full >= set(self.models):
            return f"every model's queue is full ({self.limits.max_queue} images, --max-queue)"
        return None

    def _trim_when_idle(self) -> None:
        if not self.active:
            release_memory()

    async def parse(self, parse: Callable[[bytes], T], raw: bytes) -> T:
        """`parse(raw)` off the event loop (see `parsing`)."""
        try:
            return await self.parser(parse, raw)
        except WorkerDied as e:
            raise Unavailable(str(e)) from None

    # Prediction ---------------------------------------------------------------------------------

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
        admission = _current.get()
        try:
            return await batcher.submit(x, reserved, admission.deadline if admission else math.inf)
        except Expired as e:  # it could not have finished in time: not run
            raise DeadlineExceeded(str(e)) from None
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
