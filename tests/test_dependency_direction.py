"""Imports go one way: stllr ← quantization ← lava_models ← {pipeline, hw_tests}.

Every module of those packages is parsed (``ast``), and every import counts: at module
level, inside functions (lazy), under ``TYPE_CHECKING``, and ``importlib.import_module``
with a literal name. The rules:

* a package imports only itself and the packages below it (``LAYERS``); the exceptions
  are listed in ``EXCEPTIONS``, each with its reason, and may only be lazy;
* only ``lava_models`` and ``hw_tests`` import Lava (``stllr`` never does, checked once
  more at run time below);
* no import cycle between modules;
* no module imports another module's private (``_name``) names, except where
  ``PRIVATE_EXCEPTIONS`` says why.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import stllr

REPO = Path(__file__).resolve().parents[1]
#: each package may import the packages of a lower layer (and itself), never a higher one
LAYERS = {"stllr": 0, "quantization": 1, "lava_models": 2, "pipeline": 3, "hw_tests": 3}
#: the only packages that import Lava
LAVA_USERS = ("lava_models", "hw_tests")
#: (importing module prefix, imported package) → why; these imports must be inside functions
EXCEPTIONS = {
    ("stllr.cli", "quantization"): "the CLI's lazy dispatch: `stllr quantize` and `stllr "
    "compare` hand over to quantization inside their run functions",
    ("stllr.cli", "pipeline"): "the CLI's lazy dispatch: `stllr pipeline` hands over to the "
    "pipeline package inside its run function",
}
#: module prefix → why it may import private names of its sibling modules
PRIVATE_EXCEPTIONS = {
    "stllr.data.standin_": "the stand-in generators share the helpers of standin_markers, "
    "standin_random and standin_saccades, one family of modules with one owner",
}


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module
    target: str  # the imported module (a project module when one matches)
    names: tuple[str, ...]  # the names of ``from target import names``
    lazy: bool  # inside a function
    line: int

    def where(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


def _modules() -> dict[str, Path]:
    mods = {}
    for package in LAYERS:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


MODULES = _modules()


def _project_module(name: str) -> str:
    """The longest project module that ``name`` is or lies in (``name`` itself if none)."""
    probe = name
    while probe and probe not in MODULES:
        probe = probe.rpartition(".")[0]
    return probe or name


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str):
        self.module, self.depth, self.found = module, 0, []

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, target: str, names: tuple[str, ...], node) -> None:
        self.found.append(Import(self.module, target, names, self.depth > 0, node.lineno))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(_project_module(alias.name), (), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, node)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in MODULES:  # ``from package import submodule``
                self._add(sub, (), node)
            else:
                self._add(_project_module(base), (alias.name,), node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(_project_module(arg.value), (), node)
        self.generic_visit(node)


def _imports() -> list[Import]:
    found = []
    for module, path in MODULES.items():
        collector = _Collector(module)
        collector.visit(ast.parse(path.read_text(), str(path)))
        found.extend(collector.found)
    return found


IMPORTS = _imports()


def _package(module: str) -> str:
    return module.split(".")[0]


def _exception(imp: Import):
    for (prefix, package), reason in EXCEPTIONS.items():
        if _package(imp.target) == package and (imp.importer + ".").startswith(prefix + "."):
            return (prefix, package), reason
    return None, None


def test_the_scan_sees_every_kind_of_import():
    assert len(MODULES) > 100 and len(IMPORTS) > 500
    lazy = {(i.importer, i.target) for i in IMPORTS if i.lazy}
    assert ("lava_models.builtin", "lava_models.session") in lazy  # inside run_builtin
    assert ("stllr.cli.pipeline", "pipeline.resolve") in lazy


def test_packages_import_only_downwards():
    bad, used = [], set()
    for imp in IMPORTS:
        here, there = _package(imp.importer), _package(imp.target)
        if there not in LAYERS or there == here or LAYERS[there] < LAYERS[here]:
            continue
        key, _ = _exception(imp)
        if key is not None and imp.lazy:
            used.add(key)
        elif key is not None:
            bad.append(f"{imp.where()} at module level (allowed only inside functions: {key})")
        else:
            bad.append(f"{imp.where()} ({there} is above {here})")
    assert not bad, "\n".join(bad)
    assert used == set(EXCEPTIONS), f"unused exceptions: {set(EXCEPTIONS) - used}"


def test_only_lava_models_and_hw_tests_import_lava():
    bad = [
        imp.where()
        for imp in IMPORTS
        if _package(imp.target) == "lava" and _package(imp.importer) not in LAVA_USERS
    ]
    assert not bad, "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.importer:
            graph.setdefault(imp.importer, set()).add(imp.target)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}}) is None


def test_no_module_imports_private_names_of_another():
    bad = []
    for imp in IMPORTS:
        private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        if not private or imp.target not in MODULES or imp.target == imp.importer:
            continue
        if not any(imp.importer.startswith(p) for p in PRIVATE_EXCEPTIONS):
            bad.append(f"{imp.where()}: {', '.join(private)}")
    assert not bad, "\n".join(bad)


def test_stllr_modules_do_not_import_lava():
    names = [m.name for m in pkgutil.walk_packages(stllr.__path__, "stllr.")]
    names = [n for n in names if not n.startswith("stllr.cli")]  # the CLI may import lazily
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m == 'lava' or m.startswith('lava.'))\n"
        "print(len(bad)); sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(names) > 10
