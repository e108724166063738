"""The layering of the package, checked by parsing every import (function-local ones too).

The rule (README, "Layout"): imports run one way, down this ladder; a module may import its own
package (``service.creators`` -> ``service.importer``) and anything on a lower rung, never a
higher one or a sibling on the same rung.

====  ===========================================  ==============================================
rung  units (top-level modules/packages)           why there
====  ===========================================  ==============================================
 10   ``__main__``                                 ``python -m lookalike`` runs the CLI
  9   ``cli``                                      a face; ``lookalike serve`` starts the API
  8   ``api``, ``evaluation``                      a face; the evaluations the CLI runs
  7   ``runtime``                                  the one place that wires things
  6   ``demo``                                     sample photos for ``lookalike demo``
  5   ``sources``                                  import-file readers (CSV/JSONL) -> ImportItem
  4   ``service``                                  the use cases
  3   ``crops``, ``scoring``                       shared leaves over the models' types
  2   ``models``, ``store``                        models and storage
  1   ``index``, ``filters``, ``imaging``,          the vector index; shared leaves
      ``config``
  0   ``errors``, ``lookalike`` (``__version__``)  shared by every layer
====  ===========================================  ==============================================

So the shared leaf modules (``errors``, ``config``, ``filters``, ``imaging``, ``scoring``,
``crops``) may be imported from anywhere below the faces, as they are today; and, checked apart,
nothing under ``api/`` or ``cli/`` imports ``store/`` or ``index/``: faces go through services.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lookalike

PACKAGE = Path(lookalike.__file__).resolve().parent
RUNGS = {
    "__main__": 10,
    "cli": 9,
    "api": 8, "evaluation": 8,
    "runtime": 7,
    "demo": 6,
    "sources": 5,
    "service": 4,
    "crops": 3, "scoring": 3,
    "models": 2, "store": 2,
    "index": 1, "filters": 1, "imaging": 1, "config": 1,
    "errors": 0, "": 0,
}  # fmt: skip


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every ``lookalike`` import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                    names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
                else:
                    names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [(module, name, node.lineno) for name in names if name.split(".")[0] == "lookalike"]
    return found


def _unit(module: str) -> str:
    """``lookalike.service.creators.gateway`` -> ``service``; ``lookalike`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rung(module: str) -> int:
    # A bare ``from .. import name`` of the root may name a submodule (``from . import errors``).
    unit = _unit(module)
    assert unit in RUNGS, f"{module}: a new top-level unit; give it a rung in RUNGS and the README"
    return RUNGS[unit]


def test_the_import_parser_sees_relative_local_and_absolute_imports():
    imports = {(a, b) for a, b, _ in _imports()}
    assert ("lookalike.api.modash", "lookalike.runtime") in imports  # from ..runtime import Runtime
    assert ("lookalike.cli.tokens", "lookalike.runtime") in imports  # a function-local import
    assert ("lookalike.api.app", "lookalike.api.errors") in imports  # from . import envelope, errors
    assert len(imports) > 100


def test_faces_never_import_storage_or_the_index():
    bad = [f"{a}:{line} imports {b}" for a, b, line in _imports()
           if _unit(a) in ("api", "cli") and _unit(b) in ("store", "index")]
    assert bad == [], "faces talk to services only:\n" + "\n".join(bad)


def test_imports_only_run_down_the_layers():
    bad = []
    for a, b, line in _imports():
        # Root-package imports (``from .. import __version__``) name the package, the lowest rung.
        target = b if _unit(b) in RUNGS else "lookalike"
        if _unit(a) == _unit(target) and _unit(a):
            continue  # within one package
        if _rung(target) >= _rung(a) and _unit(a):
            bad.append(f"{a}:{line} imports {b} (rung {_rung(target)} from rung {_rung(a)})")
    assert bad == [], "imports must run down the layers (tests/test_architecture.py):\n" + "\n".join(bad)


def test_the_package_imports_itself_relatively():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            absolute = (isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("lookalike")) or (
                isinstance(node, ast.Import) and any(a.name.split(".")[0] == "lookalike" for a in node.names))
            if absolute:
                bad.append(f"{_module(path)}:{node.lineno}")
    assert bad == [], "use relative imports inside the package: " + ", ".join(bad)


def test_no_module_imports_itself_through_others():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _imports():
        graph.setdefault(a, set()).add(b)
    modules = set(graph) | {b for bs in graph.values() for b in bs}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in modules:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]) if target in path else target)
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    # A package importing its own submodules (``store/__init__`` -> ``store.base``) is not a cycle
    # unless a submodule imports the package back.
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)
