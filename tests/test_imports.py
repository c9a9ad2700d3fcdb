"""The package's modules import each other without a cycle: every ``import`` and ``from ... import``
of a ``zip2zip`` module, at module level or inside a function, read from the source (AST), is
an edge; the exceptions are imports under ``if TYPE_CHECKING:`` and in a package ``__init__``'s lazy
``__getattr__`` (which imports the torch side only when an attribute is asked for). Also: ``import zip2zip`` does not import
torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import zip2zip

PACKAGE = Path(zip2zip.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package; a compiled one (``_core``) by its stub, which imports nothing."""
    found = {module_name(path): path for path in sorted(PACKAGE.rglob("*.pyi")) if not path.with_suffix(".py").exists()}
    found.update({module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))})
    return found


def not_run_at_import(tree: ast.Module, package_init: bool) -> set[ast.AST]:
    """The nodes under ``if TYPE_CHECKING:`` (never run), and in a package ``__init__`` those of a
    top-level ``def __getattr__`` (its lazy attributes)."""
    inside: set[ast.AST] = set()
    for node in tree.body:
        lazy = package_init and isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
        typing_only = isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        if lazy or typing_only:
            inside.update(ast.walk(node))
    return inside


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The zip2zip modules that module ``name`` imports."""
    tree = ast.parse(path.read_text(), str(path))
    skip = not_run_at_import(tree, path.name == "__init__.py")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # ``from zip2zip.x import y``: the module zip2zip.x.y when there is one, else zip2zip.x.
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {module for module in found if module in known and module != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (the first again at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path being explored, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    found = modules()
    graph = {name: imported(name, path, set(found)) for name, path in found.items()}
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100  # the walk saw the package
    assert "zip2zip._core" in graph["zip2zip.codec"]  # ``from zip2zip import _core``: the compiled module
    assert "zip2zip.tokenizer" in graph["zip2zip.modeling.model"]  # an import inside a function
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    """The check above can fail: a cycle made by an import inside a function is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert find_cycle(graph) is None
    graph["c"] = {"a"}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef later():\n    from zip2zip.generation import static\n    return static\n")
    assert imported("zip2zip.m", module, {"zip2zip.generation", "zip2zip.generation.static"}) == {
        "zip2zip.generation.static"
    }


def test_importing_zip2zip_does_not_import_torch():
    code = "import sys, zip2zip; zip2zip.Zip2ZipTokenizer; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_bad_arguments_outside_the_codec_are_typed_errors_of_the_hierarchy(tok, tmp_path):
    """Bad input to the ops, the modules, the tokenizer's options and the file helpers is one of
    zip2zip's own errors (each a ValueError), naming what was wrong."""
    import torch

    from zip2zip.errors import ConfigError, ModelInputError, UsageError
    from zip2zip.files import collect_files
    from zip2zip.nn.conditional import ConditionalHead
    from zip2zip.ops import hyper_cross_entropy

    with pytest.raises(ModelInputError, match="widths disagree"):
        hyper_cross_entropy(
            torch.zeros(1, 2, 4),
            torch.zeros(8, 3),
            torch.zeros(1, 0, 4),
            torch.zeros(1, 2, dtype=torch.long),
            torch.zeros(1, 2, dtype=torch.long),
        )
    with pytest.raises(ConfigError, match="inner_size=0"):
        ConditionalHead(8, 0)
    with pytest.raises(UsageError, match="padding_side"):
        tok(["x"], padding=True, padding_side="middle")
    with pytest.raises(UsageError, match="no files matching"):
        collect_files([tmp_path], ["*.nothing"])
