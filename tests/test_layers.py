"""The optimizer library imports alone (issue 31, item 1): ``import descentlab.optim`` and
``import descentlab.schedules`` in a fresh interpreter load no module of the layers above
them and none of the heavy packages those use; ``import descentlab`` keeps its public names,
loaded on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ABOVE = ("train", "workloads", "compare", "benchmark", "tune", "compress", "report", "engine", "store",
         "experiment", "distributed", "commands")
HEAVY = ("matplotlib", "optuna", "sklearn", "sqlalchemy", "mnist1d", "yaml")


def _imported(statement: str) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["descentlab.optim", "descentlab.schedules"])
def test_the_optimizer_library_imports_alone(module):
    mods = _imported(f"import {module}; from {module} import create")
    ours = sorted(m for m in mods if m.startswith("descentlab"))
    above = [m for m in ours if m.split(".")[1:2] and m.split(".")[1] in ABOVE]
    assert above == [], f"import {module} loaded {above}"
    assert [m for m in HEAVY if m in mods] == []


def test_import_descentlab_is_lazy_and_keeps_its_public_names():
    assert sorted(m for m in _imported("import descentlab") if m.startswith("descentlab")) == ["descentlab"]
    code = ("import inspect, descentlab; from descentlab.compare import strategy; "
            "import descentlab.benchmark.score; "
            "print(callable(descentlab.compare), callable(descentlab.benchmark), "
            "descentlab.Trainer.__name__, descentlab.Workload.__name__, "
            "'strategies' in inspect.signature(descentlab.compare).parameters, "
            "'ruleset' in inspect.signature(descentlab.benchmark).parameters, "
            "descentlab.optim.create.__module__, {'Trainer', 'Workload', 'compare', 'benchmark'} <= set(dir(descentlab)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "Trainer", "Workload", "True", "True", "descentlab.optim.create", "True"]


def test_an_unknown_name_is_an_attribute_error():
    import descentlab

    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        descentlab.nosuch  # noqa: B018


def _import_graph() -> dict[str, set[str]]:
    """descentlab's modules and the modules each imports (at the top or inside a function)."""
    import ast
    from pathlib import Path

    import descentlab

    root = Path(descentlab.__file__).parent
    mods = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    if target in mods and target != mod:
                        graph[mod].add(target)
            elif isinstance(node, ast.Import):
                graph[mod] |= {a.name for a in node.names if a.name in mods and a.name != mod}
    return graph


def test_no_two_modules_import_each_other():
    graph = _import_graph()
    mutual = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph[b]})
    # a package's __init__ re-exporting its own module, which imports a sibling through the package, is not a layer
    mutual = [(a, b) for a, b in mutual if not b.startswith(a + ".")]
    assert mutual == []


@pytest.mark.parametrize("lower, upper", [("workloads", "train"), ("benchmark", "compare"), ("optim", "train"),
                                          ("schedules", "train"), ("experiment", "compare"),
                                          ("experiment", "benchmark")])
def test_a_layer_does_not_import_the_one_above(lower, upper):
    graph = _import_graph()
    wrong = sorted((a, b) for a in graph for b in graph[a]
                   if a.startswith(f"descentlab.{lower}") and b.startswith(f"descentlab.{upper}"))
    assert wrong == []
