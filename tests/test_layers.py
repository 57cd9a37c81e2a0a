"""The house rules hold: imports run down the floors the README lists, no loops, no private
names across files, no module over 400 lines (tools/check_layers.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools" / "check_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layers():
    assert checker().violations() == []


def test_the_checker_finds_upward_imports_loops_private_names_and_size(tmp_path):
    package = tmp_path / "src" / "inception_hub"
    (package / "nets").mkdir(parents=True)
    (package / "cli").mkdir()
    files = {
        "__init__.py": "from .catalog import resolve\n",
        "errors.py": "",
        "nets/__init__.py": "def build():\n    from ..catalog import CARDS  # the ground floor reaching up\n",
        "catalog.py": "from .labels import _table\nCARDS = {}\n",
        "labels.py": "from .catalog import CARDS\n_table = 1\n",
        "cli/__init__.py": "from .a import x\n",
        "cli/a.py": "from . import b\nx = 1\n",
        "cli/b.py": "from .a import x\n" + "y = 1\n" * 401,
    }
    for name, text in files.items():
        (package / name).write_text(text)
    problems = checker().violations(package, tmp_path)
    assert any("nets.__init__ (networks) imports catalog (cards), a higher floor" in p for p in problems)
    assert any(p.endswith("catalog imports private _table from labels") for p in problems)
    assert "import loop: catalog -> labels" in problems
    assert "import loop: cli.a -> cli.b" in problems
    assert any(p.startswith("src/inception_hub/cli/b.py: 402 lines") for p in problems)
    assert len(problems) == 5, problems


def test_the_readme_names_every_file_of_the_package():
    """README's "How the code is laid out" matches the tree, file by file: every module is named
    there (by its path, or by its name under a `folder/*.py` row)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How the code is laid out") : text.index("Where new things go:")]
    package = ROOT / "src" / "inception_hub"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        folder = rel.rsplit("/", 1)[0] if "/" in rel else None
        named = f"`{rel}`" in section or (folder and f"`{folder}/*.py`" in section and path.stem in section)
        if not named:
            missing.append(rel)
    assert missing == []
    files = [path.relative_to(package).as_posix() for path in package.rglob("*.py")]
    for named in set(re.findall(r"`([\w/]+\.py)`", section)) - {"tools/check_layers.py"}:
        assert any(f == named or f.endswith("/" + named) for f in files), f"README names {named}, which is gone"
