"""Check the package's house rules from its imports: layers that import only downwards, no import
loops between files, no private name imported across files, and no module over MAX_LINES.

    python tools/check_layers.py          # prints each violation; exit status 1 if any

Every import counts, those inside functions and under TYPE_CHECKING too. The test suite runs
this (tests/test_layers.py), so the layout the README describes stays true.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "inception_hub"
MAX_LINES = 400

#: The floors, bottom first: a module may import its own floor or the ones below. A name is a
#: module or a package (every module inside it), relative to the package; the longest match wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground floor", ("_version", "errors", "atomic", "quiet", "cpu")),
    ("networks", ("nets",)),
    ("cards", ("catalog", "labels")),
    ("preprocessing", ("files", "images", "inputs")),
    ("weights", ("weights",)),
    ("engines", ("engine",)),
    ("the road", ("metadata", "cam", "source")),
    ("module", ("module",)),
    ("batch core", ("batch", "pipeline", "outputs")),
    ("libraries", ("keras", "gradcam", "export", "similar")),
    ("applications", ("accuracy", "tfhub", "finetune", "distributed", "serve")),
    ("command line", ("cli",)),
    ("package face", ("__init__",)),
]


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    return ".".join(parts)  # the package face is "__init__", a subpackage's is "pkg.__init__"


def layer_of(module: str) -> int:
    best, floor = -1, None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, floor = len(name), i
    if floor is None:
        raise SystemExit(f"tools/check_layers.py: {module} is on no floor; add it to LAYERS")
    return floor


def resolve(current: str, level: int, target: str | None) -> str:
    """The absolute module name (relative to the package) an import in `current` names."""
    base = current.split(".")[:-1]  # the package `current` is in
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def as_file(name: str, modules: set[str]) -> str | None:
    """The module file an import lands on: the module itself, or the package's __init__."""
    if name in modules:
        return name
    init = f"{name}.__init__" if name else "__init__"
    return init if init in modules else None


def imports(path: Path, current: str, modules: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken, line) for every import of the package in `path`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("inception_hub"):
                    continue
                base = (node.module or "").removeprefix("inception_hub").lstrip(".")
            else:
                base = resolve(current, node.level, node.module)
            for alias in node.names:
                sub = as_file(f"{base}.{alias.name}" if base else alias.name, modules)
                if sub is not None:  # `from . import module`
                    out.append((sub, [], node.lineno))
                elif (target := as_file(base, modules)) is not None:
                    out.append((target, [alias.name], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("inception_hub"):
                    target = as_file(alias.name.removeprefix("inception_hub").lstrip("."), modules)
                    if target is not None:
                        out.append((target, [], node.lineno))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(package: Path = PACKAGE, root: Path = ROOT) -> list[str]:
    """Every broken rule in `package` (and the sizes of the benchmarks beside it in `root`)."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    modules = set(files)
    problems, graph = [], {m: set() for m in modules}
    for current, path in files.items():
        here = layer_of(current)
        for target, names, line in imports(path, current, modules):
            if target == current:
                continue
            graph[current].add(target)
            where = f"{path.relative_to(root)}:{line}"
            if layer_of(target) > here:
                problems.append(
                    f"{where}: {current} ({LAYERS[here][0]}) imports {target} ({LAYERS[layer_of(target)][0]}), "
                    "a higher floor"
                )
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{where}: {current} imports private {', '.join(private)} from {target}")
    problems += [f"import loop: {' -> '.join(c)}" for c in cycles(graph)]
    for folder in (package, root / "benchmarks"):
        for path in sorted(folder.rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                problems.append(f"{path.relative_to(root)}: {lines} lines (more than {MAX_LINES})")
    return problems


def main() -> int:
    problems = violations()
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)" if problems else "layers, loops, private names and sizes: all clear")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
