"""A network definition cut into its end-point blocks, without running it on any framework.

A `Recorder` runs the definition on shapes, noting each primitive call with its scope and
variables, and cuts the run into blocks at TF-Slim's end points: `Conv2d_1a_7x7`,
`MaxPool_2a_3x3`, ..., `Mixed_5c`, `global_pool`, `Logits` (and `Repeat`, `Repeat_1`, ... for
Inception-ResNet-V2's residual stacks). The Keras layers replay these blocks; fine-tuning "from an
end point" uses the same order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import ARCHITECTURES, NUM_CLASSES, build
from .layers import Shape, ShapeBuilder, pair


@dataclass(frozen=True)
class Sym:
    """A recorded tensor: the id of the call that made it (-1: the network input) and its shape."""

    id: int
    shape: Shape

    # The definitions read static sizes off their tensors (the aux head's kernel size).
    @property
    def height(self) -> int | None:
        return self.shape.height

    @property
    def width(self) -> int | None:
        return self.shape.width

    @property
    def channels(self) -> int:
        return self.shape.channels


@dataclass(frozen=True)
class Call:
    """One primitive call: what it does, on which tensors, with which variables (TF-Slim names)."""

    id: int
    kind: str
    inputs: tuple[int, ...]
    params: dict
    variables: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass
class BlockPlan:
    name: str
    calls: list[Call] = field(default_factory=list)

    @functools.cached_property
    def input(self) -> int:
        made = {c.id for c in self.calls}
        outside = {i for c in self.calls for i in c.inputs if i not in made}
        if len(outside) != 1:
            raise ValueError(f"block {self.name} reads {len(outside)} tensors from outside; a block takes one")
        return outside.pop()

    @property
    def output(self) -> int:
        return self.calls[-1].id


class Recorder(ShapeBuilder):
    """Runs a definition on shapes, recording its calls and cutting them into end-point blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.blocks: list[BlockPlan] = []
        self.endpoint_ids: dict[str, int] = {}
        self._open: BlockPlan | None = None

    def _record(self, kind: str, inputs: list[Sym], run, **params) -> Sym:
        # The block a call belongs to: the first scope under the network's, else the end point
        # that names it next (a top-level pool, the global pool).
        key = self._scopes[1] if len(self._scopes) > 1 else params.get("scope")
        if self._open is not None and self._open.name != key and (self._open.name is not None or key is not None):
            self._close()
        if self._open is None:
            self._open = BlockPlan(key)
        before = len(self.variables)
        shape = run(*[s.shape for s in inputs])
        names = tuple((v.name, v.shape) for v in self.variables[before:])
        call = Call(len(self.calls), kind, tuple(s.id for s in inputs), params, names)
        self.calls.append(call)
        self._open.calls.append(call)
        return Sym(call.id, shape)

    def _close(self) -> None:
        if self._open is not None and self._open.calls:
            if self._open.name is None:
                raise ValueError("calls outside any scope must be named by an end point")
            self.blocks.append(self._open)
        self._open = None

    def end_point(self, name, net):
        if self._open is not None and self._open.name is None:
            self._open.name = name
        self.endpoint_ids[name] = net.id
        return net

    def conv2d(self, x, filters, kernel, *, scope, stride=1, padding="SAME", batch_norm=True, activation=True):
        params = dict(scope=scope, stride=stride, padding=padding, batch_norm=batch_norm, activation=activation)

        def run(s):
            return ShapeBuilder.conv2d(self, s, filters, kernel, **params)

        return self._record("conv2d", [x], run, **params)

    def max_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self._record(
            "max_pool2d", [x], lambda s: ShapeBuilder.max_pool2d(self, s, kernel, stride=stride, padding=padding),
            kernel=pair(kernel), stride=stride, padding=padding,
        )  # fmt: skip

    def avg_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self._record(
            "avg_pool2d", [x], lambda s: ShapeBuilder.avg_pool2d(self, s, kernel, stride=stride, padding=padding),
            kernel=pair(kernel), stride=stride, padding=padding,
        )  # fmt: skip

    def concat(self, xs):
        return self._record("concat", list(xs), lambda *s: ShapeBuilder.concat(self, s))

    def residual(self, x, up, *, scale, activation):
        run = lambda a, b: ShapeBuilder.residual(self, a, b, scale=scale, activation=activation)  # noqa: E731
        return self._record("residual", [x, up], run, scale=scale, activation=activation)

    def global_pool(self, x):
        return self._record("global_pool", [x], lambda s: ShapeBuilder.global_pool(self, s))

    def flatten(self, x):
        return self._record("flatten", [x], lambda s: ShapeBuilder.flatten(self, s))

    def dropout(self, x):
        return self._record("dropout", [x], lambda s: s)

    def fully_connected(self, x, units, *, scope, as_conv1x1=False):
        run = lambda s: ShapeBuilder.fully_connected(self, s, units, scope=scope, as_conv1x1=as_conv1x1)  # noqa: E731
        return self._record("fully_connected", [x], run, scope=scope, units=units)


@functools.cache
def _recorded(arch: str) -> Recorder:
    size = ARCHITECTURES[arch].default_image_size
    r = Recorder()
    build(r, arch, Sym(-1, Shape(size, size, 3)), NUM_CLASSES)
    r._close()
    return r


def plan(arch: str) -> tuple[BlockPlan, ...]:
    """The blocks of `arch` (with the classification head, without the aux head), in order."""
    return tuple(_recorded(arch).blocks)


def block_names(arch: str) -> list[str]:
    return [b.name for b in plan(arch)]


def endpoint_blocks(arch: str) -> dict[str, str]:
    """Each end point and the block whose output it is: itself, or, for an end point that only
    names a tensor (Inception-ResNet-V2's `PreAuxLogits`), the block that made it."""
    r = _recorded(arch)
    by_output = {b.output: b.name for b in r.blocks}
    return {name: by_output[i] for name, i in r.endpoint_ids.items() if i in by_output} | {
        b.name: b.name for b in r.blocks
    }


def block_of(variable: str) -> str:
    """The block a checkpoint variable belongs to (`InceptionV1/Mixed_4b/...` -> `Mixed_4b`)."""
    return variable.split("/")[1]
